#!/bin/bash
# tests/cluster_failover.sh — a 3-replica cluster of real allocdbd processes on 127.0.0.1
# (scripts/allocdb-cluster) under the checking load of the crash tests (TAP).
#
# tests/crash_load drives all three replicas' addresses through liballocdb, which follows
# not_primary hints and retries indefinite outcomes with the same operation id; when the load
# stops it checks that no acknowledged write was lost, none executed twice, no resource had two
# holders and nothing expired early (see tests/crash_load.c). Under that load:
#   - SIGKILL of the primary, twice: a new primary serves (probe: a write through every address,
#     timed from the kill), the old one restarts and catches up as a backup;
#   - SIGKILL of a backup, restarted: it catches up to the primary's commit point;
#   - SIGKILL of one worker of the primary and of a backup (peer, sequencer, applier, ingress):
#     the supervisor restarts it and the cluster serves on;
#   - the primary isolated from its peers (its fault hook): it answers no read, the majority
#     elects and serves; healed, the old primary follows the new view.
# Timing figures are TAP comments, never assertions (the machines are noisy).
set -u
. "${top_srcdir:-.}/tests/cluster_lib.sh"

under_load 1M 500 1000

echo "# 1..N: a 3-replica cluster under load (base port $base)"
out=$(cluster start 3 2>&1)
check $? "the cluster starts and elects a primary" "$out"
echo "$out" | sed 's/^/# /'
addrs=$(cluster addrs)

# ---- the primary killed, twice -------------------------------------------------------------
start_load 1
for round in 1 2; do
    p=$(cluster primary)
    t=$(date +%s%N)
    cluster kill "$p" > /dev/null
    probe "primary r$p killed (round $round)" "$t"
    np=$(cluster wait-primary 10)
    check $? "a new primary (r$np) serves"
    cluster restart "$p" > /dev/null
    out=$(caught_up "$p")
    check $? "the old primary r$p restarts and catches up as a backup" "$out"
done
stop_load "primary kills"

# ---- a backup killed and restarted ---------------------------------------------------------
start_load 2
p=$(cluster primary)
bk=$(((p + 1) % 3))
cluster kill "$bk" > /dev/null
sleep 2
cluster restart "$bk" > /dev/null
out=$(caught_up "$bk")
check $? "backup r$bk killed under load restarts and catches up" "$out"
stop_load "a backup killed"

# ---- one worker killed, on the primary and on a backup -------------------------------------
start_load 3
for w in peer sequencer applier ingress; do
    for who in primary backup; do
        p=$(cluster wait-primary 10)
        r=$p
        [ "$who" = backup ] && r=$(((p + 2) % 3))
        t=$(date +%s%N)
        out=$(cluster kill "$r" "$w" 2>&1)
        check $? "the $w of the $who (r$r) killed" "$out"
        probe "$w of the $who killed" "$t"
    done
done
stop_load "worker kills"

# ---- the primary isolated from its peers ---------------------------------------------------
start_load 4
p=$(cluster primary)
paddr=$(addr_of "$p")
t=$(date +%s%N)
cluster isolate "$p" > /dev/null
probe "primary r$p isolated" "$t"
np=$(other_primary "$p")
check $? "the majority elected another primary (r$np, not r$p)"
out=$("$ALLOCDB" --addr "$paddr" --timeout 2s get-resource 1 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 1 ]
check $? "the isolated old primary r$p answers no read (exit $rc)" "$out"
cluster heal > /dev/null
out=$(caught_up "$p" 2>&1)
rc=$?
check $rc "healed, the old primary r$p follows the new view" "${out:-caught_up returned $rc}"
stop_load "isolation"

logs_clean
echo "1..$n"
[ "$fails" -eq 0 ]
