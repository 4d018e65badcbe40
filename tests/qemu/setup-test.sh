#!/usr/bin/env bash
# nvload-setup inside the QEMU guest, for ctest: refusals (bad BDF, non-NVMe device, missing
# vfio-pci, mounted and swap drives, unknown user), bind with --user, the driver test through
# the result, --restore refused while the group is open, then the kernel's /dev/nvmeXn1 back
# with the data the driver wrote. See setup-guest.sh for the steps.
#
#   tests/qemu/setup-test.sh --setup NVLOAD_SETUP --bin NVME_GUEST_TEST --mode iommu|noiommu
#
# Exit status: 0 pass, 1 fail, 77 skip (no qemu-system-x86_64 or busybox).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SETUP=""
BIN=""
MODE=iommu
while (($#)); do
    case $1 in
    --setup) SETUP=$2 && shift ;;
    --bin) BIN=$2 && shift ;;
    --mode) MODE=$2 && shift ;;
    *)
        echo "setup-test: unknown argument '$1'" >&2
        exit 2
        ;;
    esac
    shift
done
[ -x "$SETUP" ] && [ -x "$BIN" ] || {
    echo "setup-test: --setup and --bin must name nvload-setup and nvme_guest_test" >&2
    exit 2
}
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v busybox >/dev/null; then
    echo "setup-test: SKIP: qemu-system-x86_64 or busybox missing (scripts/install-deps.sh)"
    exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvl-setup-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$BIN" make-image "$WORK/nvme.img" 64
truncate -s 32M "$WORK/spare.img"

GUEST_MODE=type1
[ "$MODE" = noiommu ] && GUEST_MODE=noiommu
ARGS="--mode $GUEST_MODE --max-pages 1024 --expect-lba 512 --expect-queues 64 --expect-serial nvl0"
"$REPO/scripts/qemu/run-guest.sh" --mode "$MODE" --bind none \
    --disk "$WORK/nvme.img" --disk "$WORK/spare.img" --add "$SETUP" --add "$BIN" \
    --append "hugepages=32" --timeout 240 \
    --run "export NVL_TEST_ARGS='$ARGS'" --script "$HERE/setup-guest.sh"
"$BIN" check-image "$WORK/nvme.img"
echo "setup-test: PASS: $MODE mode"
