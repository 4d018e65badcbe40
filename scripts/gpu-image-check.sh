#!/usr/bin/env bash
# Issue 6, section 5, on the accelerator machine: a model image written by `nvload-setup write
# --sim`, served by the software controller, run through the GPU engine (gpu-nvme) with --verify,
# gives the same greedy text as the GGUF file run on the GPU; and a corrupted block of a layer is
# named by --verify, which checks each extent's CRC32C on the GPU (nvl_disk_image_verify,
# model/kernels/crc32c.cu).
#
#   scripts/gpu-image-check.sh NVINFER NVLOAD_SETUP MODEL.gguf [PROMPT [N]]
#
# NVL_IMAGE_DEVICE=cpu runs the same checks on the CPU backend (a machine without a GPU; the CRCs
# are then checked on the CPU). Exits 0 when every check passes, 1 otherwise; prints one line per
# check.
set -u
NVINFER=$1
SETUP=$2
MODEL=$3
PROMPT=${4:-Once upon a time}
N=${5:-32}
DEVICE=${NVL_IMAGE_DEVICE:-gpu}
TMP=$(mktemp -d /var/tmp/nvl-image.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILED=0
pass() { echo "PASS $*"; }
fail() {
    echo "FAIL $*"
    FAILED=1
}
u64() { od -An -tu8 -j "$2" -N8 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
flip_byte() { # FILE OFFSET: inverts one byte in place
    local v
    v=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((v ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
name=$(basename "$MODEL" .gguf)
run() { "$NVINFER" --device "$DEVICE" --temp 0 -p "$PROMPT" -n "$N" "$@"; }
backend=()
[ "$DEVICE" = gpu ] && backend=(--backend gpu-nvme)

# The reference: the file on the same device.
if ! run -m "$MODEL" >"$TMP/file.out" 2>"$TMP/file.err"; then
    fail "$name: nvinfer -m FILE --device $DEVICE: $(tail -1 "$TMP/file.err")"
    exit 1
fi
img=$TMP/drive.img
truncate -s $(($(stat -c %s "$MODEL") + (4 << 20))) "$img"
if ! "$SETUP" write --yes --sim "file=$img" "$MODEL" >"$TMP/w" 2>&1; then
    fail "$name: nvload-setup write --sim: $(tail -1 "$TMP/w")"
    exit 1
fi
echo "$name: $(tail -1 "$TMP/w")"

run --sim "$img" "${backend[@]}" --verify -v >"$TMP/img.out" 2>"$TMP/img.err"
rc=$?
grep -E "^nvinfer: (verify|loader|placement|data path)" "$TMP/img.err" | sed 's/^/    /'
if [ $rc != 0 ]; then
    fail "$name: nvinfer --sim IMAGE --device $DEVICE ${backend[*]} --verify: $(tail -1 "$TMP/img.err")"
elif cmp -s "$TMP/file.out" "$TMP/img.out"; then
    pass "$name: --sim IMAGE ${backend[*]} --verify output identical to -m FILE ($(wc -c <"$TMP/file.out") bytes, $DEVICE)"
else
    fail "$name: --sim IMAGE output differs: '$(head -c 200 "$TMP/img.out")' vs '$(head -c 200 "$TMP/file.out")'"
fi
if [ "$DEVICE" = gpu ]; then
    if grep -q "checked on the GPU" "$TMP/img.err" && grep -q "loader: gpu-nvme" "$TMP/img.err"; then
        pass "$name: CRC32C of every extent checked on the GPU, weights through gpu-nvme"
    else
        fail "$name: -v does not show the GPU check and the gpu-nvme loader"
    fi
fi

# Corrupt one byte in the middle of layer n_layers/2 (one block of it) and expect --verify to
# name that layer. The extent table: u64 offset, u64 bytes, u32 crc, u32 kind, u32 layer, u32 pad.
gguf_off=$(u64 "$img" 24)
table=$(u64 "$img" 40)
n_ext=$(u32 "$img" 48)
n_layers=$(u32 "$img" 60)
want=$((n_layers / 2))
at=""
for ((i = 0; i < n_ext; i++)); do
    e=$((table + 32 * i))
    if [ "$(u32 "$img" $((e + 24)))" = "$want" ]; then
        at=$((gguf_off + $(u64 "$img" "$e") + $(u64 "$img" $((e + 8))) / 2))
        break
    fi
done
if [ -z "$at" ]; then
    fail "$name: layer $want not found in the extent table"
    exit 1
fi
flip_byte "$img" "$at"
if run --sim "$img" "${backend[@]}" --verify >"$TMP/bad.out" 2>"$TMP/bad.err"; then
    fail "$name: a corrupted block of layer $want went unnoticed by --verify"
elif grep -q "layer $want is corrupt on the drive" "$TMP/bad.err"; then
    pass "$name: byte $at flipped, --verify says: $(grep -o "layer $want is corrupt.*" "$TMP/bad.err" | head -1)"
else
    fail "$name: --verify failed without naming layer $want: $(tail -2 "$TMP/bad.err")"
fi
exit $FAILED
