#!/bin/sh
# tests/conf_example.sh — the example config etc/allocdb.conf and allocdb.conf(5) against the
# key table allocdbd itself prints (TAP).
#
# The key table in supervisor/config.c is the source of truth; `allocdbd --help` prints it as
#   "  --key-with-dashes   one line of help (default VALUE)".
# For every key there: the example holds it once, as "# key = VALUE" (or set explicitly to that
# same value), and allocdb.conf(5) has an ".It Cm key" entry that says "Default VALUE". In the
# other direction, neither file names a key allocdbd does not know. The example passes
# check-config as shipped and with every commented default uncommented (then it must give
# exactly the defaults), and a bad file fails with FILE:LINE: and status 78.
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$(dirname "$0")/..}
daemon=$top_builddir/allocdbd
example=$top_srcdir/etc/allocdb.conf
page=$top_srcdir/man/allocdb.conf.5

. "$top_srcdir/tests/tap.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/allocdb-conf.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

if ! "$daemon" --help >"$tmp/help" 2>&1; then
    echo "1..1"
    not_ok "allocdbd --help runs ($daemon)" "$(cat "$tmp/help")"
    exit 1
fi
# key<TAB>default, one per key, in table order.
sed -n 's/^  --\([a-z0-9-]*\)  *.* (default \(.*\))$/\1	\2/p' "$tmp/help" |
    awk 'BEGIN { FS = OFS = "\t" } { gsub(/-/, "_", $1); print }' >"$tmp/table"
count=$(wc -l <"$tmp/table")

echo "1..$((count + 8))"

if [ "$count" -ge 20 ]; then ok "allocdbd --help lists the keys ($count)"; else
    not_ok "allocdbd --help lists the keys" "only $count key lines found in: $(cat "$tmp/help")"; fi

# (a) the example as shipped
out=$("$daemon" check-config --config "$example" 2>&1)
rc=$?
if [ $rc -eq 0 ]; then ok "check-config accepts etc/allocdb.conf"; else
    not_ok "check-config accepts etc/allocdb.conf" "exit $rc: $out"; fi

# (b) each key: in the example with its default, and in the page with its default.
# The page's entry for a key runs from its ".It Cm key" line to the next ".It" or list end.
while IFS='	' read -r key def; do
    why=""
    # An empty default: --help says "empty", the example has "# key =", the page "Default empty".
    line="# $key = $def"
    [ "$def" = empty ] && line="# $key ="
    lines=$(grep -c -E "^(# )?$key =( |\$)" "$example")
    if [ "$lines" -ne 1 ]; then
        why="$why
etc/allocdb.conf has $lines lines '# $key = ...' (want 1)"
    elif ! grep -q -x -F -e "$line" -e "${line#\# }" "$example"; then
        why="$why
etc/allocdb.conf: $(grep -E "^(# )?$key =( |\$)" "$example") (want '$line')"
    fi
    entry=$(awk -v k="$key" '
        $1 == ".It" && $2 == "Cm" && $3 == k { on = 1; next }
        on && ($1 == ".It" || $1 == ".El") { exit }
        on { print }' "$page")
    if [ -z "$entry" ]; then
        why="$why
allocdb.conf.5 has no '.It Cm $key' entry"
    elif ! printf '%s\n' "$entry" | grep -q -F -e "Default $def," -e "Default $def."; then
        why="$why
allocdb.conf.5: the $key entry does not say 'Default $def'"
    fi
    if [ -z "$why" ]; then ok "$key: default $def in the example and the page"; else
        not_ok "$key: default $def in the example and the page" "${why#?}"; fi
done <"$tmp/table"

# No stale keys: every key the example or the page names is one allocdbd knows.
cut -f1 "$tmp/table" | sort >"$tmp/known"
sed -n 's/^# \{0,1\}\([a-z0-9_]*\) =\( .*\)\{0,1\}$/\1/p' "$example" | sort -u >"$tmp/in_example"
awk '$1 == ".It" && $2 == "Cm" { print $3 }' "$page" | sort -u >"$tmp/in_page"
stale=$(comm -23 "$tmp/in_example" "$tmp/known")
if [ -z "$stale" ]; then ok "etc/allocdb.conf names no unknown key"; else
    not_ok "etc/allocdb.conf names no unknown key" "unknown: $stale"; fi
stale=$(comm -23 "$tmp/in_page" "$tmp/known")
if [ -z "$stale" ]; then ok "allocdb.conf.5 documents no unknown key"; else
    not_ok "allocdb.conf.5 documents no unknown key" "unknown: $stale"; fi

# Uncommenting every "# key = value" line must give exactly the defaults.
sed 's/^# \([a-z0-9_]* =\( .*\)\{0,1\}\)$/\1/' "$example" >"$tmp/uncommented.conf"
"$daemon" check-config >"$tmp/defaults.out" 2>&1
"$daemon" check-config --config "$tmp/uncommented.conf" >"$tmp/uncommented.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && cmp -s "$tmp/defaults.out" "$tmp/uncommented.out"; then
    ok "the example with every default uncommented gives the defaults"
else
    not_ok "the example with every default uncommented gives the defaults" \
        "exit $rc; diff: $(diff "$tmp/defaults.out" "$tmp/uncommented.out")"
fi

# (c) errors name the file and line, and exit 78 (invalid configuration).
expect_bad() { # expect_bad NAME PATTERN FILE-CONTENT
    printf '%s' "$3" >"$tmp/bad.conf"
    out=$("$daemon" check-config --config "$tmp/bad.conf" 2>&1)
    rc=$?
    if [ $rc -eq 78 ] && printf '%s\n' "$out" | grep -q -F -- "$2"; then ok "$1"; else
        not_ok "$1" "exit $rc (want 78), want '$2' in: $out"; fi
}
expect_bad "an unknown key fails with FILE:LINE:" "$tmp/bad.conf:3: unknown key 'no_such_key'" \
    "# a comment
log_level = info
no_such_key = 1
"
expect_bad "an out-of-range value fails with FILE:LINE:" "$tmp/bad.conf:2: max_batch: 9000 is out of range" \
    "listen = 127.0.0.1:7400
max_batch = 9000
"
out=$("$daemon" check-config --config "$example" --ring-capacity 3000 2>&1)
rc=$?
if [ $rc -eq 78 ] && printf '%s\n' "$out" | grep -q -F -- "--ring-capacity: ring_capacity: 3000 is not a power of two"; then
    ok "a bad flag value fails naming the flag"
else
    not_ok "a bad flag value fails naming the flag" "exit $rc (want 78): $out"
fi

[ $fails -eq 0 ]
