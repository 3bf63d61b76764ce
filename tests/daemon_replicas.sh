#!/bin/bash
# tests/daemon_replicas.sh — formatting replicas of a cluster and the replication keys (TAP).
#
# format --replica I --replica-count N (N = 1, 3 or 5; a cluster needs its --cluster-id),
# recover (a lost disk formatted again as that replica, status recovering, in one step),
# their refusals, the replicas and peer_listen keys and the replication timeouts in
# check-config, and start refusing a config that does not fit the replica the data dir is.
set -u
. "$(dirname "$0")/daemon_lib.sh"

# expect NAME WANT_EXIT PATTERN CMD...: exit status and a line of output
expect() {
    local name=$1 want=$2 pattern=$3
    shift 3
    out=$("$@" 2>&1)
    local got=$?
    if [ "$got" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pattern"; then ok "$name"; else
        not_ok "$name" "exit $got (want $want, '$pattern'): $out"; fi
}
# meta_status DIR: the metadata's status as allocdbd start logs it, or what start refused with
start_line() {
    "$allocdbd" start --prefault-memory 0 --data-dir "$1" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        "${@:2}" 2>&1 | grep -m1 -E 'start_refused|ready listen='
}
peers=127.0.0.1:7701,127.0.0.1:7702,127.0.0.1:7703

echo "1..25"

expect "format: replica 1 of 3" 0 "replica_id=1 replica_count=3" \
    "$allocdbd" format --data-dir "$tmp/r1" --cluster-id 0xC1 --replica 1 --replica-count 3
expect "format: a cluster's replica needs --cluster-id" 64 "needs --cluster-id" \
    "$allocdbd" format --data-dir "$tmp/x" --replica 0 --replica-count 3
expect "format: 2 replicas is no cluster size" 64 "1, 3 or 5 replicas" \
    "$allocdbd" format --data-dir "$tmp/x" --cluster-id 7 --replica-count 2
expect "format: replica 3 of 3 does not exist" 64 "replicas 0 to 2" \
    "$allocdbd" format --data-dir "$tmp/x" --cluster-id 7 --replica 3 --replica-count 3
expect "format: --replica is not a number" 64 "not a replica index" \
    "$allocdbd" format --data-dir "$tmp/x" --cluster-id 7 --replica one --replica-count 3
[ ! -e "$tmp/x" ] && ok "a refused format creates nothing" || not_ok "a refused format creates nothing" "$(ls -la "$tmp/x")"
expect "format: the single node is still the default" 0 "replica_id=0 replica_count=1" \
    "$allocdbd" format --data-dir "$tmp/single"
expect "check-config: --replica is format's flag only" 64 "unknown option --replica" \
    "$allocdbd" check-config --replica 1

expect "recover: replica 2 of 3, status recovering" 0 "replica_id=2 replica_count=3 status=recovering" \
    "$allocdbd" recover --data-dir "$tmp/r2" --cluster-id 0xC1 --replica 2 --replica-count 3
expect "recover: a single replica has no one to recover from" 64 "no others to recover from" \
    "$allocdbd" recover --data-dir "$tmp/x" --cluster-id 7 --replica 0 --replica-count 1
expect "recover: needs the replica it was" 64 "needs --replica I --replica-count N" \
    "$allocdbd" recover --data-dir "$tmp/x" --cluster-id 7
expect "recover: never over existing data" 9 "not empty" \
    "$allocdbd" recover --data-dir "$tmp/r1" --cluster-id 0xC1 --replica 1 --replica-count 3

expect "check-config: replicas and the timeouts" 0 "replicas = $peers" \
    "$allocdbd" check-config --replicas "$peers" --primary-timeout-ms 2s --peer-heartbeat-ms 100ms
expect "check-config: 4 replicas refused" 78 "4 addresses: a cluster has 1, 3 or 5 replicas" \
    "$allocdbd" check-config --replicas "$peers,127.0.0.1:7704"
expect "check-config: a repeated address refused" 78 "replicas 0 and 2 are both 127.0.0.1:7701" \
    "$allocdbd" check-config --replicas 127.0.0.1:7701,127.0.0.1:7702,127.0.0.1:7701
expect "check-config: a bad address refused" 78 "address 1: 'nohost' is not HOST:PORT" \
    "$allocdbd" check-config --replicas 127.0.0.1:7701,nohost,127.0.0.1:7703
expect "check-config: a primary timeout of two heartbeats refused" 78 "under four peer_heartbeat_ms" \
    "$allocdbd" check-config --peer-heartbeat-ms 500ms --primary-timeout-ms 1s

# start: the config must fit the replica the data dir is; a fitting one starts (alone it serves
# nothing: tests/cluster_failover.sh runs whole clusters).
line=$(start_line "$tmp/r1")
case $line in *"replicas lists 0 addresses, but the data directory is replica 1 of a 3-replica cluster"*)
    ok "start: replica 1 of 3 without replicas is refused" ;;
*) not_ok "start: replica 1 of 3 without replicas is refused" "$line" ;; esac
line=$(start_line "$tmp/r1" --replicas "$peers" --peer-listen 0.0.0.0:7701)
case $line in *"peer_listen = 0.0.0.0:7701 is not replica 1's address in replicas (127.0.0.1:7702)"*)
    ok "start: another replica's peer_listen is refused" ;;
*) not_ok "start: another replica's peer_listen is refused" "$line" ;; esac
# status ADDR: the role the status document names
role_of() { "$b/allocdb" --addr "$1" --timeout 2s status --json 2>/dev/null | grep -o '"role": *"[a-z_]*"' | head -1; }
if daemon_start "$tmp/r1" --replicas "$peers" --peer-listen 0.0.0.0:7702 &&
    grep -q 'replica replica=1 of=3 status=normal' "$log"; then
    ok "start: a fitting replica of a cluster starts"
else
    not_ok "start: a fitting replica of a cluster starts" "$(tail -3 "$log")"
fi
got=$(role_of "$addr")
case $got in *'"backup"'* | *'"view_change"'*) ok "alone, it does not serve ($got)" ;;
*) not_ok "alone, it does not serve" "$got" ;; esac
out=$("$b/allocdb" --addr "$addr" --timeout 1s create-resource 1 2>&1)
[ $? -eq 2 ] && ok "alone, a write is refused not_primary (definite)" || not_ok "alone, a write is refused not_primary (definite)" "$out"
daemon_stop > /dev/null
sup=
if daemon_start "$tmp/r2" --replicas "$peers" && grep -q 'replica replica=2 of=3 status=recovering' "$log"; then
    ok "start: the recovering replica says so"
else
    not_ok "start: the recovering replica says so" "$(tail -3 "$log")"
fi
got=$(role_of "$addr")
case $got in *'"recovering"'*) ok "its status says recovering" ;; *) not_ok "its status says recovering" "$got" ;; esac
daemon_stop > /dev/null
sup=
daemon_start "$tmp/single" --replicas 127.0.0.1:7709
if [ $? -eq 0 ]; then ok "start: a single node with its own address in replicas serves"; else
    not_ok "start: a single node with its own address in replicas serves" "$(tail -3 "$log")"; fi
daemon_stop > /dev/null
sup=

[ "$fails" -eq 0 ]
