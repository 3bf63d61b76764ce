#!/bin/bash
# tests/crash_stress.sh — SIGKILL each worker kind of allocdbd many times under batched,
# contended load, every round checked by tests/crash_load (TAP).
#
#   CRASH_KILLS=100 tests/crash_stress.sh    (kills per kind; 5 by default, as in make check)
#   CRASH_ROUND_KILLS=15                      (kills per load run; each run is checked on its own)
#
# Kills rotate over ingress, sequencer and applier while crash_load runs (see tests/crash_load.c:
# pipelined frames and allocdb_submit batches, 8 hot resources, TTLs of 30-300 ms on 20 ms slots,
# every indefinite outcome retried with the same operation id). After each kill a probe write
# measures the time to serve again: from the kill until a new write commits. Each load run then
# checks that nothing executed twice, no resource had two holders, nothing expired early and no
# reserve was stamped with a slot that had already ended.
# The restart backoff is reset after 1 s up (restart_intensity_window_ms), so the time to serve
# again is the recovery, not the backoff policy. Prints kills per kind, writes acknowledged,
# indefinite outcomes and resends, the median and worst time to serve again, the closest an
# expiry came to its TTL and the least room between reserve stamps, as TAP comments (never
# asserted).
set -u
b="${top_builddir:-.}"
allocdbd="$b/allocdbd"
load="$b/tests/crash_load"
inspect="$b/allocdb-inspect"
kills_per_kind=${CRASH_KILLS:-5}
round_kills=${CRASH_ROUND_KILLS:-15}
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2" "${3:-}"; fi; }

