# tests/tap.sh — TAP helpers for the shell tests (sourced, not run).
#   ok DESCRIPTION            prints "ok N - DESCRIPTION"
#   not_ok DESCRIPTION [WHY]  prints "not ok N - DESCRIPTION" and WHY as # comments
# $n counts checks, $fails the failures; a script ends with [ "$fails" -eq 0 ].
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }
