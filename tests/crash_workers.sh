#!/bin/bash
# tests/crash_workers.sh — allocdbd under SIGKILL, SIGSTOP and SIGTERM, through liballocdb (TAP).
#
# Each scenario runs tests/crash_load while the daemon's processes are killed: 8 connections
# (half pipelining frames of several commands, half batching through allocdb_submit) race for
# 8 hot resources with TTLs of 30-300 ms on 20 ms slots, so reserves mostly answer
# resource_busy and reservations expire, are confirmed and released all through the kills.
# Every indefinite outcome is retried with the same operation id. When the script stops the
# load (SIGUSR1) crash_load checks that no command executed twice, no resource ever had two
# holders and no reservation expired early, or was stamped with a slot that had already ended
# (see tests/crash_load.c).
#
#   - the checks can fail: each --inject-bug (double, early, dup, stale) is caught;
#   - SIGKILL of each worker kind (ingress, sequencer, applier), three times under load; after
#     each kill a probe write measures how long until the daemon served again;
#   - SIGKILL of the supervisor: no worker survives; a new allocdbd recovers every acknowledged
#     write (the load keeps retrying across the restart);
#   - SIGSTOP of the applier under load: the heartbeat check kills and restarts it;
#   - SIGTERM under load: exit 0, nothing acknowledged lost;
#   - a worker crashing in a loop trips the restart-intensity limit: exit 6 and a log line;
#   - the data directory passes allocdb-inspect verify afterwards.
# Timing figures are printed as TAP comments, never asserted (the machines are noisy).
set -u
b="${top_builddir:-.}"
allocdbd="$b/allocdbd"
load="$b/tests/crash_load"
inspect="$b/allocdb-inspect"
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

# The load: many contenders for few resources, short TTLs. A debug build checks every
# state-machine invariant after every apply, at a cost that grows with the capacities: a
# lighter load on smaller tables there.
caps=(--resource-capacity 65536 --reservation-capacity 65536 --operation-capacity 262144)
load_opts=(--threads 8 --tasks 6 --resources 8 --batch 16 --ttl-ms 30:300 --busy-ms 20)
if "$allocdbd" --version | grep -q debug; then
    caps=(--resource-capacity 16384 --reservation-capacity 16384 --operation-capacity 65536)
    load_opts=(--threads 6 --tasks 3 --resources 6 --batch 8 --ttl-ms 30:300 --busy-ms 60)
fi
load_opts+=(${CRASH_LOAD_OPTS:-})

# Nothing retires during the script (the client reads back and resubmits everything), and
# every setting that replay depends on is given to format and to every start.
opts=("${caps[@]}" --slot-duration-ms 20 --max-ttl-ms 10s --dedupe-window-ms 10m --history-window-ms 10m
      --ring-capacity 4096 --shared-log-capacity 4096 --wal-segment-bytes 1M
      --checkpoint-interval-ms 300 --checkpoint-min-entries 1000
      --heartbeat-timeout-ms 1000 --request-timeout-ms 2000 --shutdown-timeout-ms 3000
      --restart-backoff-max-ms 200 --admin-listen 127.0.0.1:0)

# start_daemon [EXTRA OPTIONS]: starts allocdbd in the background and waits for READY.
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

# wait_new_worker ROLE OLDPID: waits until ROLE runs with another pid.
wait_new_worker() {
    for _ in $(seq 1 200); do
        p=$(worker_pid "$1")
        [ -n "$p" ] && [ "$p" != "$2" ] && return 0
        sleep 0.05
    done
    return 1
}

stop_daemon() {
    kill -TERM "$sup" 2>/dev/null
    wait "$sup"
    local st=$?
    sup=
    return $st
}

# start_load [EXTRA crash_load OPTIONS]: the load in the background until stop_load.
start_load() {
    "$load" --addr "$addr" "${load_opts[@]}" --duration-ms 120000 --deadline-s 90 --seed $RANDOM \
        --record "$tmp/load.record" "$@" > "$tmp/load.out" 2>&1 &
    lp=$!
}
# stop_load: SIGUSR1 ends the load; crash_load resolves what is open, checks, and exits.
busy=0 expired=0 indefinite=0 acked=0 cached=0
field() { # field NAME: a number from the load's summary line (0 if absent)
    local v
    v=$(sed -n "s/^crash_load: .* $1=\([0-9]*\).*/\1/p" "$tmp/load.out" | tail -1)
    echo "${v:-0}"
}
stop_load() {
    kill -USR1 "$lp" 2>/dev/null
    wait "$lp"
    local st=$?
    lp=
    busy=$((busy + $(field busy)))
    expired=$((expired + $(field expired)))
    indefinite=$((indefinite + $(field indefinite)))
    acked=$((acked + $(field acked)))
    cached=$((cached + $(field first_from_cache)))
    return $st
}
# show_load NAME: the load's summary as comments; after a failure its record (every command,
# grant and read) is kept as tests/crash_workers-NAME.record in the build directory.
show_load() {
    sed 's/^/# /' "$tmp/load.out"
    if grep -q 'crash_load: FAIL' "$tmp/load.out" && cp "$tmp/load.record" "$b/tests/crash_workers-$1.record" 2>/dev/null; then
        echo "# record kept: $b/tests/crash_workers-$1.record"
    fi
}

echo "1..29"
"$allocdbd" format --data-dir "$tmp/data" "${opts[@]}" > /dev/null 2>>"$log"
start_daemon
check $? "allocdbd starts and reports ready" "$(tail -5 "$log")"

