#!/bin/bash
# tests/cluster_transfer.sh — state transfer between real allocdbd replicas (TAP), under the
# checking load of the crash tests (tests/crash_load: no acknowledged write lost, none executed
# twice, no resource with two holders, nothing expired early).
#
# Small WAL segments and frequent checkpoints, so the primary prunes its WAL within seconds:
#   - a backup killed, the primary prunes past its log, restarted: it takes an image (state
#     transfer), catches up and serves as a backup; then the primary is killed and the cluster
#     it is part of elects and serves;
#   - a backup cut off, the primary prunes, healed with the install_crash fault hook armed: its
#     sequencer dies in the middle of installing the image; restarted, it finishes the install;
#   - a wiped replica formatted with `recover` rejoins through an image;
#   - every replica restarted: each recovers (an installed image is a state like a snapshot).
# Timing figures are TAP comments, never assertions.
set -u
cluster_port_offset=7
. "${top_srcdir:-.}/tests/cluster_lib.sh"

under_load 64K 300 300 # the WAL pruned within seconds

echo "# 1..N: state transfer in a 3-replica cluster (base port $base)"
out=$(cluster start 3 2>&1)
check $? "the cluster starts and elects a primary" "$out"
addrs=$(cluster addrs)
data_of() { echo "$ALLOCDB_CLUSTER_DIR/r$1/data"; }
log_of() { echo "$ALLOCDB_CLUSTER_DIR/r$1/log"; }
first_lsn() { # R: the first LSN R's WAL holds (its oldest segment's name)
    ls "$(data_of "$1")" | sed -n 's/^wal-0*\([0-9][0-9]*\)\.log$/\1/p' | sort -n | head -1
}
# pruned_past R LSN: waits (up to 60 s) until replica R's WAL starts after LSN.
pruned_past() {
    local f=""
    for _ in $(seq 1 300); do
        f=$(first_lsn "$1")
        [ -n "$f" ] && [ "$f" -gt "$2" ] && return 0
        sleep 0.2
    done
    echo "replica $1's WAL starts at ${f:-?}, not after $2"
    return 1
}
# others_pruned_past R LSN: both replicas other than R (a backup repairs from either).
others_pruned_past() {
    pruned_past $((($1 + 1) % 3)) "$2" && pruned_past $((($1 + 2) % 3)) "$2"
}
installs() { grep -c 'image_installed' "$(log_of "$1")"; }
metric() { # R NAME
    "$ALLOCDB" --addr "$(addr_of "$1")" --timeout 1s status --json > /dev/null 2>&1 # the replica answers
    exec 8<> "/dev/tcp/127.0.0.1/$((base + 10 * $1 + 1))" || return 1
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&8
    timeout 2 cat <&8 | sed -n "s/^$2 \([0-9]*\).*/\1/p"
    exec 8<&-
}

# ---- a backup down while the primary prunes ------------------------------------------------
start_load 1
p=$(cluster primary)
bk=$(((p + 1) % 3))
cluster kill "$bk" > /dev/null
had=$(op_of "$p") # no backup's log goes further
out=$(others_pruned_past "$bk" "${had:-0}")
check $? "with backup r$bk down, the others prune their WALs past all r$bk can hold (${had:-?})" "$out"
t=$(date +%s%N)
cluster restart "$bk" > /dev/null
out=$(caught_up "$bk")
check $? "restarted, r$bk catches up ($((($(date +%s%N) - t) / 1000000)) ms)" "$out"
got=$(installs "$bk")
check $([ "${got:-0}" -ge 1 ]; echo $?) "it caught up through a state transfer (image installed)" "$(grep -E 'image|transfer' "$(log_of "$bk")" | tail -5)"
grep -h 'image_installed' "$(log_of "$bk")" | tail -1 | sed 's/^/# /'
m=$(metric "$bk" allocdb_replica_state_transfers_total)
check $([ "${m:-0}" -ge 1 ]; echo $?) "/metrics counts it (allocdb_replica_state_transfers_total ${m:-?})"
role=$(role_of "$bk")
check $([ "$role" = backup ]; echo $?) "r$bk serves as a backup (role ${role:-?})"
t=$(date +%s%N)
cluster kill "$p" > /dev/null
probe "then the primary r$p killed" "$t"
np=$(other_primary "$p")
check $? "a new primary (r$np) serves with r$bk in the majority"
cluster restart "$p" > /dev/null
out=$(caught_up "$p")
check $? "the old primary r$p restarts and catches up" "$out"
stop_load "a backup that took an image"

# ---- a backup cut off; its install crashes half way ------------------------------------------
start_load 2
p=$(cluster wait-primary 10)
bk=$(((p + 2) % 3))
cluster isolate "$bk" > /dev/null
had=$(op_of "$p")
out=$(others_pruned_past "$bk" "${had:-0}")
check $? "with r$bk cut off, the others prune their WALs past all r$bk can hold (${had:-?})" "$out"
cluster fault "$bk" install_crash/2 > /dev/null
check $? "the install_crash fault hook armed on r$bk (after the image is durable)"
cluster heal > /dev/null
out=$(caught_up "$bk")
check $? "healed, r$bk catches up" "$out"
crashed=$(grep -c 'fault_install_crash_now step=2' "$(log_of "$bk")")
finished=$(grep -c 'image_install_finished' "$(log_of "$bk")")
check $([ "${crashed:-0}" -ge 1 ] && [ "${finished:-0}" -ge 1 ]; echo $?) \
    "its sequencer died in the install and the restarted one finished it" \
    "$(grep -E 'image|install|worker_exited' "$(log_of "$bk")" | tail -8)"
stop_load "an install cut by a crash"

# ---- a wiped replica rejoins through recover --------------------------------------------------
start_load 3
p=$(cluster wait-primary 10)
bk=$(((p + 1) % 3))
out=$(cluster wipe "$bk" 2>&1)
check $? "r$bk wiped and formatted to recover" "$out"
out=$(others_pruned_past "$bk" 1)
check $? "the others' WALs no longer start at LSN 1" "$out"
cluster restart "$bk" > /dev/null
out=$(caught_up "$bk")
check $? "the wiped r$bk recovers and catches up" "$out"
got=$(installs "$bk")
check $([ "${got:-0}" -ge 1 ]; echo $?) "through a state transfer" "$(tail -5 "$(log_of "$bk")")"
stop_load "a wiped replica"

# ---- every replica restarted ---------------------------------------------------------------------
cluster stop > /dev/null
out=$(cluster start 3 2>&1)
check $? "all three restart from their disks and elect a primary" "$out"
for r in 0 1 2; do
    out=$(caught_up "$r")
    check $? "r$r is caught up" "$out"
done
grep -h 'recovered kind' "$ALLOCDB_CLUSTER_DIR"/r*/log | tail -3 | sed 's/^/# /'
start_load 4
sleep 2
stop_load "after a full restart"

logs_clean
echo "1..$n"
[ "$fails" -eq 0 ]
