#!/usr/bin/env bash
# Models on a drive, end to end on the software NVMe controller (no QEMU needed):
#   - nvinfer's greedy output on a packed file equals the original's;
#   - nvload-setup write --sim, then nvinfer --sim (the same code path as --nvme, through the
#     cpu-nvme loader) equals nvinfer -m FILE, with 512 B and 4 KiB blocks;
#   - refusals: no confirmation, a filesystem or partition signature (and --force), a model
#     larger than the namespace, another model given with -m;
#   - an interrupted write leaves an image marked incomplete, which nvinfer refuses;
#   - --verify names the layer of a corrupted block.
# usage: test_drive_sim.sh NVGGUF NVLOAD_SETUP NVINFER SHARED_DIR [MODEL.gguf PROMPT N]
set -u
NVGGUF=$1
SETUP=$2
NVINFER=$3
SHARED=$4
M=$SHARED/models/stories260K.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}
# expect_fail PATTERN CMD...: CMD must exit non-zero and say PATTERN on stderr.
expect_fail() {
    local pattern=$1
    shift
    if "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; then
        fail "'$*' succeeded; it should have failed with '$pattern'"
    fi
    grep -q -- "$pattern" "$TMP/err" || fail "'$*' failed without saying '$pattern': $(cat "$TMP/err")"
    echo "refused as expected: $(grep -m1 -- "$pattern" "$TMP/err")"
}
# flip_byte FILE OFFSET: inverts one byte in place.
flip_byte() {
    local v
    v=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((v ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# u64 FILE OFFSET: a little-endian 64-bit field.
u64() {
    od -An -tu8 -j "$2" -N8 "$1" | tr -d ' '
}

MODEL=${5:-$M}
PROMPT=${6:-Once upon a time}
N=${7:-32}
run() { "$NVINFER" --temp 0 -t 2 -p "$PROMPT" -n "$N" "$@"; }

echo "== packed and original give the same greedy text"
"$NVGGUF" pack "$MODEL" "$TMP/packed.gguf" >/dev/null || fail "nvgguf pack failed"
run -m "$MODEL" >"$TMP/ref" || fail "nvinfer -m $MODEL failed"
run -m "$TMP/packed.gguf" >"$TMP/packed.out" || fail "nvinfer on the packed file failed"
cmp -s "$TMP/ref" "$TMP/packed.out" || fail "packed: '$(cat "$TMP/packed.out")' vs '$(cat "$TMP/ref")'"
cat "$TMP/ref" && echo

size=$(($(stat -c %s "$TMP/packed.gguf") + (2 << 20)))
for lba in 512 4096; do
    echo "== write and run through the sim, $lba-byte blocks"
    img=$TMP/drive$lba.img
    truncate -s "$size" "$img"
    "$SETUP" write --yes --sim "file=$img,lba=$lba" "$MODEL" >"$TMP/w" 2>&1 ||
        fail "write failed: $(cat "$TMP/w")"
    grep -q "CRC32C verified" "$TMP/w" || fail "no summary line: $(cat "$TMP/w")"
    cat "$TMP/w"
    run --sim "file=$img,lba=$lba" --verify -m "$MODEL" -v >"$TMP/drive.out" 2>"$TMP/v" ||
        fail "nvinfer --sim failed: $(cat "$TMP/v")"
    cmp -s "$TMP/ref" "$TMP/drive.out" || fail "--sim: '$(cat "$TMP/drive.out")'"
    grep -q "through the cpu-nvme loader" "$TMP/v" || fail "-v does not name the loader path"
    grep -q "holds the model of" "$TMP/v" || fail "-m was not checked against the drive"
    # The packed file nvgguf makes is byte for byte what is on the drive.
    cmp -s -i 1048576:0 -n "$(stat -c %s "$TMP/packed.gguf")" "$img" "$TMP/packed.gguf" ||
        fail "the drive's GGUF differs from nvgguf pack's"
done
[ "$MODEL" != "$M" ] && exit 0 # the rest needs only the small model

img=$TMP/drive512.img
echo "== another model given with -m is refused"
"$NVGGUF" quantize "$M" "$TMP/q8.gguf" q8_0 >/dev/null || fail "quantize failed"
expect_fail "holds another model than" run --sim "$img" -m "$TMP/q8.gguf"

echo "== --verify names the layer of a corrupted block"
gguf_off=$(u64 "$img" 24)
gguf_bytes=$(u64 "$img" 32)
cp "$img" "$TMP/corrupt.img"
flip_byte "$TMP/corrupt.img" $((gguf_off + gguf_bytes - 100))
expect_fail "layer 4 is corrupt on the drive" run --sim "$TMP/corrupt.img" --verify
flip_byte "$TMP/corrupt.img" $((gguf_off + gguf_bytes - 100))
flip_byte "$TMP/corrupt.img" $((gguf_off + 10))
expect_fail "metadata is corrupt on the drive" run --sim "$TMP/corrupt.img" --verify

echo "== refusals of nvload-setup write"
cp "$img" "$TMP/before.img"
expect_fail "not confirmed" "$SETUP" write --sim "$img" "$M"
cmp -s "$img" "$TMP/before.img" || fail "a write that was not confirmed changed the drive"
truncate -s 2M "$TMP/small.img"
expect_fail "the model needs" "$SETUP" write --yes --sim "$TMP/small.img" "$M"
truncate -s 4M "$TMP/ext4.img"
printf '\x53\xef' | dd of="$TMP/ext4.img" bs=1 seek=1080 conv=notrunc status=none
expect_fail "holds an ext2/3/4 filesystem" "$SETUP" write --yes --sim "$TMP/ext4.img" "$M"
truncate -s 4M "$TMP/gpt.img"
printf 'EFI PART' | dd of="$TMP/gpt.img" bs=1 seek=4096 conv=notrunc status=none
expect_fail "holds a GPT partition table" "$SETUP" write --yes --sim "file=$TMP/gpt.img,lba=4096" "$M"
"$SETUP" write --yes --force --sim "$TMP/ext4.img" "$M" >/dev/null 2>&1 || fail "--force did not write"
run --sim "$TMP/ext4.img" >"$TMP/forced.out" 2>/dev/null && cmp -s "$TMP/ref" "$TMP/forced.out" ||
    fail "the forced image does not run"

echo "== an interrupted write leaves an image nvinfer refuses"
cp "$img" "$TMP/int.img"
# A slow drive, so that the write is still going when it is killed.
"$SETUP" write --yes --sim "file=$TMP/int.img,bw=2MB/s" "$M" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do
    # The header goes first with its "complete" flag clear (byte 16).
    [ "$(od -An -tu4 -j 16 -N4 "$TMP/int.img" | tr -d ' ')" = 0 ] && break
    sleep 0.05
done
sleep 0.2
kill -9 $pid 2>/dev/null || fail "the write ended before it could be interrupted"
wait $pid 2>/dev/null
expect_fail "is incomplete: its write was interrupted" run --sim "$TMP/int.img"
"$SETUP" write --yes --sim "$TMP/int.img" "$M" >/dev/null 2>&1 || fail "rewrite failed"
run --sim "$TMP/int.img" --verify >"$TMP/int.out" 2>/dev/null && cmp -s "$TMP/ref" "$TMP/int.out" ||
    fail "the rewritten image does not run"
echo "PASS"
