#!/usr/bin/env bash
# tests/systemd_units.sh — the generated systemd units, checked by systemd itself (TAP).
#
# `systemd-analyze verify` needs the unit's ExecStart binary, the units it depends on and the
# pages named in Documentation=, so it runs against a scratch root holding exactly those: the
# built allocdbd at the path the unit names, a copy of the host's own units, and our man pages.
# Any message from verify counts as a failure (it reports unknown keys and bad values on
# stderr but still exits 0). `systemd-analyze security --offline` scores the sandbox; the
# exposure must stay at or below 2.0.
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$(dirname "$0")/..}
units="allocdbd.service allocdbd@.service"

if ! command -v systemd-analyze >/dev/null; then
    echo "1..0 # SKIP systemd-analyze not installed (Debian package systemd)"
    exit 0
fi
if [ ! -d /lib/systemd/system ] && [ ! -d /usr/lib/systemd/system ]; then
    echo "1..0 # SKIP no systemd unit directory on this host to verify against"
    exit 0
fi

echo "1..5"
n=0
check() { # check DESCRIPTION CONDITION-RESULT
    n=$((n + 1))
    if [ "$2" -eq 0 ]; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi
}

root=$(mktemp -d "${TMPDIR:-/tmp}/allocdb-units.XXXXXX")
trap 'rm -rf "$root"' EXIT

# The scratch root: our units where an admin would put them, the host's units beside them.
mkdir -p "$root/etc/systemd/system" "$root/lib/systemd"
cp -a "$(readlink -f /lib/systemd/system 2>/dev/null || echo /usr/lib/systemd/system)" "$root/lib/systemd/system"
ok=0
for u in $units; do
    cp "$top_builddir/systemd/$u" "$root/etc/systemd/system/$u" || ok=1
done
exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$top_builddir/systemd/allocdbd.service")
case $exe in /*) ;; *) ok=1 ;; esac
mkdir -p "$root$(dirname "$exe")" && cp "$top_builddir/allocdbd" "$root$exe" || ok=1
check "units generated with an absolute ExecStart ($exe)" $ok

# man pages for Documentation=man:... (systemd-analyze runs man(1) for each)
for page in "$top_srcdir"/man/*.[1-8]; do
    sec=${page##*.}
    mkdir -p "$root/man/man$sec"
    cp "$page" "$root/man/man$sec/"
done

for u in allocdbd.service allocdbd@test.service; do
    out=$(cd "$root" && MANPATH="$root/man" systemd-analyze verify --root="$root" "$u" 2>&1)
    rc=$?
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/# /'
    [ $rc -eq 0 ] && [ -z "$out" ]
    check "systemd-analyze verify $u prints nothing" $?
done

for u in allocdbd.service allocdbd@test.service; do
    out=$(systemd-analyze security --offline=true --root="$root" --threshold=20 "$u" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -E '^(✗|→)' | sed 's/^/# /'
    [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q 'Overall exposure level'
    check "systemd-analyze security --offline: $u exposure at most 2.0" $?
done
