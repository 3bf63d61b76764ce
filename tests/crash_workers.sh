#!/bin/bash
# tests/crash_workers.sh — allocdbd under SIGKILL, SIGSTOP and SIGTERM, through the real protocol
# (TAP). Each scenario runs tests/crash_load, which writes through create/reserve/confirm|release,
# retries every indefinite outcome with the same operation id, then checks that every
# acknowledged write is present with its result, that retrying it returns the stored result
# (never a second execution), and that the state matches (see tests/crash_load.c).
#
#   - SIGKILL of each worker kind (ingress, sequencer, applier), three times under load; after
#     each kill a probe write measures how long until the daemon served again;
#   - SIGKILL of the supervisor: no worker survives; a new allocdbd recovers every acknowledged
#     write (the load client keeps retrying across the restart);
#   - a worker crashing in a loop trips the restart-intensity limit: exit 6 and a log line;
#   - SIGTERM under load: exit 0, nothing acknowledged lost;
#   - SIGSTOP of a worker: the heartbeat check kills and restarts it;
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
cleanup() {
    [ -n "$sup" ] && kill -9 "$sup" 2>/dev/null
    for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
log="$tmp/allocdbd.log"
addr=127.0.0.1:0
# 30,000 writes per scenario (at least 10,000 are required), so the load outlasts the kills;
# a test checks that every kill landed while it ran.
writes=${CRASH_WRITES:-30000}
caps=(--resource-capacity 65536 --reservation-capacity 65536 --operation-capacity 262144)
if "$allocdbd" --version | grep -q debug; then
    # A debug build checks every state-machine invariant after every apply, at a cost that
    # grows with the capacities: the minimum load (10,000 writes) on tables just big enough.
    writes=${CRASH_WRITES:-10000}
    caps=(--resource-capacity 32768 --reservation-capacity 32768 --operation-capacity 65536)
fi

# The dedupe window covers a whole scenario (the client retries every write at the end).
opts=("${caps[@]}" --dedupe-window-ms 10m
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

echo "1..23"
"$allocdbd" format --data-dir "$tmp/data" "${opts[@]}" > /dev/null 2>>"$log"
start_daemon
check $? "allocdbd starts and reports ready" "$(tail -5 "$log")"

for role in ingress sequencer applier; do
    "$load" --addr "$addr" --connections 8 --writes "$writes" --seed $RANDOM --deadline-s 90 \
        > "$tmp/load.out" 2>&1 &
    lp=$!
    resumed=0
    during=0
    gaps=
    for k in 1 2 3; do
        sleep 0.3
        old=$(worker_pid "$role")
        [ -n "$old" ] || continue
        kill -0 "$lp" 2>/dev/null && during=$((during + 1))
        kill -9 "$old"
        ms=$("$load" --addr "$addr" --probe --deadline-s 10)
        [ $? -eq 0 ] && resumed=$((resumed + 1))
        gaps="$gaps ${ms}ms"
        wait_new_worker "$role" "$old"
    done
    echo "# $role killed 3 times; a probe write committed after:$gaps"
    check $((resumed == 3 ? 0 : 1)) "SIGKILL $role x3: service resumed after every kill" "resumed $resumed/3"
    check $((during == 3 ? 0 : 1)) "SIGKILL $role x3: every kill landed while the load was running" "$during/3"
    wait "$lp"
    check $? "SIGKILL $role x3: every acknowledged write present, retries exact, none twice" "$(cat "$tmp/load.out")"
    sed 's/^/# /' "$tmp/load.out"
done

# Supervisor: every worker dies with it; a new daemon recovers what was acknowledged.
"$load" --addr "$addr" --connections 8 --writes "$writes" --seed $RANDOM --deadline-s 90 > "$tmp/load.out" 2>&1 &
lp=$!
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
wait "$lp"
check $? "SIGKILL supervisor: every acknowledged write recovered, retries exact" "$(cat "$tmp/load.out")"
sed 's/^/# /' "$tmp/load.out"

# SIGSTOP: a hung worker is found by its heartbeat, killed and restarted.
old=$(worker_pid applier)
kill -STOP "$old"
wait_new_worker applier "$old"
check $? "SIGSTOP applier: detected by heartbeat and restarted" "$(grep worker_hung "$log" | tail -2)"
grep -q "worker_hung role=applier pid=$old" "$log"
check $? "SIGSTOP applier: the supervisor logged worker_hung" "$(tail -5 "$log")"
ms=$("$load" --addr "$addr" --probe --deadline-s 10)
check $? "SIGSTOP applier: the daemon serves again (${ms}ms)"

# SIGTERM under load: replies or indefinite errors, exit 0, nothing acknowledged lost.
"$load" --addr "$addr" --connections 8 --writes "$writes" --seed $RANDOM --deadline-s 90 > "$tmp/load.out" 2>&1 &
lp=$!
sleep 1
stop_daemon
check $? "SIGTERM under load: allocdbd exits 0" "$(tail -8 "$log")"
start_daemon
check $? "allocdbd starts again after SIGTERM" "$(tail -5 "$log")"
wait "$lp"
check $? "SIGTERM under load: every acknowledged write kept, retries exact" "$(cat "$tmp/load.out")"
sed 's/^/# /' "$tmp/load.out"

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
