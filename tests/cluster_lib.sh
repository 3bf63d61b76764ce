# tests/cluster_lib.sh — sourced by the cluster test scripts (TAP): a scratch directory holding
# a cluster run by scripts/allocdb-cluster, stopped and removed at exit (with a load the script
# started, $lp), a watchdog that fails a run stuck for 10 minutes, and what the scripts ask of
# the cluster.
#
#   cluster ARGS...       scripts/allocdb-cluster on this script's cluster
#   check RC DESC [WHY]   ok if RC is 0, else not ok with WHY
#   addr_of R             replica R's client address; $addrs: all of them (after `cluster start`)
#   commit_of R           replica R's commit point (empty if it does not answer)
#   op_of R               the last entry of replica R's log (likewise)
#   role_of R             replica R's role (primary, backup, view_change, recovering)
#   other_primary R       waits up to 10 s for a primary other than R; prints it (1: none)
#   under_load SEG CKPT_MS CKPT_MIN   the settings for the checking load: $load_opts and
#                         ALLOCDB_CLUSTER_OPTS with those WAL segment and checkpoint settings
#   start_load SEED       tests/crash_load (options: $load_opts) on $addrs in the background
#   stop_load NAME        stops it: a check that it found no violation
#   probe NAME SINCE_NS   a check that a write commits through $addrs (ms since SINCE_NS)
#   caught_up R           replica R's commit point reaches the primary's (1 and why: not)
#   logs_clean            a check that no replica's log holds a sanitizer report or an assertion
# Set cluster_port_offset before sourcing to keep two scripts' ports apart.
. "${top_srcdir:-.}/tests/tap.sh"
b="${top_builddir:-.}"
src="${top_srcdir:-.}"
export ALLOCDBD="$b/allocdbd" ALLOCDB="$b/allocdb"
load="$b/tests/crash_load"
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2" "${3:-}"; fi; }

tmp=$(mktemp -d)
export ALLOCDB_CLUSTER_DIR="$tmp/cluster"
# Fixed ports (the config lists them), below the kernel's ephemeral range (32768 and up): a
# client's or a peer's outgoing connection there would hold a port a replica must bind.
base=$((20000 + ($$ % 600) * 20 + ${cluster_port_offset:-0}))
addrs=
cluster() { bash "$src/scripts/allocdb-cluster" --base-port "$base" "$@"; }
lp=
# A cluster that stops making progress must fail the test, not hang the suite: every wait in
# the scripts is bounded, and so is the whole (well under a minute when healthy). The watchdog
# looks every second whether the script still runs, so it never outlives it (and never signals
# a process that got its pid later), even when the script was killed before its trap ran.
(
    t=0
    while kill -0 $$ 2> /dev/null; do
        sleep 1
        t=$((t + 1))
        [ $t -ge 600 ] && { kill -TERM $$; break; }
    done
) > /dev/null 2>&1 < /dev/null &
watchdog=$!
cleanup() {
    kill "$watchdog" 2> /dev/null
    [ -n "$lp" ] && kill -9 "$lp" 2> /dev/null
    cluster stop > /dev/null 2>&1
    wait 2> /dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

addr_of() { echo "127.0.0.1:$((base + 10 * $1))"; }
status_of() { "$ALLOCDB" --addr "$(addr_of "$1")" --timeout 500ms status --json 2> /dev/null; }
commit_of() { status_of "$1" | grep -o '"commit_lsn": *[0-9]*' | grep -o '[0-9]*$'; }
op_of() { status_of "$1" | grep -o '"op_lsn": *[0-9]*' | head -1 | grep -o '[0-9]*$'; }
role_of() { status_of "$1" | grep -o '"role": *"[a-z_]*"' | head -1 | grep -o '[a-z_]*"$' | tr -d '"'; }
other_primary() {
    local np
    for _ in $(seq 1 50); do
        np=$(cluster primary) && [ "$np" != "$1" ] && { echo "$np"; return 0; }
        sleep 0.2
    done
    return 1
}

# Small tables; nothing retires during a test; short slots, so expirations happen all along.
# A debug build's smaller dedupe table (its invariant check after every apply grows with it).
under_load() {
    local caps="--resource-capacity 16384 --reservation-capacity 65536 --operation-capacity 524288"
    load_opts=(--threads 4 --tasks 4 --resources 6 --batch 8 --ttl-ms 50:400 --busy-ms 30 --stamp-slack-ms 700)
    if "$ALLOCDBD" --version | grep -q debug; then
        caps="--resource-capacity 4096 --reservation-capacity 16384 --operation-capacity 65536"
        load_opts=(--threads 4 --tasks 3 --resources 6 --batch 8 --ttl-ms 50:400 --busy-ms 60 --stamp-slack-ms 700)
    fi
    export ALLOCDB_CLUSTER_OPTS="$caps --slot-duration-ms 20 --max-ttl-ms 10s --dedupe-window-ms 10m
        --history-window-ms 10m --wal-segment-bytes $1 --checkpoint-interval-ms $2
        --checkpoint-min-entries $3 --request-timeout-ms 2000 --restart-backoff-max-ms 200"
}
start_load() {
    "$load" --addr "$addrs" "${load_opts[@]}" --duration-ms 600000 --deadline-s 60 --seed "$1" > "$tmp/load.out" 2>&1 &
    lp=$!
    sleep 1
}
stop_load() { # NAME
    kill -USR1 "$lp" 2>/dev/null
    wait "$lp"
    local rc=$?
    lp=
    check $rc "$1: no lost, duplicated, doubly held or early-expired write" "$(tail -20 "$tmp/load.out")"
    grep '^crash_load:' "$tmp/load.out" | tail -1 | sed 's/^/# /'
}
# probe NAME SINCE_NS: a write must commit through the cluster's addresses; prints the ms.
probe() {
    local ms
    ms=$("$load" --addr "$addrs" --probe --since-ns "$2" --deadline-s 20 2>&1)
    check $? "$1: a write commits again (${ms} ms after the fault)" "$ms"
}
caught_up() { # R: replica R's commit point reaches the primary's (as it was when R was asked)
    local p want="" got=""
    p=$(cluster wait-primary 10) || { echo "no primary"; return 1; }
    want=$(commit_of "$p")
    [ -n "$want" ] || { echo "the primary r$p does not answer"; return 1; }
    for _ in $(seq 1 100); do
        got=$(commit_of "$1")
        [ -n "$got" ] && [ "$got" -ge "$want" ] && return 0
        sleep 0.2
    done
    echo "replica $1 commit ${got:-?}, primary r$p ${want:-?}"
    return 1
}
logs_clean() {
    local bad
    bad=$(grep -l -E 'runtime error|AddressSanitizer|LeakSanitizer|assertion failed|ADB_ASSERT' \
        "$ALLOCDB_CLUSTER_DIR"/r*/log 2> /dev/null)
    check $([ -z "$bad" ]; echo $?) "no replica log holds a sanitizer report or a failed assertion" \
        "$(for f in $bad; do echo "$f:"; grep -m 3 -E 'runtime error|Sanitizer|assert' "$f"; done)"
}
