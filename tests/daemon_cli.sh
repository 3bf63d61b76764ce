#!/bin/bash
# tests/daemon_cli.sh — the allocdb CLI against a real allocdbd (TAP).
#
# With tiny capacities every committed result code a client can cause is produced and checked
# with its exit status; retries by operation id (from_retry_cache, operation_conflict); the
# strict-read fence; automatic expiration (never early); garbage, oversize and truncated frames
# and a connection flood leave the daemon and other clients unaffected; and allocdbd's start
# refusals (unformatted, locked, metadata contradicting the WAL, corruption) with their exit
# codes.
set -u
. "$(dirname "$0")/daemon_lib.sh"
ready_steps=200

# run NAME WANT_EXIT PATTERN ARGS...: the CLI's exit status and output
run() {
    local name=$1 want=$2 pattern=$3
    shift 3
    out=$("$cli" --addr "$addr" "$@" 2>&1)
    local got=$?
    if [ "$got" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pattern"; then ok "$name"; else
        not_ok "$name" "exit $got (want $want): $out"; fi
}
json_field() { printf '%s\n' "$out" | sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p"; }

echo "1..61"
pinned=(--slot-duration-ms 50 --resource-capacity 4 --reservation-capacity 3 --expiration-capacity 2
        --operation-capacity 40 --max-ttl-ms 60s --history-window-ms 1s --dedupe-window-ms 8s)
"$allocdbd" format --data-dir "$tmp/d" "${pinned[@]}" > /dev/null
daemon_start "$tmp/d" "${pinned[@]}" --max-connections 4
[ $? -eq 0 ] && ok "allocdbd starts" || not_ok "allocdbd starts" "$(tail -5 "$log")"

run "create-resource: ok (exit 0)" 0 "committed: ok" create-resource 1
run "create-resource again: already_exists (exit 1)" 1 "already_exists" create-resource 1
for r in 2 3 4; do "$cli" --addr "$addr" create-resource $r > /dev/null; done
run "a fifth resource: resource_table_full" 1 "resource_table_full" create-resource 5
run "reserve an unknown resource: resource_not_found" 1 "resource_not_found" reserve 99 10 --ttl 10s
run "reserve beyond max_ttl: ttl_out_of_range" 1 "ttl_out_of_range" reserve 1 10 --ttl 2h
run "reserve: ok with a reservation id" 0 '"result":"ok"' --json reserve 1 10 --ttl 30s
r1=$(json_field reservation_id)
op1=$(json_field operation_id)
run "a second holder: resource_busy" 1 "resource_busy" reserve 1 11 --ttl 30s
run "retry with the same operation id: from_retry_cache, same reservation" 0 \
    "\"reservation_id\":\"$r1\".*\"from_retry_cache\":true" --json --op-id "$op1" reserve 1 10 --ttl 30s
run "same operation id, different command: operation_conflict" 1 "operation_conflict" \
    --op-id "$op1" reserve 1 12 --ttl 30s
run "confirm by another holder: holder_mismatch" 1 "holder_mismatch" confirm "$r1" 11
run "confirm an unknown reservation: reservation_not_found" 1 "reservation_not_found" confirm 999999 10
run "confirm: ok" 0 "committed: ok" confirm "$r1" 10
run "confirm again (a new operation): invalid_state" 1 "invalid_state" confirm "$r1" 10
run "get-resource: confirmed, points at the reservation" 0 "\"state\":\"confirmed\".*\"current_reservation_id\":\"$r1\"" \
    --json get-resource 1
run "get-resource unknown: not_found (exit 1)" 1 "not_found" get-resource 77
run "a read fenced beyond the applied LSN: fence_not_applied, exit 3" 3 "fence_not_applied" \
    --timeout 500ms get-resource 1 --min-lsn 999999
run "reserve resource 2: ok" 0 '"result":"ok"' --json reserve 2 20 --ttl 30s
r2=$(json_field reservation_id)
run "reserve resource 3: ok" 0 '"result":"ok"' --json reserve 3 30 --ttl 30s
r3=$(json_field reservation_id)
run "a fourth reservation: reservation_table_full" 1 "reservation_table_full" reserve 4 40 --ttl 30s
run "release the confirmed one: ok" 0 "committed: ok" release "$r1" 10
sleep 1.3 # the history window (1 s) passes: the released reservation retires
"$cli" --addr "$addr" tick > /dev/null
run "pool room, but the expiration index is full: expiration_index_full" 1 "expiration_index_full" \
    reserve 4 40 --ttl 30s
run "confirm a retired reservation: reservation_retired" 1 "reservation_retired" confirm "$r1" 10
run "get-reservation of a retired one: retired (exit 1)" 1 "retired" get-reservation "$r1"
for i in $(seq 1 40); do
    out=$("$cli" --addr "$addr" create-resource $((1000 + i)) 2>&1)
    printf '%s\n' "$out" | grep -q operation_table_full && break
done
printf '%s\n' "$out" | grep -q operation_table_full && ok "a full dedupe table: operation_table_full" ||
    not_ok "a full dedupe table: operation_table_full" "$out"
run "tick: answered (exit 0)" 0 "slot" tick
run "status: JSON with the LSNs" 0 '"applied_lsn"' --json status
run "metrics: JSON" 0 '"durable_lsn"' metrics

# The admin HTTP endpoint. /metrics must pass a strict text-exposition check: HELP and TYPE
# once per family and before its samples, valid names, labels and values, histograms whole.
http_get() { # http_get PATH: the raw HTTP response
    exec 5<>"/dev/tcp/127.0.0.1/$admin_port"
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&5
    timeout 3 cat <&5
    exec 5>&-
}
resp=$(http_get /metrics)
body=$(printf '%s\n' "$resp" | tr -d '\r' | sed '1,/^$/d')
printf '%s\n' "$resp" | head -1 | grep -q ' 200 ' && ok "admin /metrics: 200" || not_ok "admin /metrics: 200" "$(printf '%s\n' "$resp" | head -3)"
problems=$(printf '%s\n' "$body" | awk '
    function fam(n) { sub(/_(bucket|sum|count)$/, "", n); return n }
    /^# HELP / { if (help[$3]++) print "duplicate HELP " $3; next }
    /^# TYPE / { if (type[$3] != "") print "duplicate TYPE " $3
                 if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) print "bad type " $0
                 if (!help[$3]) print "TYPE before HELP " $3
                 type[$3] = $4; next }
    /^#/ || /^$/ { next }
    { if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|Inf|NaN)$/) { print "bad sample: " $0; next }
      name = $1; sub(/\{.*/, "", name)
      f = (name in type) ? name : fam(name)
      if (!(f in type)) print "sample before its TYPE: " $0
      else if (f != name && type[f] != "histogram") print "suffix on a non-histogram: " $0
      n++ }
    END { if (n < 40) print "only " n " samples" }')
