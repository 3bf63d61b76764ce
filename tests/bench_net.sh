#!/bin/bash
# tests/bench_net.sh — allocdb-bench net against a real allocdbd: the sustained-run report and
# --verify-retries (TAP).
#
#   - the status document's "memory" object and /metrics' allocdb_process_resident_bytes give
#     each process's resident memory;
#   - a paced uniform run longer than a 3 s dedupe window + 2 s with --verify-retries 200 exits
#     0; resends inside the window came back exact, resends of the first second's commands are
#     new again, and changed commands with a sampled id got operation_conflict;
#   - the progress lines split each second into useful, full, rejected and indefinite, and the
#     summary adds the useful rate against the first 5 s, the *_full counts and the retention
#     line; --json carries the same.
# No speed is asserted: the run is paced, and the tables are small, for a debug build (which
# checks every invariant of the whole state after every apply) under the sanitizers.
set -u
. "$(dirname "$0")/daemon_lib.sh"
windows=(--dedupe-window-ms 3s --history-window-ms 3s --resource-capacity 4096 --reservation-capacity 16384
         --operation-capacity 65536)

echo "1..7"
"$allocdbd" format --data-dir "$tmp/d" "${windows[@]}" > /dev/null
daemon_start "$tmp/d" "${windows[@]}"
[ $? -eq 0 ] && ok "allocdbd starts with a 3 s dedupe window" || not_ok "allocdbd starts" "$(tail -5 "$log")"

st=$("$cli" --addr "$addr" --json status 2>&1)
m=$(http_get /metrics | grep '^allocdb_process_resident_bytes')
roles_ok=yes
for r in supervisor sequencer applier ingress; do
    printf '%s\n' "$st" | grep -q "\"$r\":{\"rss_bytes\":[1-9][0-9]*}" || roles_ok="no ($r in status)"
    printf '%s\n' "$m" | grep -q "^allocdb_process_resident_bytes{role=\"$r\"} [1-9][0-9]*$" || roles_ok="no ($r in /metrics)"
done
[ "$roles_ok" = yes ] && ok "status memory.ROLE.rss_bytes and allocdb_process_resident_bytes{role} for every process" ||
    not_ok "resident memory reported: $roles_ok" "$st
$m"

# 8 s at 2000 commands/s: the first second's commands are ~7 s old at the resend (> 3 s + 2 s),
# the last second's are < 1 s old (< 3 s - 2 s).
"$bench" net --addr "$addr" --workload uniform --connections 4 --pipeline 2 --batch 16 --resources 1000 \
    --rate 2000 --duration 8s --verify-retries 200 > "$tmp/out" 2> "$tmp/err"
rc=$?
out=$(cat "$tmp/out")
[ $rc -eq 0 ] && ok "--verify-retries 200 over 8 s: exit 0" || not_ok "--verify-retries: exit 0" "exit $rc: $(cat "$tmp/err" "$tmp/out")"

line=$(printf '%s\n' "$out" | grep '^  retries ')
exact=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9]*\) exact,.*/\1/p')
aged=$(printf '%s\n' "$line" | sed -n 's/.* \([0-9]*\) aged out (new again),.*/\1/p')
mism=$(printf '%s\n' "$line" | sed -n 's/.* \([0-9]*\) mismatches.*/\1/p')
[ "${exact:-0}" -gt 0 ] && [ "${aged:-0}" -gt 0 ] && [ "${mism:-x}" = 0 ] &&
    ok "resends: $exact exact, $aged aged out (new again), no mismatch" || not_ok "resends judged" "$out"

line=$(printf '%s\n' "$out" | grep '^  conflicts ')
conf=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9]*\) operation_conflict,.*/\1/p')
cmism=$(printf '%s\n' "$line" | sed -n 's/.* \([0-9]*\) mismatches.*/\1/p')
[ "${conf:-0}" -gt 0 ] && [ "${cmism:-x}" = 0 ] && ok "changed commands with a sampled id: $conf operation_conflict" ||
    not_ok "conflicts" "$out"

prog=$(grep -c 'cmd/s  useful [0-9]*/s  full [0-9]*/s  rejected [0-9]*/s  indefinite [0-9]*/s  p99 ' "$tmp/err")
printf '%s\n' "$out" | grep -q '^allocdb-bench net: uniform (steady: every reservation is released) against ' &&
    printf '%s\n' "$out" | grep -Eq '^  useful/s    [0-9]+ over the run, [0-9]+ in the first 5 s: [0-9.]+% sustained$' &&
    printf '%s\n' "$out" | grep -q '^  full        operation_table_full=0 reservation_table_full=0 resource_table_full=0 expiration_index_full=0$' &&
    printf '%s\n' "$out" | tail -1 | grep -Eq '^  retention   dedupe window 3000 ms, .*operation capacity [0-9]+ \(sustains [0-9]+ ops/s\), reservation capacity [0-9]+; rss supervisor [0-9.]+ MiB, sequencer [0-9.]+ MiB, applier [0-9.]+ MiB, ingress [0-9.]+ MiB$' &&
    [ "$prog" -ge 5 ] && ok "progress lines ($prog) and summary: useful/full/rejected/indefinite, first 5 s, retention" ||
    not_ok "report lines" "$prog progress lines; $out"

j=$("$bench" net --addr "$addr" --workload uniform --connections 2 --pipeline 2 --batch 16 --resources 1000 \
    --rate 1000 --duration 2s --verify-retries 20 --json 2>/dev/null)
rc=$?
missing=
for k in '"steady": true' '"useful":' '"useful_per_s":' '"useful_first_5s_per_s":' '"useful_sustained_percent":' \
    '"operation_table_full": 0' '"seconds":' '"history_window_ms":' '"reservation_capacity":' \
    '"operation_table_sustains_per_s":' '"rss_bytes":' '"verify_retries":' '"exact":' '"aged_out_new_again":' \
    '"conflicts":'; do
    printf '%s\n' "$j" | grep -q "$k" || missing="$missing $k"
done
[ $rc -eq 0 ] && [ -z "$missing" ] && ok "--json carries the new fields" || not_ok "--json fields" "exit $rc, missing:$missing"
daemon_stop
[ "$fails" -eq 0 ]
