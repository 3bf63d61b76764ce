#!/bin/sh
# tests/bench_smoke.sh — allocdb-bench core end to end (TAP).
#
# The scenarios verify every result themselves; here we check the exit status, the counters
# that follow from the scenario definitions, --json, and usage errors.
bench="${top_builddir:-.}/allocdb-bench"
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }
check() { # check NAME COMMAND...: passes if the command exits 0
    name=$1; shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}

echo "1..9"
out=$("$bench" core --scenario one-resource-many-contenders 2>&1)
status=$?
[ $status -eq 0 ] && ok "hotspot exits 0" || not_ok "hotspot exits 0" "$out"
# R=256 rounds, C=32: 1 create + R winners + R releases succeed, R*(C-1) contenders are busy.
echo "$out" | grep -q "successful=513 busy=7936 cached=0 conflicts=0 table_full=0" &&
    ok "hotspot counters" || not_ok "hotspot counters" "$out"

out=$("$bench" core --scenario high-retry-pressure 2>&1)
# K=128, F=4, A=32: K + 1 fresh ok, K*F cached retries, K*F conflicts, A table-full.
echo "$out" | grep -q "successful=641 busy=0 cached=512 conflicts=512 table_full=32" &&
    ok "retry-pressure counters" || not_ok "retry-pressure counters" "$out"

out=$("$bench" core --scenario uniform --uniform-resources 500 --uniform-commands 20000 \
      --uniform-commands-per-slot 100 2>&1)
status=$?
[ $status -eq 0 ] && echo "$out" | grep -q "expirations=" &&
    ok "uniform runs and expires" || not_ok "uniform runs and expires" "$out"

out=$("$bench" core --scenario all --uniform-resources 1000 --uniform-commands 20000 --json 2>&1)
status=$?
[ $status -eq 0 ] && [ "$(echo "$out" | grep -c '"ok": true')" -eq 3 ] &&
    ok "--json reports three scenarios" || not_ok "--json reports three scenarios" "$out"

"$bench" core --scenario nope >/dev/null 2>&1
[ $? -eq 64 ] && ok "unknown scenario is a usage error" || not_ok "unknown scenario is a usage error"
"$bench" core --hotspot-rounds 0 >/dev/null 2>&1
[ $? -eq 64 ] && ok "out-of-range knob is a usage error" || not_ok "out-of-range knob is a usage error"
"$bench" core --hotspot-rounds 12x >/dev/null 2>&1
[ $? -eq 64 ] && ok "malformed number is a usage error" || not_ok "malformed number is a usage error"
check "--help" "$bench" core --help

[ $fails -eq 0 ]
