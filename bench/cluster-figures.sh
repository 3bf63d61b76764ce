#!/bin/bash
# bench/cluster-figures.sh — the replicated daemon's figures on this machine (issue 17), from a
# build directory: throughput and latency of a 3-replica cluster against a single node (batched
# and unbatched, allocdb-bench net), failover time over K primary kills, and the catch-up rate
# of a backup that was down under load. Prints a summary; every run's own output stays in the
# work directory. Figures, not tests: nothing here asserts a speed.
#
#   bash ../bench/cluster-figures.sh [--kills K] [--duration T] [--work DIR]
#
# Everything runs on 127.0.0.1 (ports from 27000); the single node and each replica use the
# same capacities, so the comparison is of replication alone.
set -u
kills=20
duration=10s
work=$(mktemp -d)
while [ $# -gt 0 ]; do
    case $1 in
    --kills) kills=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
    esac
done
mkdir -p "$work" || exit 1
b=${top_builddir:-.}
src=$(cd "$(dirname "$0")/.." && pwd)
export ALLOCDBD="$b/allocdbd" ALLOCDB="$b/allocdb"
bench="$b/allocdb-bench"
load="$b/tests/crash_load"
for f in "$ALLOCDBD" "$ALLOCDB" "$bench" "$load"; do
    [ -x "$f" ] || { echo "missing $f: run from a build directory (make allocdbd allocdb allocdb-bench tests/crash_load)" >&2; exit 69; }
done
caps=(--resource-capacity 262144 --reservation-capacity 1048576 --operation-capacity 4194304)
export ALLOCDB_CLUSTER_OPTS="${caps[*]} --checkpoint-interval-ms 5000"
cluster() { bash "$src/scripts/allocdb-cluster" --dir "$work/cluster" --base-port 27000 "$@"; }
single_pid=
cleanup() {
    cluster stop > /dev/null 2>&1
    [ -n "$single_pid" ] && kill "$single_pid" 2> /dev/null && wait "$single_pid" 2> /dev/null
}
trap cleanup EXIT
echo "work directory: $work"

run_bench() { # NAME ADDR BATCH PIPELINE CONNECTIONS
    "$bench" net --addr "$2" --workload uniform --batch "$3" --pipeline "$4" --connections "$5" \
        --duration "$duration" --resources 100000 --json > "$work/$1.json" 2> "$work/$1.err"
    python3 - "$work/$1.json" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("%-20s %9.0f commands/s  p50 %8.0f us  p99 %8.0f us  (%d commands per request)" % (sys.argv[2],
      d.get("commands_per_s", 0), d.get("p50_us", 0), d.get("p99_us", 0), round(d.get("commands_per_request", 0))))
EOF
}

# ---- a single node (a fresh one per run: a batched run fills the dedupe table) -------------
single() { # NAME BATCH PIPELINE CONNECTIONS
    "$ALLOCDBD" format --data-dir "$work/$1.data" "${caps[@]}" > /dev/null
    "$ALLOCDBD" start --data-dir "$work/$1.data" --listen 127.0.0.1:27100 --admin-listen 127.0.0.1:27101 \
        "${caps[@]}" --checkpoint-interval-ms 5000 2> "$work/$1.log" &
    single_pid=$!
    for _ in $(seq 1 200); do
        grep -q ' ready listen=' "$work/$1.log" && break
        kill -0 "$single_pid" 2> /dev/null || { echo "the single node did not start: $work/$1.log" >&2; exit 1; }
        sleep 0.05
    done
    run_bench "$1" 127.0.0.1:27100 "$2" "$3" "$4"
    kill "$single_pid"
    wait "$single_pid" 2> /dev/null
    single_pid=
}
echo "== throughput (uniform workload, $duration each)"
single single-batched 64 4 32
single single-unbatched 1 1 32

# ---- three replicas -----------------------------------------------------------------------
cluster start 3 > "$work/cluster-start.out" 2>&1 || { cat "$work/cluster-start.out"; exit 1; }
p=$(cluster wait-primary 20)
paddr=127.0.0.1:$((27000 + 10 * p))
run_bench cluster-batched "$paddr" 64 4 32
run_bench cluster-unbatched "$paddr" 1 1 32
addrs=$(cluster addrs)

# ---- failover: K kills of the primary, each timed to the first write that commits after it --
echo "== failover over $kills primary kills (kill -9 to a write committed through every address)"
: > "$work/failover.ms"
for i in $(seq 1 "$kills"); do
    p=$(cluster wait-primary 20) || { echo "no primary before kill $i"; break; }
    t=$(date +%s%N)
    cluster kill "$p" > /dev/null
    ms=$("$load" --addr "$addrs" --probe --since-ns "$t" --deadline-s 30 2> /dev/null)
    echo "$ms" >> "$work/failover.ms"
    cluster restart "$p" > /dev/null
    sleep 2 # let it rejoin before the next kill
done
sort -n "$work/failover.ms" | awk '{ a[NR] = $1; s += $1 } END {
    if (NR == 0) exit;
    printf "failover ms: n=%d min=%d median=%d p90=%d max=%d mean=%.0f\n", NR, a[1], a[int((NR + 1) / 2)],
           a[int(NR * 0.9 + 0.999)], a[NR], s / NR }'

# ---- catch-up: a backup down for 10 s under load, then restarted --------------------------
echo "== catch-up of a backup down for 10 s under load"
p=$(cluster wait-primary 20)
bk=$(((p + 1) % 3))
paddr=127.0.0.1:$((27000 + 10 * p))
commit_of() { "$ALLOCDB" --addr "127.0.0.1:$((27000 + 10 * $1))" --timeout 1s status --json 2> /dev/null |
    grep -o '"commit_lsn": *[0-9]*' | grep -o '[0-9]*$'; }
before=$(commit_of "$bk")
cluster kill "$bk" > /dev/null
"$bench" net --addr "$paddr" --workload uniform --batch 64 --pipeline 4 --connections 16 --duration 10s \
    --resources 100000 > "$work/catchup-load.out" 2>&1
start_commit=$(commit_of "$p")
behind=$((start_commit - before))
t=$(date +%s%N)
cluster restart "$bk" > /dev/null
got=0
for _ in $(seq 1 600); do
    got=$(commit_of "$bk")
    [ -n "$got" ] && [ "$got" -ge "$start_commit" ] && break
    sleep 0.05
done
ms=$((($(date +%s%N) - t) / 1000000))
echo "catch-up: $behind entries behind, caught up in $ms ms from the restart (process start, WAL" \
     "recovery, state transfer, repair): $((behind * 1000 / (ms > 0 ? ms : 1))) entries/s"
cluster stop > /dev/null
