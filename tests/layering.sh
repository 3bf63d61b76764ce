#!/bin/sh
# tests/layering.sh — the include graph runs one way (DESIGN.md §10, TAP): common/ -> vocab/ ->
# the state machine, the WAL codec and scan, the wire codec -> the replication message codec
# (over the WAL frame) -> snapshots, images, recovery and the cores -> worker shells -> tools. One check
# per layer: every `#include "..."` of its files names a header of the layer itself or of one
# below. The bare "config.h" is autoconf's (force-included anyway),
# never supervisor/config.h, which only shells include.
. "${top_srcdir:-.}/tests/tap.sh"
cd "${top_srcdir:-.}" || exit 1
echo "1..11"

# check NAME ALLOWED FILE...: ALLOWED is an extended regex for the included paths.
check() {
    name=$1
    allowed=$2
    shift 2
    bad=$(grep -H '^#include "' "$@" | sed 's/:#include "\([^"]*\)".*/: \1/' |
        grep -Ev ": (config\.h|$allowed)\$")
    if [ -z "$bad" ]; then ok "$name"; else not_ok "$name" "$bad"; fi
}

check "common/ includes only common/" 'common/.*' common/*.c common/*.h
check "vocab/ includes only common/" '(common|vocab)/.*' vocab/*.c vocab/*.h
SM='replica/(sm|index|expiry)\.h'
check "the state machine includes only common/ and vocab/" "(common|vocab)/.*|$SM" \
    replica/sm.[ch] replica/index.[ch] replica/expiry.[ch]
WAL='wal/(frame|command|scan|io|log|slot_clock)\.h'
check "the WAL codec, scan and log include only common/ and vocab/" "(common|vocab)/.*|$WAL" \
    wal/frame.[ch] wal/command.[ch] wal/scan.[ch] wal/io.[ch] wal/io_posix.c wal/log.[ch] \
    wal/slot_clock.[ch]
check "the wire codec and the client library include only common/ and vocab/" \
    '(common|vocab)/.*|net/(proto|allocdb)\.h' net/proto.[ch] net/client.c net/allocdb.h
check "the peer transport includes only common/ and the replication message codec" \
    'common/.*|wal/frame\.h|replica/vsr_message\.h|net/peer\.h' net/peer.[ch]
check "the peer worker's loop includes only the transport, the replication core and below" \
    'common/.*|wal/frame\.h|replica/vsr(_message)?\.h|net/(peer|replication)\.h' net/replication.[ch]
check "the replication message codec includes only common/ and the WAL frame" \
    'common/.*|wal/frame\.h|replica/vsr_message\.h' replica/vsr_message.[ch]
CORES='replica/(snapshot|recovery|image|oplog|apply_policy|applying|retry_cache|vsr_message)\.h|wal/sequencing\.h'
check "snapshots, recovery and the cores include only the state machine, the WAL and below" \
    "(common|vocab)/.*|$SM|$WAL|$CORES" \
    replica/snapshot.[ch] replica/recovery.[ch] replica/image.[ch] replica/oplog.[ch] replica/apply_policy.[ch] replica/retry_cache.[ch] \
    replica/applying.[ch] wal/sequencing.[ch]
check "the tools include no worker shell (supervisor/, net/ingress, replica/meta.h)" \
    "(common|vocab|bench)/.*|$SM|$WAL|$CORES|net/(proto|allocdb)\.h" \
    inspect/*.c bench/*.c bench/*.h cli/*.c
# The simulator runs the production cores, never the shells: the same headers as the cores,
# the replication protocol (replica/vsr*.h), its own, the simulated disk (tests/io_fault.h) and
# the reference model it checks replies against (tests/model.h, over the state machine only).
check "sim/ includes only the cores, replica/vsr*.h and sim/ (no supervisor/, net/ingress, meta)" \
    "(common|vocab|sim)/.*|$SM|$WAL|$CORES|replica/vsr[a-z_]*\.h|tests/(io_fault|model)\.h" \
    sim/*.[ch]
[ "$fails" -eq 0 ]