tmp=$(mktemp -d)
sup=
lp=
cleanup() {
    [ -n "$sup" ] && kill -9 "$sup" 2>/dev/null
    [ -n "$lp" ] && kill -9 "$lp" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
log="$tmp/allocdbd.log"
addr=127.0.0.1:0

caps=(--resource-capacity 65536 --reservation-capacity 65536 --operation-capacity 524288)
load_opts=(--threads 8 --tasks 6 --resources 8 --batch 16 --ttl-ms 30:300 --busy-ms 20)
if "$allocdbd" --version | grep -q debug; then # invariants checked after every apply: lighter
    caps=(--resource-capacity 16384 --reservation-capacity 16384 --operation-capacity 65536)
    load_opts=(--threads 6 --tasks 3 --resources 6 --batch 8 --ttl-ms 30:300 --busy-ms 60)
fi
load_opts+=(${CRASH_LOAD_OPTS:-})
# Windows of 2 minutes: a load run (and its checks) must end within them — crash_load fails a
# run that does not — while the tables only hold what the last two minutes wrote.
opts=("${caps[@]}" --slot-duration-ms 20 --max-ttl-ms 10s --dedupe-window-ms 2m --history-window-ms 2m
      --ring-capacity 4096 --shared-log-capacity 4096 --wal-segment-bytes 1M
      --checkpoint-interval-ms 300 --checkpoint-min-entries 1000
      --heartbeat-timeout-ms 1000 --request-timeout-ms 2000 --shutdown-timeout-ms 3000
      --restart-intensity-max 100 --restart-intensity-window-ms 1000 --restart-backoff-max-ms 200
      --admin-listen 127.0.0.1:0)

start_daemon() {
    local from
    from=$(wc -l < "$log" 2>/dev/null || echo 0)
    "$allocdbd" start --data-dir "$tmp/data" --listen "$addr" "${opts[@]}" "$@" 2>>"$log" &
    sup=$!
    for _ in $(seq 1 300); do
        line=$(tail -n +"$((from + 1))" "$log" | grep -m1 ' ready listen=' || true)
        if [ -n "$line" ]; then
            addr=$(printf '%s\n' "$line" | sed -n 's/.* listen=\([^ ]*\).*/\1/p')
            return 0
        fi
        kill -0 "$sup" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
worker_pid() { ps -o pid=,args= --ppid "$sup" | awk -v r="allocdbd: $1" 'index($0, r) { print $1; exit }'; }
wait_new_worker() {
    for _ in $(seq 1 200); do
        p=$(worker_pid "$1")
        [ -n "$p" ] && [ "$p" != "$2" ] && return 0
        sleep 0.05
    done
    return 1
}
field() {
    local v
    v=$(sed -n "s/^crash_load: .* $1=\([0-9]*\).*/\1/p" "$tmp/load.out" | tail -1)
    echo "${v:-0}"
}
# stats LIST: "median worst" of whitespace-separated numbers
stats() { printf '%s\n' $1 | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "- -"; else print v[int((NR + 1) / 2)], v[NR] }'; }

roles=(ingress sequencer applier)
total=$((3 * kills_per_kind))
rounds=$(((total + round_kills - 1) / round_kills))
echo "1..$((3 * rounds + 4))"
"$allocdbd" format --data-dir "$tmp/data" "${opts[@]}" > /dev/null 2>>"$log"
start_daemon
check $? "allocdbd starts and reports ready" "$(tail -5 "$log")"

declare -A killed ms_by
for r in "${roles[@]}"; do killed[$r]=0; ms_by[$r]=; done
acked=0 indefinite=0 resends=0 cached=0 busy=0 expired=0 next=0 t_begin=$(date +%s) margins= rooms=
for round in $(seq 1 "$rounds"); do
    "$load" --addr "$addr" "${load_opts[@]}" --duration-ms 600000 --deadline-s 100 --window-ms 120000 \
        --seed $RANDOM --record "$tmp/load.record" > "$tmp/load.out" 2>&1 &
    lp=$!
    sleep 0.3
    done_here=0 resumed=0 during=0
    while [ $done_here -lt "$round_kills" ]; do
        role=
        for _ in 1 2 3; do # the next kind, in rotation, that still needs kills
            cand=${roles[$((next % 3))]}
            next=$((next + 1))
            if [ "${killed[$cand]}" -lt "$kills_per_kind" ]; then role=$cand; break; fi
        done
        [ -n "$role" ] || break
        old=$(worker_pid "$role")
        [ -n "$old" ] || { sleep 0.1; continue; }
        kill -0 "$lp" 2>/dev/null && during=$((during + 1))
        t0=$(date +%s%N)
        kill -9 "$old"
        ms=$("$load" --addr "$addr" --probe --since-ns "$t0" --deadline-s 20)
        [ $? -eq 0 ] && resumed=$((resumed + 1)) && ms_by[$role]="${ms_by[$role]} $ms"
        wait_new_worker "$role" "$old"
        killed[$role]=$((${killed[$role]} + 1))
        done_here=$((done_here + 1))
        sleep 0.35 # the load runs between kills; each worker stays up over 1 s (fresh backoff)
    done
    kill -USR1 "$lp" 2>/dev/null
    wait "$lp"
    st=$?
    lp=
    check $((resumed == done_here ? 0 : 1)) "round $round: service resumed after each of $done_here kills" "$resumed/$done_here"
    check $((during == done_here ? 0 : 1)) "round $round: every kill landed while the load ran" "$during/$done_here"
    check $st "round $round: nothing executed twice, no double holder, no early expiry ($(field acked) writes acknowledged)" \
        "$(cat "$tmp/load.out")"
    if [ $st -ne 0 ]; then # keep what the client saw (every command, grant and read)
        cp "$tmp/load.record" "$b/tests/crash_stress-round$round.record" 2>/dev/null &&
            echo "# record kept: $b/tests/crash_stress-round$round.record"
    fi
    acked=$((acked + $(field acked)))
    indefinite=$((indefinite + $(field indefinite)))
    resends=$((resends + $(field resends)))
    cached=$((cached + $(field first_from_cache)))
    margins="$margins $(sed -n 's/^crash_load: .* closest_expiry_ms=\([-0-9.]*\).*/\1/p' "$tmp/load.out")"
    rooms="$rooms $(sed -n 's/^crash_load: .* stamp_room_ms=\([-0-9.]*\).*/\1/p' "$tmp/load.out")"
    busy=$((busy + $(field busy)))
    expired=$((expired + $(field expired)))
done
elapsed=$(($(date +%s) - t_begin))
all_ms=
for r in "${roles[@]}"; do
    read -r med worst <<< "$(stats "${ms_by[$r]}")"
    echo "# $r: killed ${killed[$r]} times; time to serve again: median ${med} ms, worst ${worst} ms"
    all_ms="$all_ms ${ms_by[$r]}"
done
read -r med worst <<< "$(stats "$all_ms")"
echo "# all kinds: $((${killed[ingress]} + ${killed[sequencer]} + ${killed[applier]})) kills in ${elapsed} s over $rounds load runs; time to serve again: median ${med} ms, worst ${worst} ms"
echo "# writes acknowledged: $acked; indefinite outcomes retried: $indefinite; commands resent (library and client retries): $resends; first committed answer from the retry cache (an earlier attempt had executed): $cached"
echo "# reserves answered resource_busy: $busy; reservations expired: $expired"
echo "# closest an expiry came to its TTL (ms after reserve sent + TTL, by what clients saw): $(printf '%s\n' $margins | sort -g | head -1)"
echo "# least room between reserve stamps (ms; below 0 a reserve got a slot that had ended): $(printf '%s\n' $rooms | sort -g | head -1)"
all=0
for r in "${roles[@]}"; do [ "${killed[$r]}" -eq "$kills_per_kind" ] || all=1; done
check $all "each worker kind was killed $kills_per_kind times" \
    "ingress ${killed[ingress]}, sequencer ${killed[sequencer]}, applier ${killed[applier]}"
kill -TERM "$sup"
wait "$sup"
st=$?
sup=
check $st "SIGTERM after the stress: allocdbd exits 0" "$(tail -5 "$log")"
out=$("$inspect" verify "$tmp/data" 2>&1)
check $? "the data directory passes allocdb-inspect verify" "$out"
[ "$fails" -eq 0 ]
