#!/bin/sh
# tests/cli_usage.sh — the allocdb CLI without a server (TAP): usage errors exit 64 with a clear
# message, --help exits 0 for the program and every command, bad ids and durations are refused
# before anything is sent, a server that cannot be reached exits 69, and --print-id (reserve
# only, not with --json) prints nothing on standard output unless a reservation was made.
cli="${top_builddir:-.}/allocdb"
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }
expect() { # expect NAME STATUS PATTERN COMMAND...: exit status and output matching PATTERN
    name=$1 want=$2 pattern=$3; shift 3
    out=$("$@" 2>&1)
    got=$?
    if [ "$got" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pattern"; then ok "$name"; else
        not_ok "$name" "exit $got (want $want): $out"; fi
}

# Nothing listens on port 1 of the loopback (privileged, never used by the test suite).
dead=127.0.0.1:1
unset ALLOCDB_ADDR
commands="create-resource reserve confirm release get-resource get-reservation tick metrics status"
echo "1..59"

expect "--help exits 0" 0 "Usage: allocdb \[OPTIONS\] COMMAND" "$cli" --help
expect "-h exits 0" 0 "Exit status:" "$cli" -h
expect "help exits 0" 0 "create-resource ID" "$cli" help
expect "--version" 0 "^allocdb [0-9]" "$cli" --version
for c in $commands; do
    expect "$c --help exits 0" 0 "Usage: allocdb \[OPTIONS\] $c" "$cli" "$c" --help
done
expect "help reserve" 0 "\-\-ttl DUR" "$cli" help reserve
expect "--help before the command" 0 "Usage: allocdb \[OPTIONS\] get-resource" "$cli" --help get-resource
expect "--help ignores bad values" 0 "Usage: allocdb \[OPTIONS\] reserve" "$cli" reserve x y --ttl nope --help

expect "no command" 64 "no command given" "$cli"
expect "unknown command" 64 "unknown command 'frobnicate'" "$cli" frobnicate
expect "unknown option" 64 "unknown option '--frob'" "$cli" --frob status
expect "unknown short option" 64 "unknown option '-x'" "$cli" -x status
expect "option without its value" 64 "needs a value" "$cli" status --timeout
expect "flag with a value" 64 "takes no value" "$cli" --json=yes status
expect "help for an unknown command" 64 "unknown command" "$cli" help frobnicate
expect "too few arguments" 64 "confirm takes 2 arguments" "$cli" confirm 1
expect "too many arguments" 64 "create-resource takes 1 argument" "$cli" create-resource 1 2
expect "arguments to tick" 64 "tick takes 0 arguments" "$cli" tick 1
expect "reserve without --ttl" 64 "needs --ttl" "$cli" reserve 1 2
expect "--ttl on confirm" 64 "\-\-ttl is an option of reserve only" "$cli" confirm 1 2 --ttl 5s
expect "--min-lsn on a write" 64 "\-\-min-lsn is an option of get-resource" "$cli" create-resource 1 --min-lsn 3
expect "--op-id on a read" 64 "\-\-op-id applies to writes only" "$cli" get-resource 1 --op-id 5
expect "--op-id 0" 64 "never 0" "$cli" --op-id 0 create-resource 1
expect "--print-id on confirm" 64 "\-\-print-id is an option of reserve only" "$cli" confirm 1 2 --print-id
expect "--print-id with --json" 64 "\-\-print-id and \-\-json exclude each other" "$cli" --json reserve 1 2 --ttl 1s --print-id
expect "--print-id takes no value" 64 "option \-\-print-id takes no value" "$cli" reserve 1 2 --ttl 1s --print-id=yes
expect "help reserve: --print-id" 0 "rid=\$(allocdb reserve 7 1001 --ttl 30s --print-id)" "$cli" help reserve
expect "help status: text, --json for the object" 0 "With --json, the server's status" "$cli" status --help
expect "--help: status is not said to print JSON" 0 "status  *print the server's status\$" "$cli" --help

expect "id: junk" 64 "ID: 'abc' is not an id" "$cli" create-resource abc
expect "id: empty" 64 "is not an id" "$cli" create-resource ""
expect "id: bare 0x" 64 "'0x' is not an id" "$cli" create-resource 0x
expect "id: overflow (2^128)" 64 "is not an id" "$cli" create-resource 340282366920938463463374607431768211456
expect "id: hex overflow" 64 "is not an id" "$cli" get-reservation 0x100000000000000000000000000000000
expect "id: trailing junk" 64 "HOLDER: '2z' is not an id" "$cli" reserve 1 2z --ttl 1s
expect "id: negative" 64 "unknown option '-1'" "$cli" create-resource -1
expect "--op-id junk" 64 "\-\-op-id: 'x1' is not an id" "$cli" --op-id x1 create-resource 1
expect "--min-lsn overflow" 64 "not an unsigned 64-bit integer" "$cli" get-resource 1 --min-lsn 18446744073709551616
expect "duration without a unit" 64 "needs a unit" "$cli" reserve 1 2 --ttl 30
expect "duration with an unknown unit" 64 "unknown unit 'd'" "$cli" reserve 1 2 --ttl 3d
expect "duration zero" 64 "more than zero" "$cli" reserve 1 2 --ttl 0s
expect "duration overflow" 64 "out of range" "$cli" reserve 1 2 --ttl 99999999999999999999h
expect "duration junk" 64 "is not a duration" "$cli" --timeout soon status
expect "--timeout too long" 64 "out of range" "$cli" --timeout 100000h status
expect "bad --addr" 64 "bad address 'nowhere'" "$cli" --addr nowhere status

expect "no server: a write exits 69" 69 "no server reachable at $dead" \
    "$cli" --addr "$dead" --timeout 300ms create-resource 1
expect "no server: a read exits 69" 69 "no server reachable" \
    "$cli" --addr "$dead" --timeout 200ms get-resource 1
expect "no server: --json says unreachable" 69 '"error":"unreachable"' \
    "$cli" --addr "$dead" --timeout 200ms --json status
expect "no server: --print-id leaves standard output empty" 69 "stdout empty" \
    sh -c 'out=$("$0" --addr "$1" --timeout 200ms reserve 1 2 --ttl 1s --print-id 2>/dev/null); st=$?
           [ -z "$out" ] && echo "stdout empty"; exit $st' "$cli" "$dead"
expect "no server: a retry names its operation" 69 "operation 77 was not sent" \
    "$cli" --addr "$dead" --timeout 200ms --op-id 77 release 1 2
expect "no server: ALLOCDB_ADDR is used" 69 "no server reachable at $dead" \
    env ALLOCDB_ADDR="$dead" "$cli" --timeout 200ms tick

[ $fails -eq 0 ]