# The checks can fail: each injected bookkeeping bug is reported (and nothing else).
for bug in double early dup stale; do
    start_load --inject-bug "$bug"
    sleep 1
    stop_load
    st=$?
    case $bug in double) want="FAIL double: resource .* had two holders" ;;
                 early) want="FAIL early: reservation .* expired at LSN" ;;
                 dup) want="FAIL dup: the resubmission of .* from_retry_cache=0" ;;
                 stale) want="FAIL stamp: reserve at LSN .* no timeline that follows the boot clock" ;; esac
    [ $st -eq 1 ] && grep -q "$want" "$tmp/load.out" && [ "$(grep -c 'crash_load: FAIL' "$tmp/load.out")" -eq 1 ]
    check $? "--inject-bug $bug: the $bug check fails, and only it" "exit $st: $(cat "$tmp/load.out")"
done

for role in ingress sequencer applier; do
    start_load
    resumed=0
    during=0
    gaps=
    for k in 1 2 3; do
        sleep 0.3
        old=$(worker_pid "$role")
        [ -n "$old" ] || continue
        kill -0 "$lp" 2>/dev/null && during=$((during + 1))
        t0=$(date +%s%N)
        kill -9 "$old"
        ms=$("$load" --addr "$addr" --probe --since-ns "$t0" --deadline-s 10)
        [ $? -eq 0 ] && resumed=$((resumed + 1))
        gaps="$gaps ${ms}ms"
        wait_new_worker "$role" "$old"
    done
    sleep 0.3
    echo "# $role killed 3 times; a probe write committed after:$gaps"
    check $((resumed == 3 ? 0 : 1)) "SIGKILL $role x3: service resumed after every kill" "resumed $resumed/3"
    check $((during == 3 ? 0 : 1)) "SIGKILL $role x3: every kill landed while the load was running" "$during/3"
    stop_load
    check $? "SIGKILL $role x3: nothing executed twice, no double holder, no early expiry" "$(cat "$tmp/load.out")"
    show_load "kill-$role"
done

# Supervisor: every worker dies with it; a new daemon recovers what was acknowledged.
start_load
sleep 1
pids="$(worker_pid sequencer) $(worker_pid applier) $(worker_pid ingress)"
kill -9 "$sup"
wait "$sup" 2>/dev/null
sup=
sleep 0.5
alive=0
for p in $pids; do # a zombie (state Z) is dead: only its exit status waits for a reaper
    st=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && alive=$((alive + 1))
done
check $((alive == 0 ? 0 : 1)) "SIGKILL supervisor: no worker survives it" "$alive workers alive: $pids"
start_daemon
check $? "allocdbd starts again after the supervisor was killed" "$(tail -5 "$log")"
sleep 0.5
stop_load
check $? "SIGKILL supervisor: every acknowledged write recovered, retries exact, no early expiry" "$(cat "$tmp/load.out")"
show_load kill-supervisor

# SIGSTOP under load: a hung worker is found by its heartbeat, killed and restarted.
start_load
sleep 0.5
old=$(worker_pid applier)
kill -STOP "$old"
wait_new_worker applier "$old"
check $? "SIGSTOP applier: detected by heartbeat and restarted" "$(grep worker_hung "$log" | tail -2)"
grep -q "worker_hung role=applier pid=$old" "$log"
check $? "SIGSTOP applier: the supervisor logged worker_hung" "$(tail -5 "$log")"
ms=$("$load" --addr "$addr" --probe --deadline-s 10)
check $? "SIGSTOP applier: the daemon serves again (${ms}ms)"
sleep 0.3
stop_load
check $? "SIGSTOP applier: the load's checks hold" "$(cat "$tmp/load.out")"
show_load stop-applier

# SIGTERM under load: replies or indefinite errors, exit 0, nothing acknowledged lost.
start_load
sleep 1
stop_daemon
check $? "SIGTERM under load: allocdbd exits 0" "$(tail -8 "$log")"
start_daemon
check $? "allocdbd starts again after SIGTERM" "$(tail -5 "$log")"
sleep 0.5
stop_load
check $? "SIGTERM under load: every acknowledged write kept, retries exact, no early expiry" "$(cat "$tmp/load.out")"
show_load sigterm

[ "$busy" -gt 0 ] && [ "$expired" -gt 0 ] && [ "$indefinite" -gt 0 ]
check $? "the load raced: $busy reserves answered resource_busy, $expired reservations expired, $indefinite indefinite outcomes retried ($acked acknowledged, $cached first answered from the retry cache)"

# Restart intensity: a worker that keeps dying stops the daemon with exit 6.
stop_daemon
start_daemon --restart-intensity-max 2 --restart-intensity-window-ms 60000
check $? "allocdbd starts with a restart limit of 2"
for k in 1 2 3; do
    old=$(worker_pid applier)
    [ -n "$old" ] && kill -9 "$old"
    wait_new_worker applier "$old" || break
done
wait "$sup"
st=$?
sup=
check $((st == 6 ? 0 : 1)) "a worker crashing in a loop trips the restart-intensity limit (exit 6)" "exit $st"
grep -q "restart_intensity_exceeded" "$log"
check $? "restart intensity: a clear log line" "$(tail -5 "$log")"

out=$("$inspect" verify "$tmp/data" 2>&1)
check $? "the data directory passes allocdb-inspect verify" "$out"
echo "# $(grep -c worker_started "$log") worker starts, $(grep -c worker_exited "$log") crashes handled"
[ "$fails" -eq 0 ]