[ -z "$problems" ] && ok "admin /metrics: valid Prometheus text exposition ($(printf '%s\n' "$body" | grep -vc '^#') samples)" ||
    not_ok "admin /metrics: exposition format" "$problems"
printf '%s\n' "$body" | grep -q '^allocdb_results_total{result="resource_busy"} [1-9]' &&
    printf '%s\n' "$body" | grep -q '^allocdb_fsync_duration_microseconds_bucket{le="+Inf"} [1-9]' &&
    ok "admin /metrics: results by code and the fsync histogram" || not_ok "admin /metrics: content" "$body"
resp=$(http_get /health)
printf '%s\n' "$resp" | head -1 | grep -q ' 200 ' && printf '%s\n' "$resp" | grep -q '^ok' &&
    ok "admin /health: 200 ok" || not_ok "admin /health" "$resp"
resp=$(http_get /status)
printf '%s\n' "$resp" | grep -q '"applied_lsn"' && printf '%s\n' "$resp" | grep -q '"dedupe_window_ms"' &&
    printf '%s\n' "$resp" | grep -q '"recovery":{"sequencer":{"wal_frames_read":[0-9]*,"torn_tail_truncated":false,"damage_below_snapshot":0,"ms":[0-9]*},"applier":{"kind":"[a-z_]*","frames_replayed":[0-9]*,"ms":[0-9]*,"snapshots_rejected":[0-9]*,"snapshot_rejected_lsn":[0-9]*}}' &&
    printf '%s\n' "$resp" | grep -q '"role":"applier","pid":[1-9][0-9]*,"generation":[0-9]*,"state":"ready","restarts":[0-9]*,"heartbeat_age_ms":[0-9]' &&
    ok "admin /status: JSON with LSNs, the dedupe window, recovery and workers" || not_ok "admin /status" "$resp"
resp=$(http_get /nope)
printf '%s\n' "$resp" | head -1 | grep -q ' 404 ' && ok "admin: unknown path 404" || not_ok "admin 404" "$resp"
daemon_stop

# Expiration, and the protocol's bad inputs, on a roomier node.
daemon_start "$tmp/d" "${pinned[@]}" --max-connections 4
sleep 8.2 # the operations of the first run leave the dedupe window (8 s: a loaded machine
          # still fills the table of 40 with one CLI call after another before they retire)
