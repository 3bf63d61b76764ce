# tests/daemon_lib.sh — sourced by the daemon test scripts (TAP): counters, a scratch directory
# removed at exit with any daemon still running, and allocdbd started in the background.
#
#   daemon_start DIR [OPTIONS...]   starts allocdbd on DIR (listen and admin on free ports),
#                                   waits until ready; sets sup, addr, port, admin_port;
#                                   1 if it exited first, 2 if not ready in time
#   daemon_stop                     SIGTERM, wait; its exit status
#   daemon_prefix=(CMD ...)         runs allocdbd under CMD (env, a ulimit wrapper)
#   ready_steps=N                   50 ms steps daemon_start waits (default 1200: a minute)
#   worker_pid ROLE, http_get PATH  the pid of a worker; a raw admin HTTP response
#   flip_byte FILE OFFSET           inverts one byte in place (damage that always changes it)
# Lines the daemon logs go to $log; $from is the line count before the last daemon_start.
b="${top_builddir:-.}"
allocdbd="$b/allocdbd"
cli="$b/allocdb"
bench="$b/allocdb-bench"
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }
tmp=$(mktemp -d)
sup=
daemon_prefix=()
ready_steps=1200
on_exit=: # more cleanup a script needs (before the scratch directory goes)
cleanup() {
    [ -n "$sup" ] && kill -9 "$sup" 2>/dev/null
    wait 2>/dev/null
    $on_exit
    rm -rf "$tmp"
}
trap cleanup EXIT
log="$tmp/allocdbd.log"
: > "$log"
from=0

daemon_start() {
    local dir=$1 line
    shift
    from=$(wc -l < "$log")
    "${daemon_prefix[@]}" "$allocdbd" start --prefault-memory 0 --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        2>>"$log" &
    sup=$!
    for _ in $(seq 1 "$ready_steps"); do
        line=$(tail -n +"$((from + 1))" "$log" | grep -m1 ' ready listen=' || true)
        if [ -n "$line" ]; then
            addr=$(printf '%s\n' "$line" | sed -n 's/.* listen=\([^ ]*\).*/\1/p')
            port=${addr##*:}
            admin_port=$(printf '%s\n' "$line" | sed -n 's/.* admin_listen=[^ ]*:\([0-9]*\).*/\1/p')
            return 0
        fi
        kill -0 "$sup" 2>/dev/null || return 1
        sleep 0.05
    done
    return 2
}

daemon_stop() {
    kill -TERM "$sup"
    wait "$sup"
    local st=$?
    sup=
    return $st
}

# Lines logged since the last daemon_start.
since_start() { tail -n +"$((from + 1))" "$log"; }

worker_pid() { ps -o pid=,args= --ppid "$sup" | awk -v r="allocdbd: $1" 'index($0, r) { print $1; exit }'; }

http_get() {
    exec 5<>"/dev/tcp/127.0.0.1/$admin_port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&5
    timeout 3 cat <&5 | tr -d '\r'
    exec 5>&-
}

flip_byte() {
    local v
    v=$(dd if="$1" bs=1 skip="$2" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    printf "\\x$(printf %02x $((255 - ${v:-0})))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
