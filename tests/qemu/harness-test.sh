#!/usr/bin/env bash
# The harness's verdicts, for ctest: a failing command, a guest kernel crash and a hung guest must
# each fail the run with their own exit status (1, 4, 3), and a passing command must pass (0).
# (The DMAR verdict, 2, has its own test: driver-test.sh --dmar-probe.)
#
# Exit status: 0 pass, 1 fail, 77 skip (no qemu-system-x86_64 or busybox).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
RUN="$HERE/../../scripts/qemu/run-guest.sh"
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v busybox >/dev/null; then
    echo "harness-test: SKIP: qemu-system-x86_64 or busybox missing (scripts/install-deps.sh)"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvl-harness-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
truncate -s 16M "$WORK/disk.img"

failed=0
expect() { # expect STATUS DESCRIPTION run-guest-args...
    local want=$1 what=$2
    shift 2
    "$RUN" --quiet --disk "$WORK/disk.img" --bind none "$@" >"$WORK/out" 2>&1
    local got=$?
    if [ "$got" -eq "$want" ]; then
        echo "harness-test: ok: $what -> exit $got"
    else
        echo "harness-test: FAIL: $what -> exit $got, want $want"
        cat "$WORK/out"
        failed=1
    fi
}

expect 0 "a passing command" --run 'test -e /dev/nvme0n1 || nvl_wait_for /dev/nvme0n1'
expect 1 "a failing command" --run 'true' --run 'false' --run 'echo never'
expect 4 "a guest kernel panic" --run 'echo c >/proc/sysrq-trigger'
expect 3 "a guest that hangs" --timeout 20 --run 'sleep 600'
exit $failed