"$cli" --addr "$addr" tick > /dev/null
"$cli" --addr "$addr" release "$r2" 20 > /dev/null # room in the expiration index
"$cli" --addr "$addr" release "$r3" 30 > /dev/null
t0=$(date +%s%N)
run "reserve with ttl 2s" 0 '"result":"ok"' --json reserve 4 50 --ttl 2s
sleep 1.5
run "1.5 s later it is still reserved (never early)" 0 '"state":"reserved"' --json get-resource 4
while :; do
    s=$("$cli" --addr "$addr" --json get-resource 4 2>/dev/null)
    case $s in *'"state":"available"'*) break ;; esac
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 10000 ] && break
    sleep 0.02
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
case $s in *'"state":"available"'*) [ "$ms" -ge 2000 ] && ok "expired on its own after ${ms} ms (ttl 2000 ms, slot 50 ms)" ||
    not_ok "expired early: ${ms} ms" ;; *) not_ok "the reservation did not expire within 10 s" "$s" ;; esac

frame_reply() { # frame_reply BYTES: sends raw bytes on a new connection, prints the reply in hex
    exec 5<>"/dev/tcp/127.0.0.1/$port"
    printf "$1" >&5
    timeout 3 od -An -tx1 -N40 <&5 | tr -d ' \n'
    exec 5>&-
}
hdr='\x41\x44\x42\x50\x01\x00'
reply=$(frame_reply 'GARBAGE-GARBAGE-GARBAGE-GARBAGE!')
[ "${reply:0:8}" = 41444250 ] && [ "${reply:12:2}" = ff ] && [ "${reply:64:4}" = 0100 ] &&
    ok "garbage: an error frame (bad_frame), then close" || not_ok "garbage: error frame" "$reply"
reply=$(frame_reply "$hdr"'\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\x7f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00')
[ "${reply:12:2}" = ff ] && [ "${reply:64:4}" = 0300 ] && ok "oversize length: too_large before any allocation" ||
    not_ok "oversize: error frame too_large" "$reply"
reply=$(frame_reply "$hdr"'\x06\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xde\xad\xbe\xef')
[ "${reply:12:2}" = ff ] && [ "${reply:64:4}" = 0200 ] && ok "bad checksum: bad_checksum" ||
    not_ok "bad checksum: error frame" "$reply"
exec 5<>"/dev/tcp/127.0.0.1/$port"; printf "$hdr"'\x02' >&5; exec 5>&- # truncated, then gone
run "after garbage, oversize, bad checksum and truncated frames the daemon serves" 0 "found" get-resource 4
# Held connections idle for less than a second are never evicted: beyond the limit, refused.
exec 6<>"/dev/tcp/127.0.0.1/$port" 7<>"/dev/tcp/127.0.0.1/$port" 8<>"/dev/tcp/127.0.0.1/$port"
exec 9<>"/dev/tcp/127.0.0.1/$port" # the 4th is the limit; the CLI's is the 5th
flood=$("$cli" --addr "$addr" --timeout 300ms get-resource 4 2>&1)
st=$?
[ "$st" -ne 0 ] && ok "a connection beyond max_connections is refused (exit $st)" || not_ok "flood refused" "$flood"
exec 10<>"/dev/tcp/127.0.0.1/$port"
reply=$(timeout 3 od -An -tx1 -N40 <&10 | tr -d ' \n')
[ "${reply:12:2}" = ff ] && [ "${reply:64:4}" = 0a00 ] && ok "... with the error too_many_connections" ||
    not_ok "flood: too_many_connections frame" "$reply"
exec 10>&-
sleep 1.1
run "held a second idle, one of them makes room: a new client is served" 0 "found" get-resource 4
exec 6>&- 7>&- 8>&- 9>&-
sleep 0.2
run "the held connections close: service is back" 0 "found" get-resource 4
grep -q ' ingress .*exited\| worker_exited role=ingress' "$log" && not_ok "the ingress never crashed" "$(grep worker_exited "$log")" ||
    ok "the ingress never crashed"

# Start refusals.
out=$("$allocdbd" check-config 2>&1)
[ $? -eq 0 ] && printf '%s\n' "$out" | grep -q '^# memory: the configuration needs [0-9]* MiB (state machine' &&
    ok "check-config prints the memory the configuration needs" || not_ok "check-config memory" "$out"
