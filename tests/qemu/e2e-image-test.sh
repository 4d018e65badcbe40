#!/usr/bin/env bash
# End to end on QEMU's emulated NVMe, for ctest: nvload-setup BDF, nvload-setup write of
# stories260K and of SmolLM2 (Q4_1) onto the raw drives, then nvinfer --nvme BDF --temp 0 in the
# guest, every weight read through nvload's VFIO driver (cpu-nvme). Its output must be identical
# to nvinfer -m FILE on the host. A third drive holds a stories260K image the host wrote (through
# the sim, the same write path) and then corrupted one block of, on the image file: --verify must
# name the layer. See e2e-image-guest.sh for the guest's steps.
#
#   tests/qemu/e2e-image-test.sh --setup NVLOAD_SETUP --nvinfer NVINFER --lba 512|4096
#
# The guest boots with `noxsave`, so its kernel leaves AVX off and the CPU kernels take their
# generic path: QEMU's TCG emulates AVX2 several hundred times slower than the host runs it, the
# generic code about fifty times, which keeps SmolLM2 at about 2 s per token. The host keeps
# whichever kernels its CPU has (AVX2 on x86-64 hosts): the generic and AVX2 kernels compute the
# same float operations in the same order (test_llama_kernels_match), so the guest's output must
# still match the host's token for token.
#
# Exit status: 0 pass, 1 fail, 77 skip (no qemu-system-x86_64, busybox or SmolLM2 file).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SETUP=""
NVINFER=""
LBA=512
while (($#)); do
    case $1 in
    --setup) SETUP=$2 && shift ;;
    --nvinfer) NVINFER=$2 && shift ;;
    --lba) LBA=$2 && shift ;;
    *)
        echo "e2e-image-test: unknown argument '$1'" >&2
        exit 2
        ;;
    esac
    shift
done
[ -x "$SETUP" ] && [ -x "$NVINFER" ] || {
    echo "e2e-image-test: --setup and --nvinfer must name nvload-setup and nvinfer" >&2
    exit 2
}
case $LBA in
512) PROPS="" ;;
4096) PROPS=",logical_block_size=4096,physical_block_size=4096" ;;
*)
    echo "e2e-image-test: --lba must be 512 or 4096" >&2
    exit 2
    ;;
esac
STORIES=${NVL_SHARED:-$REPO/../shared}/models/stories260K.gguf
SMOL=$REPO/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v busybox >/dev/null; then
    echo "e2e-image-test: SKIP: qemu-system-x86_64 or busybox missing (scripts/install-deps.sh)"
    exit 77
fi
for f in "$STORIES" "$SMOL"; do
    [ -f "$f" ] || {
        echo "e2e-image-test: SKIP: $f is missing (scripts/fetch-model.sh)"
        exit 77
    }
done

PROMPT0="Once upon a time"
N0=24
PROMPT1="The capital of France"
N1=8
LAYER=3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvl-e2e-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() {
    echo "e2e-image-test: FAIL: $*"
    exit 1
}

echo "== host: reference outputs from the files"
"$NVINFER" -m "$STORIES" --temp 0 -p "$PROMPT0" -n "$N0" >"$WORK/ref0"
"$NVINFER" -m "$SMOL" --temp 0 -p "$PROMPT1" -n "$N1" >"$WORK/ref1"
cat "$WORK/ref0" && echo && cat "$WORK/ref1" && echo

echo "== host: a stories260K image through the sim, then one block of layer $LAYER corrupted"
truncate -s 16M "$WORK/d0.img" "$WORK/d2.img"
truncate -s 128M "$WORK/d1.img"
"$SETUP" write --yes --sim "file=$WORK/d2.img,lba=$LBA" "$STORIES"
# The extent table (docs/disk-layout.md) read independently of the C code: 32-byte entries at
# table_offset; flip every bit of the block in the middle of the layer's extent.
python3 - "$WORK/d2.img" "$LAYER" "$LBA" <<'PYEOF'
import struct, sys
path, layer, lba = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "r+b") as f:
    h = f.read(4096)
    assert h[:8] == b"NVLOADIM", h[:8]
    gguf_off, = struct.unpack_from("<Q", h, 24)
    table_off, n_ext = struct.unpack_from("<QI", h, 40)
    f.seek(table_off)
    table = f.read(32 * n_ext)
    for i in range(n_ext):
        off, size, crc, kind, lay, _ = struct.unpack_from("<QQIIII", table, 32 * i)
        if kind == 3 and lay == layer:
            break
    else:
        sys.exit("layer %d not in the table" % layer)
    block = (gguf_off + off + size // 2) // lba * lba
    f.seek(block)
    data = bytes(b ^ 0xFF for b in f.read(lba))
    f.seek(block)
    f.write(data)
    print("corrupted the %d-byte block at drive byte %d (layer %d: bytes %d..%d)"
          % (lba, block, layer, gguf_off + off, gguf_off + off + size))
PYEOF

echo "== guest"
"$REPO/scripts/qemu/run-guest.sh" --mode iommu --bind none --mem 1024 --smp 2 --append noxsave \
    --disk "$WORK/d0.img$PROPS" --disk "$WORK/d1.img$PROPS" --disk "$WORK/d2.img$PROPS" \
    --add "$SETUP" --add "$NVINFER" --add "$STORIES:/nvl/stories.gguf" \
    --add "$SMOL:/nvl/smol.gguf" --timeout 400 --workdir "$WORK/guest" \
    --run "export E2E_PROMPT0='$PROMPT0' E2E_N0=$N0 E2E_PROMPT1='$PROMPT1' E2E_N1=$N1 E2E_LAYER=$LAYER" \
    --script "$HERE/e2e-image-guest.sh"

echo "== guest outputs against the host's"
for pair in stories:ref0 smollm2:ref1; do
    name=${pair%%:*}
    want=$(sha256sum <"$WORK/${pair#*:}" | cut -d' ' -f1)
    got=$(tr -d '\r' <"$WORK/guest/guest.log" | sed -n "s/^e2e-sha256 $name //p")
    [ -n "$got" ] || fail "the guest printed no output for $name"
    [ "$got" = "$want" ] || fail "$name: the guest's output differs from the host's (see above)"
    echo "$name: identical ($want)"
done

echo "== host: the image the guest wrote through VFIO, read by the sim"
"$NVINFER" --sim "file=$WORK/d1.img,lba=$LBA" --verify -m "$SMOL" --temp 0 -p "$PROMPT1" \
    -n "$N1" >"$WORK/host1"
cmp "$WORK/host1" "$WORK/ref1" || fail "the guest-written image runs differently on the host"
echo "e2e-image-test: PASS: $LBA-byte blocks"
