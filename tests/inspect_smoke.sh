#!/bin/sh
# tests/inspect_smoke.sh — allocdb-inspect and allocdb-bench's durable modes on real files (TAP).
#
# Builds real data directories with allocdb-bench (a WAL-only one and a snapshot one), checks
# that allocdb-inspect reads them as valid, then damages bytes and checks that it reports the
# damage with exit status 1 — and that it never changed a file while looking.
bench="${top_builddir:-.}/allocdb-bench"
inspect="${top_builddir:-.}/allocdb-inspect"
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }
expect() { # expect NAME STATUS PATTERN COMMAND...: exit status and a line matching PATTERN
    name=$1 want=$2 pattern=$3; shift 3
    out=$("$@" 2>&1)
    got=$?
    if [ "$got" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pattern"; then ok "$name"; else
        not_ok "$name" "exit $got (want $want): $out"; fi
}
flip() { # flip FILE OFFSET: invert one byte in place
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..12"

out=$("$bench" core --scenario one-resource-many-contenders --hotspot-rounds 40 --durable "$tmp" \
      --group-commit 8 --segment-bytes 65536 --keep-data 2>&1)
walsdir=$(printf '%s\n' "$out" | sed -n 's/.*WAL kept in //p')
printf '%s\n' "$out" | grep -q "durable     syncs=" && [ -d "$walsdir" ] &&
    ok "bench --durable writes a WAL" || not_ok "bench --durable writes a WAL" "$out"
expect "inspect wal: a good WAL is ok" 0 "wal: ok" "$inspect" wal "$walsdir"
expect "inspect wal --frames prints frames" 0 "lsn=2 slot=2 view=0 .* reserve resource=1 holder=2" \
    "$inspect" wal --frames --to 3 "$walsdir"
seg=$(ls "$walsdir"/wal-*.log | head -1)
expect "inspect wal on one segment file" 0 "frames, LSN 1\.\." "$inspect" wal "$seg"
before=$(md5sum "$seg")
flip "$seg" 300
expect "a damaged frame is reported with file and offset" 1 "DAMAGED: .*wal-00000000000000000001.log: offset" \
    "$inspect" wal "$walsdir"
[ "$(md5sum "$seg")" != "$before" ] && flip "$seg" 300 && [ "$(md5sum "$seg")" = "$before" ] &&
    ok "inspect changed nothing" || not_ok "inspect changed nothing"

out=$("$bench" recovery --dir "$tmp" --commands 3000 --reservations 500 --keep-data 2>&1)
status=$?
snapdir=$(printf '%s\n' "$out" | sed -n 's/^  kept *//p' | tail -1)
[ $status -eq 0 ] && printf '%s\n' "$out" | grep -q "snapshot_only" &&
    ok "bench recovery replays and loads" || not_ok "bench recovery replays and loads" "$out"
snap=$(ls "$snapdir"/snapshot-*.snap | head -1)
expect "inspect snapshot: valid, with its counts" 0 "reservations=500 (reserved=500" "$inspect" snapshot "$snap"
expect "inspect verify: a dry-run recovery" 0 "startup kind snapshot_only" "$inspect" verify "$snapdir"
flip "$snap" 500
expect "inspect snapshot: damage is reported" 1 "DAMAGED" "$inspect" snapshot "$snap"
expect "inspect verify: falls back to the WAL, which covers" 0 "rejected snapshot" "$inspect" verify "$snapdir"
expect "unknown command is a usage error" 64 "unknown command" "$inspect" frobnicate

[ $fails -eq 0 ]
