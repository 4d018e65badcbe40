#!/usr/bin/env bash
# The harness's verdicts, for ctest: a failing command, a guest kernel crash and a hung guest must
# each fail the run with their own exit status (1, 4, 3), and a passing command must pass (0).
# (The DMAR verdict, 2, has its own test: driver-test.sh --dmar-probe.) A program given with --add
# runs in the guest with its shared library from outside the loader's default directories, and
# one whose library the host cannot find is a harness error (5) naming the library.
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

CC=${CC:-cc}
if command -v "$CC" >/dev/null; then
    mkdir -p "$WORK/lib"
    echo 'int nvl_harness_lib(void) { return 42; }' >"$WORK/lib.c"
    printf '%s\n' '#include <stdio.h>' 'int nvl_harness_lib(void);' \
        'int main(void) { printf("lib says %d\n", nvl_harness_lib()); return 0; }' >"$WORK/prog.c"
    "$CC" -shared -fPIC -o "$WORK/lib/libnvlharness.so" "$WORK/lib.c" &&
        "$CC" -o "$WORK/nvl-harness-prog" "$WORK/prog.c" -L"$WORK/lib" -lnvlharness || exit 1
    # Found on the host through LD_LIBRARY_PATH only, like a library in /usr/local/lib is found
    # through the host's ld.so.cache: the guest has neither.
    LD_LIBRARY_PATH=$WORK/lib expect 0 "a program with its library outside the default paths" \
        --add "$WORK/nvl-harness-prog" --run 'nvl-harness-prog | grep -x "lib says 42"'
    expect 5 "a program whose library the host cannot find" \
        --add "$WORK/nvl-harness-prog" --run 'nvl-harness-prog'
    if ! grep -q 'shared libraries not found on this host: libnvlharness.so' "$WORK/out"; then
        echo "harness-test: FAIL: the error does not name the missing library:"
        cat "$WORK/out"
        failed=1
    fi
else
    echo "harness-test: note: no C compiler ($CC), the --add library cases are not run"
fi
exit $failed
