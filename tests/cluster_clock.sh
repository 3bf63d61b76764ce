#!/bin/bash
# tests/cluster_clock.sh — a replica whose clock is an hour fast becomes the primary of a
# 3-replica cluster, and nothing expires early (DESIGN.md §3, TAP).
#
# Replica 0 runs under libfaketime with its wall clock an hour ahead from its first start, so its
# slot timeline (wal/slot_clock.h) is an hour ahead of the others'. The primary is killed until
# replica 0 serves; a primary stamps and expires by cluster time, the lowest reading a quorum's
# agreeing clocks give, so the two honest clocks decide and the fast one moves nothing. Checked
# by the crash tests' client (tests/crash_load.c: its early check compares every expiry with
# the client's own clock), and by one reservation watched by hand: reserved until its TTL, then
# expired (late at most by the clock's possible error).
#
# Then a backup loses its disk: wiped and formatted again with `allocdbd recover`
# (allocdb-cluster wipe), it says recovering, catches up from the others (its log, by repair:
# nothing was pruned yet; state transfer between daemons is not built) and is a backup again.
set -u
lib=
for p in /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 /usr/lib/*/faketime/libfaketimeMT.so.1 \
         /usr/lib/faketime/libfaketimeMT.so.1; do
    [ -f "$p" ] && { lib=$p; break; }
done
if [ -z "$lib" ]; then
    echo "1..0 # SKIP libfaketime is not installed (apt-get install faketime)"
    exit 77
fi
cluster_port_offset=10 # apart from tests/cluster_failover.sh's, should both run at once
. "${top_srcdir:-.}/tests/cluster_lib.sh"

export ALLOCDB_CLUSTER_ENV_0="LD_PRELOAD=$lib FAKETIME=+1h FAKETIME_DONT_FAKE_MONOTONIC=1
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
export ALLOCDB_CLUSTER_OPTS="--resource-capacity 4096 --reservation-capacity 16384 --operation-capacity 65536
    --slot-duration-ms 20 --max-ttl-ms 10s --dedupe-window-ms 10m --history-window-ms 10m
    --request-timeout-ms 2000 --restart-backoff-max-ms 200"

out=$(cluster start 3 2>&1)
check $? "a cluster with replica 0's clock an hour fast starts" "$out"
# Log lines carry the wall clock: replica 0's run an hour ahead of replica 1's.
t_of() { date -d "$(grep -m1 ' starting ' "$ALLOCDB_CLUSTER_DIR/r$1/log" | cut -c1-19)Z" +%s 2>/dev/null || echo 0; }
ahead=$(($(t_of 0) - $(t_of 1)))
[ "$ahead" -ge 3500 ] && [ "$ahead" -le 3700 ]
check $? "replica 0's clock is an hour fast (${ahead} s ahead of replica 1's)"
addrs=$(cluster addrs)

# The primary killed (and restarted) until replica 0 serves.
p=$(cluster wait-primary 10)
for _ in 1 2 3; do
    [ "$p" = 0 ] && break
    cluster kill "$p" > /dev/null
    np=$(other_primary "$p")
    cluster restart "$p" > /dev/null
    p=$np
done
[ "$p" = 0 ]
check $? "the replica with the fast clock becomes primary (r$p)"

# The honest clocks decide: a write commits (a cluster time exists), nothing expires early.
out=$("$ALLOCDB" --addr "$addrs" create-resource 424242 2>&1)
rc=$?
[ $rc -ne 0 ] && out="$out
$(cluster status 2>&1)
$(tail -n 5 "$ALLOCDB_CLUSTER_DIR"/r*/log)"
check $rc "the fast primary logs writes by cluster time" "$out"
t0=$(date +%s%N)
out=$("$ALLOCDB" --addr "$addrs" reserve 424242 7 --ttl 3s 2>&1)
check $? "reserve with a 3 s TTL" "$out"
sleep 2
"$ALLOCDB" --addr "$addrs" tick > /dev/null 2>&1
st=$("$ALLOCDB" --addr "$addrs" --json get-resource 424242 2>&1)
ms=$((($(date +%s%N) - t0) / 1000000))
echo "$st" | grep -q '"state":"reserved"'
check $? "still reserved ${ms} ms into its 3 s TTL (the fast clock is an hour past it)" "$st"
waited=-1
for _ in $(seq 1 100); do
    "$ALLOCDB" --addr "$addrs" tick > /dev/null 2>&1
    if "$ALLOCDB" --addr "$addrs" --json get-resource 424242 2>&1 | grep -q '"state":"available"'; then
        waited=$((($(date +%s%N) - t0) / 1000000))
        break
    fi
    sleep 0.1
done
[ "$waited" -ge 3000 ]
check $? "expired after its TTL, not before (${waited} ms after the reserve was sent)"

p=$(cluster primary)
"$load" --addr "$addrs" --threads 4 --tasks 4 --resources 6 --batch 8 --ttl-ms 50:400 --busy-ms 30 \
    --stamp-slack-ms 700 --duration-ms 4000 --deadline-s 60 --seed 5 > "$tmp/load.out" 2>&1
check $? "under load with r$p primary: no early expiry, no double holder, nothing lost or duplicated" \
    "$(tail -20 "$tmp/load.out")"
grep '^crash_load:' "$tmp/load.out" | tail -1 | sed 's/^/# /'

# ---- a backup's disk lost: it rejoins through recover ---------------------------------------
p=$(cluster primary)
bk=$(((p + 1) % 3))
cluster wipe "$bk" > /dev/null
grep -q "status=recovering" "$ALLOCDB_CLUSTER_DIR/r$bk/log"
check $? "replica $bk wiped and formatted to recover"
cluster restart "$bk" > /dev/null
role=
for _ in $(seq 1 100); do
    role=$(role_of "$bk")
    [ "$role" = backup ] && break
    sleep 0.1
done
[ "$role" = backup ]
check $? "it caught up and is a backup again (role $role)"
grep -q 'view_durable .* recovering=yes' "$ALLOCDB_CLUSTER_DIR/r$bk/log" &&
    grep -q 'view_durable .* recovering=no' "$ALLOCDB_CLUSTER_DIR/r$bk/log"
check $? "it neither voted nor acknowledged as a fresh replica: recovering until caught up (its log)"
cluster kill "$p" > /dev/null
np=$(other_primary "$p")
out=$("$ALLOCDB" --addr "$addrs" --json get-resource 424242 2>&1)
echo "$out" | grep -q '"read":"found"'
check $? "the primary killed: r$np serves what was written before the disk was lost" "$out"

logs_clean
echo "1..$n"
[ "$fails" -eq 0 ]
