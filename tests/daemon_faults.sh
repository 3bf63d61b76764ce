#!/bin/bash
# tests/daemon_faults.sh — faults that are not the disk's get the right response (TAP).
#
#   - shared memory that fails its checks (a published shared-log entry damaged through
#     /proc/PID/mem while the applier is stopped) restarts the daemon: exit 8, which the units
#     restart, not 5 (fail closed for good); the next start serves every acknowledged write;
#   - a sequencer killed before its first READY, over a WAL longer than the shared log, does not
#     leave start-up hanging (it used to republish the whole WAL into a shared log nobody read);
#   - failing snapshot writes (a directory where the snapshot's temporary file must go) turn
#     /health to 503 with the reason, count in allocdb_snapshot_failures_total, are retried with
#     a growing backoff, and clear once the snapshot can be written;
#   - a newer snapshot that fails validation is skipped for an older one, with a warning naming
#     the file and the reason, a counter in /metrics and the count in /status;
#   - a damaged WAL frame that the newest snapshot covers is passed over with a warning naming
#     it and a gauge, and the node serves (it used to stop with exit 5);
#   - a damaged record in the operation log makes the snapshots that need it invalid, naming the
#     damage; recovery falls back as for any invalid snapshot;
#   - a failed sync of the replica metadata (tests/fail_sync.c, preloaded) while the commit point
#     advances stops the daemon (exit 5, meta_commit_failed): a correctness rule depends on it.
set -u
. "$(dirname "$0")/daemon_lib.sh"
pinned=(--resource-capacity 4096 --reservation-capacity 4096 --operation-capacity 65536)
opts=("${pinned[@]}" --shared-log-capacity 1024 --checkpoint-min-entries 1000000000
      --heartbeat-timeout-ms 5000 --restart-backoff-max-ms 200)

echo "1..17"
"$allocdbd" format --data-dir "$tmp/d" "${pinned[@]}" > /dev/null
daemon_start "$tmp/d" "${opts[@]}"
[ $? -eq 0 ] && ok "allocdbd starts" || not_ok "allocdbd starts" "$(tail -5 "$log")"

