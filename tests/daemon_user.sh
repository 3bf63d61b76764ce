#!/bin/bash
# tests/daemon_user.sh — what a user of a single node sees (TAP).
#
# The README's five-minute tour, run as printed (the CLI and the daemon as ./allocdb and
# ./allocdbd, the node's addresses swapped for free ports), every step checked: the reservation
# id taken with --print-id confirms, the status is text with the worker table, and
# `allocdbd stop` stops the node. Then the CLI's text: a deadline slot with about how long until
# it ends, --json keeping the raw slot, status as text without the unused peer row,
# ttl_out_of_range explained. Then `allocdbd stop` against a stale pid, a pid that does not hold
# the lock, a stopped (SIGSTOP) supervisor and a missing directory; `format` on a non-empty
# directory (exit 9); the start line's shm_bytes; and a Ctrl-C (SIGINT to the whole process
# group) that stops cleanly with no warning.
set -u
b="${top_builddir:-.}"
src="${top_srcdir:-$(dirname "$0")/..}"
allocdbd="$(cd "$b" && pwd)/allocdbd"
cli="$(cd "$b" && pwd)/allocdb"
. "$src/tests/tap.sh"
tmp=$(mktemp -d)
pids=() # every process this script started, killed by pid at the end
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# start_node DIR LOG [OPTIONS]: background, wait for ready; sets sup, addr, admin.
start_node() {
    local dir=$1 log=$2 line
    shift 2
    "$allocdbd" start --prefault-memory 0 --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" >>"$log" 2>&1 &
    sup=$!
    pids+=("$sup")
    for _ in $(seq 1 200); do
        line=$(grep -m1 ' ready listen=' "$log")
        if [ -n "$line" ]; then
            addr=$(printf '%s\n' "$line" | sed -n 's/.* listen=\([^ ]*\).*/\1/p')
            admin=$(printf '%s\n' "$line" | sed -n 's/.* admin_listen=\([^ ]*\).*/\1/p')
            return 0
        fi
        kill -0 "$sup" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
gone() { # gone PID [TENTHS]: waits until PID has exited
    for _ in $(seq 1 "${2:-100}"); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}

echo "1..25"

# ---- the README tour -------------------------------------------------------------------------
tour=$(awk '/^### A five-minute tour/ { on = 1; next } on && /^```sh/ { code = 1; next }
            code && /^```/ { exit } code { print }' "$src/README.md")
mkdir "$tmp/tour"
cd "$tmp/tour" || exit 99
ln -s "$cli" allocdb
ln -s "$allocdbd" allocdbd
pinned=(--slot-duration-ms 100 --resource-capacity 65536 --reservation-capacity 262144
        --operation-capacity 1048576) # as scripts/demo formats and starts it
./allocdbd format --data-dir demo-data "${pinned[@]}" >/dev/null
if start_node demo-data demo-data.log "${pinned[@]}"; then
    # Each line of the tour runs after a marker, so its output can be checked on its own.
    script=$tmp/tour.sh
    i=0
    lines=()
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        lines+=("$line")
        printf 'echo "@@ %d"\n%s\n' "$i" "${line//127.0.0.1:7402/$admin}" >>"$script"
        i=$((i + 1))
    done <<<"$tour"
    ALLOCDB_ADDR=$addr timeout 90 bash "$script" >"$tmp/tour.out" 2>&1
    section() { # section PATTERN: the output of the first tour line matching PATTERN
        local k
        for k in "${!lines[@]}"; do
            case ${lines[$k]} in *$1*)
                awk -v k="$k" '$0 == "@@ " k { on = 1; next } /^@@ [0-9]+$/ { on = 0 } on' "$tmp/tour.out"
                return ;;
            esac
        done
        echo "(no tour line has '$1')"
    }
    out=$(section "reserve 7 1001")
    case $out in *"committed: ok"*"reservation_id: "*) ok "tour: reserve 7 1001 --print-id prints its report" ;;
        *) not_ok "tour: reserve 7 1001" "$out" ;; esac
    out=$(section "reserve 7 1002")
    case $out in *resource_busy*) ok "tour: a second holder gets resource_busy" ;; *) not_ok "tour: resource_busy" "$out" ;; esac
    out=$(section "allocdb confirm")
    case $out in *"committed: ok"*) ok "tour: the confirm line works as typed (the id from the reserve line)" ;;
        *) not_ok "tour: confirm as typed" "$out" ;; esac
    out=$(section "reserve 8 1003")
    case $out in *"deadline_slot: "[0-9]*" (expires in about "*) ok "tour: the deadline slot comes with the time left" ;;
        *) not_ok "tour: deadline with the time left" "$out" ;; esac
    out=$(section "get-resource 8")
    case $out in *"state: available"*) ok "tour: the unconfirmed reservation expired" ;; *) not_ok "tour: expiry" "$out" ;; esac
    out=$(section "allocdb status")
    if printf '%s\n' "$out" | grep -q '^applied_lsn: [0-9]' && printf '%s\n' "$out" | grep -q '^applier  *[1-9]' &&
        ! printf '%s\n' "$out" | grep -q '^{\|^peer'; then
        ok "tour: status is text, LSNs and the worker table, no peer row"
    else not_ok "tour: status as text" "$out"; fi
    out=$(section "allocdb get-resource 7")
    case $out in *found*"state: confirmed"*) ok "tour: served after the applier was killed" ;; *) not_ok "tour: after kill -9" "$out" ;; esac
    out=$(section "grep worker_")
    case $out in *"worker_exited role=applier signal=KILL"*) ok "tour: the log shows the applier's death" ;;
        *) not_ok "tour: worker_exited in the log" "$out" ;; esac
    out=$(section "allocdbd stop")
    if gone "$sup" 50 && printf '%s\n' "$out" | grep -q "stopped: pid $sup"; then ok "tour: allocdbd stop stops the node and says so"
    else not_ok "tour: allocdbd stop" "$out"; fi
else
    for _ in 1 2 3 4 5 6 7 8 9; do not_ok "tour: the node did not start" "$(tail -5 demo-data.log)"; done
fi
cd "$tmp" || exit 99

# ---- the CLI's text ------------------------------------------------------------------------
pin=(--slot-duration-ms 50 --max-ttl-ms 60s)
"$allocdbd" format --data-dir "$tmp/d" "${pin[@]}" >/dev/null
start_node "$tmp/d" "$tmp/log" "${pin[@]}" || not_ok "start" "$(tail -5 "$tmp/log")"
c() { "$cli" --addr "$addr" "$@"; }
c create-resource 1 >/dev/null
out=$(c reserve 1 10 --ttl 20s 2>&1)
secs=$(printf '%s\n' "$out" | sed -n 's/^deadline_slot: [0-9]* (expires in about \([0-9]*\)\.[0-9]s, about 20[0-9-]* [0-9:]* UTC, unless confirmed)$/\1/p')
[ -n "$secs" ] && [ "$secs" -ge 15 ] && [ "$secs" -le 20 ] && # (a loaded machine answers late)
    ok "reserve --ttl 20s: the deadline slot, about 20 s from now, and when" || not_ok "reserve: deadline in text" "$out"
rid=$(printf '%s\n' "$out" | sed -n 's/^reservation_id: //p')
out=$(c get-reservation "$rid" 2>&1)
printf '%s\n' "$out" | grep -q -E "^deadline_slot: [0-9]+ \(expires in about (1[0-9]|20)\.[0-9]s, about .* UTC, unless confirmed\)$" &&
    ok "get-reservation: the same for a reserved one" || not_ok "get-reservation: deadline in text" "$out"
out=$(c --json reserve 1 11 --ttl 20s --op-id 5 2>&1; c --json get-reservation "$rid")
printf '%s\n' "$out" | grep -q '"deadline_slot":[0-9]*,"released_lsn"' && ! printf '%s\n' "$out" | grep -q 'about' &&
    ok "--json keeps the raw slot, nothing else" || not_ok "--json: raw slot" "$out"
out=$(c reserve 1 12 --ttl 2m 2>&1)
st=$?
[ $st -eq 1 ] && printf '%s\n' "$out" | grep -q "ttl_out_of_range" &&
    printf '%s\n' "$out" | grep -q -- "--ttl 2m (2400 slots of 50 ms) is longer than this server allows" &&
    ok "ttl_out_of_range says the TTL is above the server's limit" || not_ok "ttl_out_of_range explained" "exit $st: $out"
out=$(c status)
if printf '%s\n' "$out" | grep -q '^durable_lsn: [0-9]' && printf '%s\n' "$out" | grep -q '^role: primary' &&
    [ "$(printf '%s\n' "$out" | grep -c -E '^(sequencer|applier|ingress) +[1-9][0-9]* +[0-9]+ +ready ')" -eq 3 ] &&
    ! printf '%s\n' "$out" | grep -q '^peer'; then ok "status: text, with sequencer, applier and ingress rows and no peer"
else not_ok "status as text" "$out"; fi
out=$(c --json status)
case $out in '{"'*'"workers":['*) ok "status --json: the server's object" ;; *) not_ok "status --json" "$out" ;; esac
grep -q ' starting .* shm_bytes=[1-9]' "$tmp/log" && ! grep -q ' starting .*segment_bytes=' "$tmp/log" &&
    ok "the start line names the shared memory shm_bytes" || not_ok "start line" "$(grep ' starting ' "$tmp/log")"

# ---- allocdbd stop ---------------------------------------------------------------------------
kill -STOP "$sup"
out=$("$allocdbd" stop --data-dir "$tmp/d" --timeout 500ms 2>&1)
st=$?
kill -CONT "$sup"
[ $st -eq 10 ] && printf '%s\n' "$out" | grep -q "still held after 500 ms" &&
    ok "stop: a supervisor that does not exit: exit 10 after --timeout" || not_ok "stop timeout" "exit $st: $out"
gone "$sup" 100 && ok "... the SIGTERM it was sent stops it once it runs again" || not_ok "SIGTERM after SIGCONT"
kill -TERM "$sup" 2>/dev/null && gone "$sup" 200 # whatever happened above, the checks below start afresh
sleep 60 &
bystander=$!
pids+=("$bystander")
printf '%d\n' "$bystander" >"$tmp/d/LOCK"
out=$("$allocdbd" stop --data-dir "$tmp/d" 2>&1)
st=$?
[ $st -eq 0 ] && printf '%s\n' "$out" | grep -q "not running" && kill -0 "$bystander" 2>/dev/null &&
    ok "stop: a stale pid in LOCK is not signalled: not running, exit 0" || not_ok "stop: stale pid" "exit $st: $out"
(exec 9>>"$tmp/d/LOCK" && flock -x 9 && exec sleep 60) & # holds the lock itself, as a daemon would
holder=$!
pids+=("$holder")
sleep 0.3
out=$("$allocdbd" stop --data-dir "$tmp/d" --timeout 300ms 2>&1)
st=$?
[ $st -eq 10 ] && printf '%s\n' "$out" | grep -q "signalling nothing" && kill -0 "$bystander" 2>/dev/null &&
    ok "stop: LOCK held, but not by the pid it names: nothing signalled, exit 10" || not_ok "stop: held by another" "exit $st: $out"
kill "$holder" "$bystander" 2>/dev/null
out=$("$allocdbd" stop --data-dir "$tmp/nowhere" 2>&1)
[ $? -eq 2 ] && ok "stop: no such directory: exit 2" || not_ok "stop: missing dir" "$out"

# ---- format, --help --------------------------------------------------------------------------
out=$("$allocdbd" format --data-dir "$tmp/d" 2>&1)
st=$?
[ $st -eq 9 ] && printf '%s\n' "$out" | grep -q "not empty" && ok "format on a non-empty directory: exit 9" ||
    not_ok "format non-empty: exit 9" "exit $st: $out"
out=$("$allocdbd" --help)
printf '%s\n' "$out" | grep -q "allocdbd stop --data-dir DIR" && printf '%s\n' "$out" | grep -q "9 format: the directory is not empty" &&
    printf '%s\n' "$out" | grep -q "10 stop: still running" && ok "--help: stop, exit 9 and 10" || not_ok "--help" "$out"

# ---- Ctrl-C: SIGINT to the whole process group ----------------------------------------------
: >"$tmp/log2"
setsid "$allocdbd" start --prefault-memory 0 --data-dir "$tmp/d" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${pin[@]}" \
    >>"$tmp/log2" 2>&1 &
sup=$!
pids+=("$sup")
for _ in $(seq 1 200); do grep -q ' ready listen=' "$tmp/log2" && break; sleep 0.05; done
pgid=$(ps -o pgid= -p "$sup" | tr -d ' ')
if [ "$pgid" = "$sup" ] && [ "$(ps -o pid= -g "$pgid" | wc -l)" -ge 4 ]; then
    kill -INT -- "-$pgid"
    wait "$sup"
    st=$?
    [ $st -eq 0 ] && ok "SIGINT to the process group: exit 0" || not_ok "group SIGINT: exit 0" "exit $st"
    warns=$(grep ' warn ' "$tmp/log2")
    [ -z "$warns" ] && [ "$(grep -c ' info  supervisor worker_stopped role=' "$tmp/log2")" -eq 3 ] &&
        ok "... each worker's clean exit logged as worker_stopped (info), no warning" ||
        not_ok "group SIGINT: no warn" "$(grep -E 'worker_|warn' "$tmp/log2")"
else
    not_ok "SIGINT to the process group: the daemon leads its own group" "pgid=$pgid sup=$sup"
    not_ok "... (not run)"
fi

[ "$fails" -eq 0 ]
