#!/usr/bin/env bash
# One QEMU/VFIO run of the driver integration test (nvme_guest_test) for ctest.
#
#   tests/qemu/driver-test.sh --bin NVME_GUEST_TEST --mode iommu|noiommu --config NAME
#   tests/qemu/driver-test.sh --bin NVME_GUEST_TEST --sim --config NAME
#   tests/qemu/driver-test.sh --bin NVME_GUEST_TEST --dmar-probe
#
# Configurations of QEMU's emulated controller (the --expect values the guest checks the
# driver's findings against come from here, not from the driver):
#   512b     default properties: 512 B LBAs, MDTS 7 (512 KiB), 64 I/O queue pairs
#   4k       4 KiB LBAs, MDTS 5 (128 KiB), 8 queue pairs
#   chained  512 B LBAs, MDTS 10 (4 MiB: a PRP list of 1024 entries spans two list pages),
#            4 queue pairs
#
# The host writes a known pattern into a fresh disk image, the guest verifies every read against
# it and writes a second pattern into the scratch region at the end, and the host then checks
# the image file: the guest's writes reached the disk and nothing else changed.
#
# --sim runs the same test program on the host against the software controller (nvl_sim) set
# up like the QEMU configuration, backed by the same kind of image: the same driver tests against
# both controllers.
#
# --dmar-probe boots an IOMMU guest that reads into an unmapped IOVA and passes only when the
# harness reports the DMAR fault (exit 2): it proves a blocked DMA cannot go unnoticed.
#
# Exit status: 0 pass, 1 fail, 77 skip (no qemu-system-x86_64 or static busybox).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=""
MODE=iommu
CONFIG=512b
DMAR=0
SIM=0
IMAGE_MIB=64

while (($#)); do
    case $1 in
    --bin) BIN=$2 && shift ;;
    --mode) MODE=$2 && shift ;;
    --config) CONFIG=$2 && shift ;;
    --dmar-probe) DMAR=1 ;;
    --sim) SIM=1 ;;
    *)
        echo "driver-test: unknown argument '$1'" >&2
        exit 2
        ;;
    esac
    shift
done
[ -x "$BIN" ] || {
    echo "driver-test: --bin must name the nvme_guest_test program" >&2
    exit 2
}
if ((!SIM)) && { ! command -v qemu-system-x86_64 >/dev/null || ! command -v busybox >/dev/null; }; then
    echo "driver-test: SKIP: qemu-system-x86_64 or busybox missing (scripts/install-deps.sh)"
    exit 77
fi

case $CONFIG in
512b)
    PROPS=""
    SIMSPEC="lba=512,mdts=7,queues=64"
    EXPECT=(--expect-lba 512 --expect-mdts $((512 * 1024)) --expect-queues 64)
    ;;
4k)
    PROPS=",logical_block_size=4096,physical_block_size=4096,mdts=5,max_ioqpairs=8,msix_qsize=9"
    SIMSPEC="lba=4096,mdts=5,queues=8"
    EXPECT=(--expect-lba 4096 --expect-mdts $((128 * 1024)) --expect-queues 8)
    ;;
chained)
    PROPS=",mdts=10,max_ioqpairs=4,msix_qsize=5"
    SIMSPEC="lba=512,mdts=10,queues=4"
    EXPECT=(--expect-lba 512 --expect-mdts $((4096 * 1024)) --expect-queues 4)
    ;;
*)
    echo "driver-test: unknown --config '$CONFIG' (512b, 4k, chained)" >&2
    exit 2
    ;;
esac
EXPECT+=(--max-pages 1024 --expect-entries 2048 --expect-serial nvl0 --expect-size $((IMAGE_MIB * 1024 * 1024)))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvl-driver-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$BIN" make-image "$WORK/nvme.img" "$IMAGE_MIB"

if ((SIM)); then
    "$BIN" run "sim:file=$WORK/nvme.img,$SIMSPEC,mqes=2047,sn=nvl0" "${EXPECT[@]}" \
        --expect-model "nvload software controller"
    "$BIN" check-image "$WORK/nvme.img"
    echo "driver-test: PASS: software controller, $CONFIG configuration"
    exit 0
fi

if ((DMAR)); then
    set +e
    "$REPO/scripts/qemu/run-guest.sh" --mode iommu --disk "$WORK/nvme.img" --add "$BIN" \
        --run 'nvme_guest_test dmar-probe $NVL_BDF' --timeout 120
    rc=$?
    set -e
    if [ "$rc" -eq 2 ]; then
        echo "driver-test: PASS: the harness caught the DMA to an unmapped IOVA"
        exit 0
    fi
    echo "driver-test: FAIL: a DMA to an unmapped IOVA went unreported (run-guest exit $rc, want 2)"
    exit 1
fi

GUEST_MODE=type1
[ "$MODE" = noiommu ] && GUEST_MODE=noiommu
"$REPO/scripts/qemu/run-guest.sh" --mode "$MODE" --disk "$WORK/nvme.img$PROPS" --add "$BIN" \
    --append "hugepages=32" --timeout 240 --workdir "$WORK/guest" \
    --trace pci_nvme_mmio_start_success --trace pci_nvme_mmio_shutdown_set \
    --run "nvme_guest_test run \$NVL_BDF --mode $GUEST_MODE ${EXPECT[*]} --expect-model 'QEMU NVMe Ctrl'"

# The controller's own view of the shutdowns: the test brings the controller up and destroys it
# twice at the end, and each destroy must shut it down (CC.SHN) after the bring-up before it.
events=$(grep -oE 'pci_nvme_mmio_(start_success|shutdown_set)' "$WORK/guest/qemu.err" |
    sed 's/pci_nvme_mmio_start_success/start/; s/pci_nvme_mmio_shutdown_set/shutdown/' | tr '\n' ' ')
if [[ $events != *"start shutdown start shutdown " ]]; then
    echo "driver-test: FAIL: QEMU saw enable/shutdown events '$events'; want the test's two" \
        "bring-ups each followed by a shutdown"
    exit 1
fi

"$BIN" check-image "$WORK/nvme.img"
echo "driver-test: PASS: $MODE mode, $CONFIG configuration"