out=$("$allocdbd" check-config --resource-capacity 1073741824 --reservation-capacity 1073741824 2>&1)
[ $? -eq 78 ] && printf '%s\n' "$out" | grep -q "more than this machine's" &&
    ok "check-config refuses tables larger than RAM and swap (exit 78)" || not_ok "check-config refuses memory" "$out"
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --listen 127.0.0.1:0 --resource-capacity 1073741824 \
    --reservation-capacity 1073741824 --operation-capacity 1073741824 2>"$tmp/e"
st=$?
[ $st -eq 78 ] && grep -q "the configuration needs [0-9]* MiB (state machine .*more than this machine's" "$tmp/e" &&
    ok "tables larger than RAM and swap: refused at once with the figures (exit 78), not crash-looped" ||
    not_ok "impossible memory: exit 78" "exit $st: $(tail -3 "$tmp/e")"
"$allocdbd" format --data-dir "$tmp/p" --operation-capacity 64 > /dev/null
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/p" --listen 127.0.0.1:0 --operation-capacity 128 2>"$tmp/e"
st=$?
[ $st -eq 7 ] && grep -q "operation_capacity: the data directory was formatted with 64, the configuration gives 128" "$tmp/e" &&
    ok "a pinned setting changed: exit 7 naming the key, the stored and the given value" ||
    not_ok "pinned setting: exit 7" "exit $st: $(cat "$tmp/e")"
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/p" --listen 127.0.0.1:0 --operation-capacity 64 --slot-duration-ms 10 2>"$tmp/e"
st=$?
[ $st -eq 7 ] && grep -q "slot_duration_ms: the data directory was formatted with 100, the configuration gives 10" "$tmp/e" &&
    ok "slot_duration_ms is pinned before any snapshot exists" || not_ok "slot_duration_ms pinned" "exit $st: $(cat "$tmp/e")"
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$tmp/e" &
p=$!
wait $p
st=$?
[ $st -eq 3 ] && grep -q "locked by another allocdbd" "$tmp/e" && ok "a second daemon on the same dir: exit 3, locked" ||
    not_ok "a second daemon: locked" "exit $st: $(cat "$tmp/e")"
daemon_stop
[ $? -eq 0 ] && ok "SIGTERM: exit 0" || not_ok "SIGTERM: exit 0"
mkdir "$tmp/empty"
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/empty" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$tmp/e"
st=$?
[ $st -eq 2 ] && grep -q "not a formatted AllocDB data directory" "$tmp/e" && ok "an unformatted dir: exit 2" ||
    not_ok "unformatted: exit 2" "exit $st: $(cat "$tmp/e")"
"$allocdbd" format --data-dir "$tmp/d" 2>"$tmp/e"
st=$?
[ $st -ne 0 ] && grep -q "not empty" "$tmp/e" && ok "format refuses a non-empty dir" || not_ok "format non-empty" "$(cat "$tmp/e")"
"$allocdbd" format --data-dir "$tmp/fresh" "${pinned[@]}" > /dev/null
rm -rf "$tmp/fresh/meta" && cp -a "$tmp/d/meta" "$tmp/fresh/meta" # metadata from a dir with a longer WAL
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/fresh" "${pinned[@]}" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$tmp/e"
st=$?
[ $st -eq 4 ] && grep -q "meta_contradicts_wal" "$tmp/e" && ok "metadata beyond the WAL: exit 4" ||
    not_ok "meta contradicts wal: exit 4" "exit $st: $(tail -3 "$tmp/e")"
seg=$(ls "$tmp/d"/wal-*.log | head -1)
printf '\xff' | dd of="$seg" bs=1 seek=100 conv=notrunc 2>/dev/null # inside the first frame
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" "${pinned[@]}" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$tmp/e"
st=$?
[ $st -eq 5 ] && grep -q "wal_recovery_failed" "$tmp/e" && ok "a damaged WAL: exit 5, fail closed" ||
    not_ok "damaged wal: exit 5" "exit $st: $(tail -3 "$tmp/e")"
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --slot-duration-ms 0 2>"$tmp/e"
st=$?
[ $st -eq 78 ] && grep -q "slot_duration_ms" "$tmp/e" && ok "an out-of-range flag: exit 78 naming the key" ||
    not_ok "bad flag: exit 78" "exit $st: $(cat "$tmp/e")"
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --no-such-key 1 2>"$tmp/e"
st=$?
[ $st -eq 64 ] && ok "an unknown flag: exit 64" || not_ok "unknown flag: exit 64" "exit $st: $(cat "$tmp/e")"
"$allocdbd" --version | grep -q "allocdbd [0-9]" && ok "--version" || not_ok "--version"
"$allocdbd" --help | grep -q -- "--slot-duration-ms" && ok "--help lists every key as a flag" || not_ok "--help"
[ "$fails" -eq 0 ]