# 1. Shared memory that fails its checks.
for r in 1 2 3; do "$cli" --addr "$addr" create-resource $r > /dev/null; done
app=$(worker_pid applier)
kill -STOP "$app"
"$cli" --addr "$addr" --timeout 1s create-resource 4 > /dev/null 2>&1 # logged; its entry waits in the shared log
seg=$(awk '/rw-s .*\/dev\/zero/ { split($1, a, "-"); print a[1], a[2]; exit }' "/proc/$sup/maps")
start=$((16#${seg% *}))
end=$((16#${seg#* }))
dd if="/proc/$sup/mem" of="$tmp/seg" bs=4096 skip=$((start / 4096)) count=$(((end - start) / 4096)) 2>/dev/null
damaged=0
# Every WAL frame in the segment ("ADBW"): flip a byte of its LSN; consumed ones are harmless.
for off in $(grep -obUa 'ADBW' "$tmp/seg" | cut -d: -f1); do
    printf '\x5a' | dd of="/proc/$sup/mem" bs=1 seek=$((start + off + 9)) conv=notrunc 2>/dev/null && damaged=$((damaged + 1))
done
kill -CONT "$app"
wait "$sup"
st=$?
sup=
[ $st -eq 8 ] && grep -q 'shared_log_corrupt.*action=restart_daemon' "$log" &&
    ok "a damaged shared-log entry ($damaged frames touched): exit 8 (restart), not 5" ||
    not_ok "shared memory fault: exit 8" "exit $st, $damaged frames touched: $(tail -5 "$log")"
daemon_start "$tmp/d" "${opts[@]}"
out=$("$cli" --addr "$addr" get-resource 4 2>&1)
[ $? -eq 0 ] && ok "restarted from disk: the write logged before the fault is there" || not_ok "after the restart" "$out"

# 2. A sequencer killed before its first READY, the WAL longer than the shared log (1024).
# A debug build checks every invariant after every apply while the applier replays: fewer.
commands=200000
"$allocdbd" --version | grep -q debug && commands=20000
"$bench" net --addr "$addr" --workload uniform --connections 4 --pipeline 4 --batch 64 --resources 256 \
    --commands "$commands" > "$tmp/bench" 2>&1 || true
lsn=$("$cli" --addr "$addr" --json status | sed -n 's/.*"durable_lsn": *\([0-9]*\).*/\1/p')
daemon_stop
from=$(wc -l < "$log") # started by hand: the kill must land before READY
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${opts[@]}" 2>>"$log" &
sup=$!
killed=
for _ in $(seq 1 5000); do # the first child is the sequencer: kill it while it recovers
    p=$(cut -d' ' -f1 "/proc/$sup/task/$sup/children" 2>/dev/null)
    if [ -n "$p" ]; then kill -9 "$p" && killed=$p; break; fi
done
recovered_before=$(since_start | grep -c 'wal_recovered')
ready=no
for _ in $(seq 1 1200); do
    since_start | grep -q ' ready listen=' && { ready=yes; break; }
    kill -0 "$sup" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$killed" ] || [ "$recovered_before" -ne 0 ]; then
    ok "sequencer killed before READY: the kill came too late to test (WAL to LSN $lsn) # SKIP timing"
else
    [ $ready = yes ] && ok "sequencer killed before its first READY (WAL to LSN $lsn, shared log 1024): start-up completes" ||
        not_ok "killed before READY: start-up completes" "$(since_start | tail -8)"
fi
line=$(since_start | grep -m1 ' ready listen=')
addr=$(printf '%s\n' "$line" | sed -n 's/.* listen=\([^ ]*\).*/\1/p')
admin_port=$(printf '%s\n' "$line" | sed -n 's/.* admin_listen=[^ ]*:\([0-9]*\).*/\1/p')
out=$("$cli" --addr "$addr" --json status 2>&1)
got=$(printf '%s\n' "$out" | sed -n 's/.*"applied_lsn": *\([0-9]*\).*/\1/p')
[ "${got:-0}" -ge "${lsn:-1}" ] && ok "every logged entry applied after it (applied_lsn $got >= $lsn)" ||
    not_ok "applied after the early kill" "applied ${got:-?}, want >= $lsn: $out"
daemon_stop

# 3. Snapshot writes that fail, then succeed.
daemon_start "$tmp/d" "${pinned[@]}" --checkpoint-interval-ms 100 --checkpoint-min-entries 5
applied=$("$cli" --addr "$addr" --json status | sed -n 's/.*"applied_lsn": *\([0-9]*\).*/\1/p')
for l in $(seq $((applied + 1)) $((applied + 40))); do mkdir -p "$tmp/d/$(printf 'snapshot-%020d.tmp' "$l")"; done
for r in $(seq 101 120); do "$cli" --addr "$addr" create-resource $r > /dev/null; done
sleep 4
h=$(http_get /health)
m=$(http_get /metrics | grep '^allocdb_snapshot_failures_total')
retries=$(since_start | grep 'snapshot_failed .*retry_in_ms' | sed -n 's/.*retry_in_ms=\([0-9]*\).*/\1/p' | tr '\n' ' ')
printf '%s\n' "$h" | head -1 | grep -q ' 503 ' && printf '%s\n' "$h" | grep -q 'snapshot writes are failing' &&
    ok "failing snapshots: /health 503 with the reason" || not_ok "/health 503 for snapshots" "$h"
set -- $retries
[ "${m##* }" -ge 2 ] 2>/dev/null && [ $# -ge 2 ] && [ "$2" -gt "$1" ] &&
    ok "counted ($m) and retried with a growing backoff (retry_in_ms: $retries)" ||
    not_ok "snapshot failures counted, backoff grows" "metric '$m', retry_in_ms: $retries"
rm -rf "$tmp"/d/snapshot-*.tmp
healthy=no
for _ in $(seq 1 200); do
    http_get /health | head -1 | grep -q ' 200 ' && { healthy=yes; break; }
    sleep 0.1
done
[ $healthy = yes ] && since_start | grep -q 'snapshot_written' &&
    ok "once the snapshot can be written: snapshot_written, /health 200" ||
    not_ok "snapshot recovers" "$(http_get /health | head -3); $(tail -3 "$log")"
daemon_stop
st=$?
[ $st -eq 0 ] && ok "SIGTERM: exit 0" || not_ok "SIGTERM: exit 0" "exit $st"

# two_snapshots DIR FIRST: a fresh node on DIR, resources FIRST..FIRST+39 created in two
# rounds with a checkpoint after each (snapshots every 100 ms), then stopped.
two_snapshots() {
    "$allocdbd" format --data-dir "$1" "${pinned[@]}" > /dev/null
    daemon_start "$1" "${pinned[@]}" --checkpoint-interval-ms 100 --checkpoint-min-entries 5
    for r in $(seq "$2" $(($2 + 19))); do "$cli" --addr "$addr" create-resource $r > /dev/null; done
    sleep 1
    for r in $(seq $(($2 + 20)) $(($2 + 39))); do "$cli" --addr "$addr" create-resource $r > /dev/null; done
    sleep 1
    daemon_stop
}

# 4. A damaged newest snapshot is skipped, and said so where an operator looks (a fresh
#    directory: the load above filled the dedupe table, so new creates would not take effect).
two_snapshots "$tmp/s" 301
newest=$(ls "$tmp/s"/snapshot-*.snap | tail -1)
count=$(ls "$tmp/s"/snapshot-*.snap | wc -l)
size=$(stat -c %s "$newest")
flip_byte "$newest" $((size / 2))
daemon_start "$tmp/s" "${pinned[@]}"
st=$?
w=$(since_start | grep 'snapshot_rejected')
[ $st -eq 0 ] && [ "$count" -ge 2 ] && printf '%s\n' "$w" | grep -q "warn .*file=$newest .*reason=" &&
    ok "a damaged newest snapshot: skipped, a warning names the file and the reason" ||
    not_ok "snapshot rejected: warning" "start $st, $count snapshots: $w"
m=$(http_get /metrics | grep '^allocdb_snapshots_rejected_total')
j=$("$cli" --addr "$addr" --json status)
g=$("$cli" --addr "$addr" get-resource 340 2>&1)
gs=$?
[ "${m##* }" = 1 ] && printf '%s\n' "$j" | grep -q '"snapshots_rejected":1' && [ $gs -eq 0 ] &&
    ok "counted in /metrics ($m) and /status; the writes after the older snapshot still served" ||
    not_ok "snapshot rejected: metric and status" "$m; $g; $j"
daemon_stop

# 5. A damaged WAL frame below the newest snapshot.
"$allocdbd" format --data-dir "$tmp/w" "${pinned[@]}" > /dev/null
daemon_start "$tmp/w" "${pinned[@]}" --checkpoint-interval-ms 100 --checkpoint-min-entries 5
for r in $(seq 1 40); do "$cli" --addr "$addr" create-resource $r > /dev/null; done
sleep 1
daemon_stop
seg0=$(ls "$tmp/w"/wal-*.log | head -1)
flip_byte "$seg0" $((64 + 20)) # the first frame's slot
daemon_start "$tmp/w" "${pinned[@]}"
st=$?
w=$(since_start | grep 'wal_damage_below_snapshot')
[ $st -eq 0 ] && printf '%s\n' "$w" | grep -q "file=$seg0 offset=64 lsn=1 " &&
    ok "a damaged frame the snapshot covers: passed over, a warning names file, offset and LSN" ||
    not_ok "WAL damage below the snapshot" "start $st: $w $(since_start | tail -3)"
m=$(http_get /metrics | grep '^allocdb_wal_damage_below_snapshot ')
[ "${m##* }" = 1 ] && "$cli" --addr "$addr" get-resource 40 > /dev/null &&
    ok "counted ($m); every write served" || not_ok "damage gauge and reads" "$m"
daemon_stop

# 6. A damaged record in the operation log (replica/oplog.h), needed by both kept snapshots:
#    each is rejected with the damage named, and recovery falls back to the WAL, which here
#    still starts at LSN 1 (one segment); every write is served, retries included.
two_snapshots "$tmp/o" 1
ops0=$(ls "$tmp/o"/ops-*.log | head -1)
count=$(ls "$tmp/o"/snapshot-*.snap | wc -l)
flip_byte "$ops0" $((64 + 32 + 40)) # the first block's first record (its applied_lsn)
daemon_start "$tmp/o" "${pinned[@]}"
st=$?
w=$(since_start | grep 'snapshot_rejected')
[ $st -eq 0 ] && [ "$count" -eq 2 ] && printf '%s\n' "$w" | grep -q "count=2 .*operations_missing.*$(basename "$ops0") at byte 64: block checksum mismatch" &&
    since_start | grep -q 'recovered kind=wal_only' &&
    ok "a damaged operation log record: both snapshots rejected naming it, recovered from the WAL" ||
    not_ok "operation log damage" "start $st, $count snapshots: $w $(since_start | grep recovered)"
out=$("$cli" --addr "$addr" get-resource 40 2>&1) && printf '%s\n' "$out" | grep -q found &&
    ok "every write served after it" || not_ok "served after operation log damage" "$out"
daemon_stop

# 7. The commit point cannot be recorded: fatal.
shim="$b/tests/.libs/libfailsync.so"
LD_PRELOAD="$shim" ALLOCDB_FAIL_SYNC_PATH=/meta/data.mdb ALLOCDB_FAIL_SYNC_TRIGGER="$tmp/fail-meta" \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" daemon_start "$tmp/d" "${pinned[@]}"
[ $? -eq 0 ] && ok "allocdbd starts with the sync shim preloaded" || not_ok "start with the shim" "$(tail -5 "$log")"
touch "$tmp/fail-meta"
for r in $(seq 201 210); do "$cli" --addr "$addr" --timeout 1s create-resource $r > /dev/null 2>&1; done
st=
for _ in $(seq 1 100); do
    kill -0 "$sup" 2>/dev/null || { wait "$sup"; st=$?; break; }
    sleep 0.05
done
sup=
[ "$st" = 5 ] && since_start | grep -q 'meta_commit_failed .*action=stop_daemon' &&
    ok "a failed commit-point write stops the daemon: exit 5, meta_commit_failed" ||
    not_ok "metadata sync failure is fatal" "exit '${st}': $(since_start | tail -5)"
[ "$fails" -eq 0 ]
