#!/bin/sh
# tests/sim.sh — the deterministic cluster simulator (allocdb-sim, sim/sim.h), TAP.
#   - its usage: --help documents the options, a bad option is refused;
#   - SIM_SEEDS seeds (default 1000; 25 in a sanitizer build, where a seed costs 25 times as
#     much) with faults and mixed cluster sizes all pass, and 20 clean runs of each size (3);
#   - the seeds kept in sim/seeds.txt pass; SIM_SEEDS / 5 more with the largest pipeline (256,
#     the daemon's pipeline_max allows it); ten seeds (3) give the same digest twice;
#   - those seeds exercised state transfer, the recovery of lost disks and logs cut on nacks
#     (release builds);
#   - each canary (sim/canary-*: a build with one safeguard removed) is caught within
#     SIM_CANARY_SEEDS seeds (default 300; release builds only), and the seed that caught it
#     is printed.
. "${top_srcdir:-.}/tests/tap.sh"
b=${top_builddir:-.}
src=${top_srcdir:-.}
sim=$b/allocdb-sim
echo "1..21"

if "$sim" --help | grep -q -- '--seeds-file' && "$sim" --help | grep -q -- '--determinism'; then
    ok "--help documents the options"
else
    not_ok "--help documents the options"
fi
"$sim" --replicas 4 >/dev/null 2>&1
[ $? -eq 2 ] && ok "a bad option exits 2" || not_ok "a bad option exits 2"

sanitized=no
case "${SAN_CFLAGS:-}" in *sanitize*) sanitized=yes ;; esac
seeds=${SIM_SEEDS:-1000}
clean=20
twice=10
if [ "$sanitized" = yes ]; then
    seeds=${SIM_SEEDS:-25}
    clean=3
    twice=3
fi

# run NAME ARGS...: one check; the summary goes out as TAP comments.
run() {
    name=$1
    shift
    out=$("$sim" --quiet "$@" 2>&1)
    rc=$?
    last=$out
    if [ $rc -eq 0 ]; then ok "$name"; else not_ok "$name" "$(printf '%s\n' "$out" | grep -E 'FAIL|replay|assert' | head -20)"; fi
    printf '%s\n' "$out" | grep -vE '^(FAIL|  replay)' | sed 's/^/# /'
}

run "$seeds seeds with faults, 1, 3 and 5 replicas" --seed 1 --count "$seeds"
# A simulator that never gets there tests nothing there: the mix must reach both.
for what in "state transfers" "recoveries" "logs cut on nacks"; do
    seen=$(printf '%s\n' "$last" | sed -n "s/.*$what \([0-9]*\).*/\1/p" | head -1)
    if [ "$sanitized" = yes ]; then
        ok "the seeds saw $what # SKIP release builds only (too few seeds)"
    elif [ "${seen:-0}" -gt 0 ]; then
        ok "the seeds saw $what ($seen)"
    else
        not_ok "the seeds saw $what" "none in $seeds seeds"
    fi
done
for r in 1 3 5; do
    run "$clean clean runs of $r replicas" --seed 100000 --count "$clean" --replicas "$r" --no-faults
done
run "the kept seeds (sim/seeds.txt)" --seeds-file "$src/sim/seeds.txt"
# The daemon's pipeline goes up to 256 entries (pipeline_max), so a view change carries as many
# headers: the seeds run again with the largest.
run "$((seeds / 5)) seeds with the largest pipeline (256)" --seed 700000 --count "$((seeds / 5))" --pipeline 256
run "$twice seeds run twice give the same digest" --seed 5000 --count "$twice" --determinism

canary_seeds=${SIM_CANARY_SEEDS:-300}
for c in quorum durable-vote log-view truncate read-index dedupe never-early recover nack; do
    if [ "$sanitized" = yes ]; then
        ok "canary $c # SKIP release builds only"
        continue
    fi
    out=$("$b/sim/canary-$c" --quiet --stop --seed 1 --count "$canary_seeds" 2>&1)
    caught=$(printf '%s\n' "$out" | grep -m1 '^FAIL seed' || true)
    if [ -n "$caught" ]; then
        ok "canary $c is caught"
        echo "# canary $c: $caught"
    else
        not_ok "canary $c is caught" "it survived $canary_seeds seeds: the simulator is blind there"
    fi
done
[ "$fails" -eq 0 ]
