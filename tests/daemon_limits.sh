#!/bin/bash
# tests/daemon_limits.sh — descriptor exhaustion and connections that only hold a slot (TAP).
#
#   - under a hard RLIMIT_NOFILE of 300, the default max_connections (1024) is lowered to fit,
#     with a warning, instead of the ingress meeting EMFILE first;
#   - descriptors exhausted by admin connections: the admin listener backs off instead of
#     spinning (the ingress used CPU flat out and logged ~300,000 lines a second), logs once per
#     interval, and /health answers again once the connections go;
#   - a server full of connections that hold a slot and say nothing still lets a new client in:
#     the one idle longest is evicted (error idle) and the newcomer is served (connections that
#     said hello: tests/test_ingress.c).
set -u
. "$(dirname "$0")/daemon_lib.sh"
pinned=(--resource-capacity 1024 --reservation-capacity 1024 --operation-capacity 4096)
daemon_prefix=(bash -c 'ulimit -n 300 && exec "$@"' with-300-descriptors) # soft and hard
start_daemon() { daemon_start "$tmp/d" "${pinned[@]}" "$@"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

echo "1..6"
"$allocdbd" format --data-dir "$tmp/d" "${pinned[@]}" > /dev/null
start_daemon
[ $? -eq 0 ] && grep -q 'max_connections_lowered from=1024 to=172' "$log" &&
    ok "RLIMIT_NOFILE 300: max_connections lowered from 1024 to 172, with a warning" ||
    not_ok "max_connections fits the descriptor limit" "$(grep -E 'max_connections|nofile' "$log"; tail -3 "$log")"

# Exhaust the ingress's descriptors with admin connections (they are not client connections).
ing=$(worker_pid ingress)
fds=()
for _ in $(seq 1 320); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$admin_port" 2>/dev/null || break
    fds+=("$fd")
done
sleep 0.5
from=$(wc -l < "$log")
t0=$(cpu_ticks "$ing")
sleep 2
t1=$(cpu_ticks "$ing")
lines=$(since_start | wc -l)
used=$(ls "/proc/$ing/fd" | wc -l)
[ $((t1 - t0)) -lt 40 ] && ok "out of descriptors ($used open, ${#fds[@]} admin connections): the ingress used $((t1 - t0)) ticks in 2 s, not a spin" ||
    not_ok "no spin on EMFILE" "$((t1 - t0)) ticks in 2 s with $used descriptors open"
[ "$lines" -le 2 ] && grep -q 'admin_accept_failed .*Too many open files' "$log" &&
    ok "said once per interval: $lines log lines in 2 s" || not_ok "EMFILE logged once per interval" "$lines lines: $(since_start | head -3)"
for fd in "${fds[@]}"; do exec {fd}>&-; done
code=
for _ in $(seq 1 50); do
    code=$(http_get /health 2>/dev/null | head -1)
    printf '%s\n' "$code" | grep -q ' 200 ' && break
    sleep 0.2
done
printf '%s\n' "$code" | grep -q ' 200 ' && ok "the connections gone, /health answers again" || not_ok "/health after EMFILE" "$code"
daemon_stop

# A server full of connections that only said hello.
start_daemon --max-connections 8
held=()
for _ in $(seq 1 8); do # connections that hold a slot and say nothing
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    held+=("$fd")
done
sleep 1.2
out=$("$cli" --addr "$addr" --timeout 3s create-resource 1 2>&1)
st=$?
[ $st -eq 0 ] && ok "8 of 8 slots held by idle connections: a new client is served (an idle one evicted)" ||
    not_ok "idle connections lock out a new client" "exit $st: $out"
m=$("$cli" --addr "$addr" --json metrics 2>&1 | sed -n 's/.*"connections_evicted": *\([0-9]*\).*/\1/p')
[ "${m:-0}" -ge 1 ] && ok "connections_evicted counted ($m)" || not_ok "evictions counted" "$m"
for fd in "${held[@]}"; do exec {fd}>&-; done
daemon_stop
[ "$fails" -eq 0 ]
