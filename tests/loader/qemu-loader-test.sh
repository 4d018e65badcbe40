#!/usr/bin/env bash
# The cpu-nvme loader path inside a QEMU guest, against QEMU's emulated NVMe controller through
# VFIO (scripts/qemu/run-guest.sh), for ctest.
#
#   tests/loader/qemu-loader-test.sh --bin TEST_LAYER_LOADER --mode iommu|noiommu [--mib N]
#
# The host writes a random image (test_layer_loader --file, which also checks the file backend on
# it); QEMU serves it as the namespace, and a copy goes into the guest as the reference. In the
# guest, test_layer_loader runs its three tests through the cpu-nvme backend on the controller
# bound to vfio-pci and compares every byte with pread() of the copy.
#
# Exit status: 0 pass, 1 fail, 77 skip (no qemu-system-x86_64 or static busybox).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=""
MODE=iommu
MIB=8

while (($#)); do
    case $1 in
    --bin) BIN=$2 && shift ;;
    --mode) MODE=$2 && shift ;;
    --mib) MIB=$2 && shift ;;
    *)
        echo "qemu-loader-test: unknown argument '$1'" >&2
        exit 2
        ;;
    esac
    shift
done
[ -x "$BIN" ] || {
    echo "qemu-loader-test: --bin must name the test_layer_loader program" >&2
    exit 2
}
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v busybox >/dev/null; then
    echo "qemu-loader-test: SKIP: qemu-system-x86_64 or busybox missing (scripts/install-deps.sh)"
    exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvl-loader-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The image holds the layer plus 8 MiB of slack (test_layer_loader's layout).
"$BIN" --backend file --file "$WORK/nvme.img" "$MIB" >"$WORK/host.log" 2>&1 || {
    cat "$WORK/host.log"
    echo "qemu-loader-test: FAIL: host-side image preparation"
    exit 1
}
cp "$WORK/nvme.img" "$WORK/ref.img"

"$REPO/scripts/qemu/run-guest.sh" --mode "$MODE" --disk "$WORK/nvme.img" \
    --add "$BIN" --add "$WORK/ref.img:/nvl/ref.img" --mem 768 --append "hugepages=64" \
    --timeout 300 \
    --run "test_layer_loader --backend cpu-nvme --queues 4 --qsize 64 --depth 32 --ref /nvl/ref.img \$NVL_BDF $MIB"

# The guest only read: the image must be unchanged.
cmp -s "$WORK/nvme.img" "$WORK/ref.img" || {
    echo "qemu-loader-test: FAIL: the image changed under a read-only test"
    exit 1
}
echo "qemu-loader-test: PASS: cpu-nvme loader in the $MODE guest"
