#!/bin/bash
# tests/daemon_notify.sh — what allocdbd tells systemd, with tests/notify_listen standing in
# for it (TAP).
#
# READY=1 only once clients are served; STATUS= with the LSNs; WATCHDOG=1 at twice the rate
# WATCHDOG_USEC asks for, withheld while a worker is down awaiting its (backed-off) restart and
# resumed once it is back; STOPPING=1 on SIGTERM. Then the log: syslog priority prefixes when
# stderr is the journal's stream, log_level filtering, and the events printed at any level.
set -u
b="${top_builddir:-.}"
allocdbd="$b/allocdbd"
cli="$b/allocdb"
n=0
check() { # check DESCRIPTION STATUS [DETAIL]
    n=$((n + 1))
    if [ "$2" -eq 0 ]; then echo "ok $n - $1"; else
        echo "not ok $n - $1"
        [ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/# /'
    fi
}
tmp=$(mktemp -d)
sup=
listener=
cleanup() {
    [ -n "$sup" ] && kill -9 "$sup" 2>/dev/null
    [ -n "$listener" ] && kill "$listener" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
notes="$tmp/notes"
log="$tmp/log"

wait_for() { # wait_for FILE PATTERN [COUNT] [TENTHS]: until FILE has COUNT lines matching
    local want=${3:-1}
    for _ in $(seq 1 "${4:-100}"); do
        [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$want" ] && return 0
        sleep 0.1
    done
    return 1
}
# Largest gap in ms between consecutive WATCHDOG=1 messages received after FROM ms.
max_gap() { awk -v from="$1" '$2 == "WATCHDOG=1" && $1 >= from { if (last != "" && $1 - last > g) g = $1 - last; last = $1 }
                              END { print g + 0 }' "$notes"; }
pings_after() { awk -v from="$1" '$2 == "WATCHDOG=1" && $1 >= from { c++ } END { print c + 0 }' "$notes"; }
now_note_ms() { tail -1 "$notes" | awk '{print $1}'; }

echo "1..10"
"$allocdbd" format --data-dir "$tmp/d" --resource-capacity 1024 --reservation-capacity 1024 \
    --operation-capacity 4096 > /dev/null
"$b/tests/notify_listen" "$tmp/notify" 120 > "$notes" &
listener=$!
for _ in $(seq 1 50); do [ -S "$tmp/notify" ] && break; sleep 0.05; done
NOTIFY_SOCKET="$tmp/notify" WATCHDOG_USEC=1000000 "$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --resource-capacity 1024 --reservation-capacity 1024 \
    --operation-capacity 4096 --restart-backoff-max-ms 5s 2> "$log" &
sup=$!

# 1: READY=1, and clients are served the moment it arrives.
ready=1
out=
if wait_for "$notes" '^[0-9]* READY=1' && wait_for "$log" ' ready listen=' 1 20; then
    addr=$(sed -n 's/.* ready listen=\([^ ]*\).*/\1/p' "$log" | head -1)
    out=$("$cli" --addr "$addr" --timeout 1s create-resource 1 2>&1) && ready=0
fi
check "READY=1 is sent, and a write succeeds right after it" $ready "$out $(tail -3 "$log")"

# 2: STATUS= with the LSNs, once the daemon is ready.
wait_for "$notes" 'STATUS=primary durable_lsn=[0-9]* applied_lsn=[0-9]*' 1 30
check "STATUS= reports role and LSNs" $? "$(tail -5 "$notes")"

# 3: WATCHDOG=1 every half interval (WATCHDOG_USEC=1s: every 500 ms).
t0=$(now_note_ms)
sleep 2.2
pings=$(pings_after "$t0")
gap=$(max_gap "$t0")
[ "$pings" -ge 3 ] && [ "$gap" -le 900 ] && grep -q 'watchdog interval_ms=1000 ping_every_ms=500' "$log"
check "WATCHDOG=1 every 500 ms while healthy ($pings pings in 2.2 s, largest gap $gap ms)" $? "$(tail -5 "$notes")"

# 4: kill the applier 6 times; the 6th restart waits 1.6 s of backoff, with no pings meanwhile.
applier_pid() { ps -o pid=,args= --ppid "$sup" | awk '/applier/ {print $1}'; }
killed=0
for i in 1 2 3 4 5 6; do
    [ "$i" -eq 6 ] && t6=$(now_note_ms)
    p=$(applier_pid)
    [ -n "$p" ] && kill -9 "$p" && killed=$((killed + 1))
    wait_for "$log" 'applier recovered' $((i + 1)) 60 || break
done
gap=$(max_gap "$t6")
[ "$killed" -eq 6 ] && grep -q 'worker_restart_scheduled role=applier delay_ms=1600' "$log" && [ "$gap" -ge 1300 ]
check "no WATCHDOG=1 while the applier waits 1.6 s for its restart (largest gap $gap ms)" $? \
    "killed=$killed $(grep worker_restart_scheduled "$log" | tail -2)"

# 5: back to health: pings resume, and the node serves.
t7=$(now_note_ms)
sleep 1.6
pings=$(pings_after "$t7")
out=$("$cli" --addr "$addr" --timeout 2s get-resource 1 2>&1)
st=$?
[ "$pings" -ge 2 ] && [ $st -eq 0 ]
check "WATCHDOG=1 resumes once the applier is back ($pings pings in 1.6 s) and it serves" $? "$out"

# 6, 7: SIGTERM: STOPPING=1, exit 0.
kill -TERM "$sup"
wait "$sup"
st=$?
sup=
check "SIGTERM: exit 0" $st "$(tail -3 "$log")"
wait_for "$notes" 'STOPPING=1' 1 20
check "STOPPING=1 is sent on shutdown" $?

# 8: under systemd (JOURNAL_STREAM names stderr) lines carry a syslog priority for journald.
printf 'listen = nope\n' > "$tmp/bad.conf"
: > "$tmp/jlog"
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/jlog") "$allocdbd" start --prefault-memory 0 --config "$tmp/bad.conf" --data-dir "$tmp/d" 2>> "$tmp/jlog"
st=$?
[ $st -eq 78 ] && grep -q '^<3>[0-9T:.-]*Z error .* config_rejected reason=".*bad.conf:1: listen' "$tmp/jlog"
check "journal stream: a rejected config is an error line with priority <3> and file:line (exit $st)" $? "$(cat "$tmp/jlog")"
JOURNAL_STREAM=1:1 "$allocdbd" start --prefault-memory 0 --config "$tmp/bad.conf" --data-dir "$tmp/d" 2> "$tmp/jlog2"
grep -q '^[0-9T:.-]*Z error ' "$tmp/jlog2"
check "no priority prefix when JOURNAL_STREAM is not our stderr" $? "$(cat "$tmp/jlog2")"

# 10: log_level = error: routine info lines go, recovery/start/exit events stay.
"$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --resource-capacity 1024 \
    --reservation-capacity 1024 --operation-capacity 4096 --log-level error 2> "$log" &
sup=$!
wait_for "$log" ' ready listen=' 1 100
kill -TERM "$sup"
wait "$sup"
sup=
grep -q 'sequencer wal_recovered' "$log" && grep -q 'applier recovered' "$log" &&
    grep -q 'worker_started role=ingress' "$log" && grep -q 'supervisor exiting code=0' "$log" &&
    ! grep -q 'supervisor_state\|worker_stopping' "$log"
check "log_level=error still logs recovery, starts and exit, and nothing routine" $? "$(cat "$log")"
