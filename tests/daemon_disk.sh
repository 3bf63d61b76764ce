#!/bin/bash
# tests/daemon_disk.sh — a full disk is an operating condition, not corruption (TAP).
#
# The data directory lives on a 24 MiB tmpfs mounted in a private mount namespace (nothing
# outside this test sees it; it goes when the test ends). With the disk filled:
#   - writes that need the log to grow are refused with the definite no_space (nothing logged),
#     reads are still served, /health answers 503 saying so and allocdb_no_space is 2;
#   - when space returns, writes flow again without a restart;
#   - the node stops and starts again on a full disk (it used to exit 5 and stay down);
#   - every acknowledged write is there at the end.
# Skips (exit 77) without root or unshare.
set -u
if [ "${1:-}" != --inside ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v unshare > /dev/null; then
        echo "1..0 # SKIP needs root and unshare for a private tmpfs"
        exit 77
    fi
    exec unshare -m --propagation private bash "$0" --inside
fi
. "$(dirname "$0")/daemon_lib.sh"
unmount_fs() { umount "$tmp/fs" 2>/dev/null; }
on_exit=unmount_fs
mkdir "$tmp/fs"
if ! mount -t tmpfs -o size=24m,mode=0700 tmpfs "$tmp/fs"; then
    echo "1..0 # SKIP cannot mount a tmpfs in a private namespace"
    exit 77
fi
d="$tmp/fs/d"
pinned=(--resource-capacity 1024 --reservation-capacity 1024 --operation-capacity 262144 --wal-segment-bytes 1M)
opts=("${pinned[@]}" --checkpoint-min-entries 1000000000)
start_daemon() { daemon_start "$d" "${opts[@]}"; }
fill() { dd if=/dev/zero of="$tmp/fs/filler$1" bs=64k 2>/dev/null; sync; }
# write_until_refused: loads until a write is refused with no_space (the active segment full);
# sets out to the refusing client's output
write_until_refused() {
    for _ in $(seq 1 20); do
        "$bench" net --addr "$addr" --workload uniform --connections 2 --pipeline 4 --batch 64 --resources 64 \
            --commands 20000 --json > "$tmp/bench.json" 2>/dev/null
        out=$("$cli" --addr "$addr" create-resource 4 2>&1)
        printf '%s\n' "$out" | grep -q 'no_space' && return 0
    done
    return 1
}

echo "1..9"
out=$("$allocdbd" format --data-dir "$tmp/fs/big" --wal-segment-bytes 16M 2>&1)
st=$?
[ $st -eq 71 ] && printf '%s\n' "$out" | grep -q 'MiB free, but the first WAL segment and its spare' &&
    ok "format refuses segments that cannot fit (16 MiB twice on 24 MiB), saying how much is free" ||
    not_ok "format checks the space" "exit $st: $out"
rm -rf "$tmp/fs/big"
"$allocdbd" format --data-dir "$d" "${pinned[@]}" > /dev/null
start_daemon
[ $? -eq 0 ] && ok "allocdbd starts on a 24 MiB disk" || not_ok "start" "$(tail -5 "$log")"
for r in 1 2 3; do "$cli" --addr "$addr" create-resource $r > /dev/null; done

fill 1
write_until_refused
refused=$?
[ $refused -eq 0 ] &&
    ok "disk full, the segment full: writes refused with the definite no_space" ||
    not_ok "writes refused with no_space" "bench: $(tr -d '\n ' < "$tmp/bench.json" | grep -o '"rejected":{[^}]*}'); cli: $out; $(grep -E 'no_space|space_returned|storage' "$log" | tail -4)"
r=$("$cli" --addr "$addr" get-resource 1 2>&1)
h=$(http_get /health)
m=$(http_get /metrics | grep '^allocdb_no_space ')
printf '%s\n' "$r" | grep -q found && printf '%s\n' "$h" | head -1 | grep -q ' 503 ' &&
    printf '%s\n' "$h" | grep -q 'no space' && [ "${m##* }" = 2 ] &&
    ok "reads served; /health 503 says no space; allocdb_no_space 2" || not_ok "reads, health, metric" "$r; $h; $m"

rm -f "$tmp/fs"/filler*
back=no
for _ in $(seq 1 100); do
    out=$("$cli" --addr "$addr" create-resource 5 2>&1) && { back=yes; break; }
    sleep 0.1
done
[ $back = yes ] && http_get /health | head -1 | grep -q ' 200 ' &&
    ok "space returned: writes flow again, /health 200, no restart" || not_ok "writes resume" "$out; $(tail -3 "$log")"

# Stop and start again on a full disk.
fill 2
daemon_stop
st=$?
[ $st -eq 0 ] && ok "SIGTERM on a full disk: exit 0" || not_ok "stop on a full disk" "exit $st; $(tail -3 "$log")"
start_daemon
st=$?
[ $st -eq 0 ] && "$cli" --addr "$addr" get-resource 5 > /dev/null &&
    ok "starts again on the full disk and serves reads" || not_ok "start on a full disk" "$(tail -6 "$log")"
rm -f "$tmp/fs"/filler*
ok_all=yes
for r in 1 2 3 5; do "$cli" --addr "$addr" --timeout 5s get-resource $r > /dev/null 2>&1 || ok_all="no ($r)"; done
for _ in $(seq 1 50); do # growth is tried again within a second of space returning
    out=$("$cli" --addr "$addr" --timeout 5s create-resource 6 2>&1) && break
    sleep 0.1
done
[ "$ok_all" = yes ] && printf '%s\n' "$out" | grep -q 'committed: ok' &&
    ok "every acknowledged create is there; new writes commit" || not_ok "after the full disk" "$ok_all; $out"
daemon_stop
st=$?
[ $st -eq 0 ] && ok "SIGTERM: exit 0" || not_ok "SIGTERM: exit 0" "exit $st"
[ "$fails" -eq 0 ]
