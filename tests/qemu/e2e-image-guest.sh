# Runs inside the QEMU guest (scripts/qemu/run-guest.sh --bind none --script), for
# e2e-image-test.sh: models written onto QEMU's emulated NVMe drives with nvload-setup write and
# run from there with nvinfer --nvme, every weight read through nvload's VFIO driver.
#   $NVL_BDF0  empty drive: stories260K is written to it
#   $NVL_BDF1  empty drive: SmolLM2 (quantized) is written to it
#   $NVL_BDF2  an image of stories260K the host wrote and then corrupted in layer $E2E_LAYER
# Outputs are printed as "e2e-sha256 NAME HASH" lines (and the text) for the host to compare
# with nvinfer -m FILE on the host. sh -e: the first failing command fails the run.

fail() {
    echo "e2e-image: FAIL: $*"
    exit 1
}

# show NAME FILE: the text and its hash, for the host.
show() {
    echo "e2e-output $1 begin"
    cat "$2"
    echo
    echo "e2e-output $1 end"
    echo "e2e-sha256 $1 $(sha256sum <"$2" | cut -d' ' -f1)"
}

for b in $NVL_BDF0 $NVL_BDF1 $NVL_BDF2; do
    nvl_wait_for "/sys/bus/pci/devices/$b/nvme" 20 || fail "the kernel did not bind nvme to $b"
    nvload-setup "$b"
done

echo "== nvload-setup write refuses without confirmation and writes nothing"
if nvload-setup write "$NVL_BDF0" /nvl/stories.gguf </dev/null 2>/tmp/err; then
    fail "write went on without confirmation"
fi
cat /tmp/err
grep -q "not confirmed" /tmp/err || fail "no 'not confirmed' message"
nvload-setup --status "$NVL_BDF0" | tee /tmp/status
grep -q "image: *none" /tmp/status || fail "the refused write changed the drive"

echo "== write both models (packed on the way), read back and CRC-checked"
nvload-setup write --yes "$NVL_BDF0" /nvl/stories.gguf
nvload-setup write --yes --queues 4 "$NVL_BDF1" /nvl/smol.gguf
nvload-setup --status "$NVL_BDF1" | tee /tmp/status
grep -q "image: .*complete" /tmp/status || fail "--status does not show a complete image"

echo "== run them from the drives"
nvinfer --nvme "$NVL_BDF0" --temp 0 -p "$E2E_PROMPT0" -n "$E2E_N0" >/tmp/out0
show stories /tmp/out0
nvinfer --nvme "$NVL_BDF1" -m /nvl/smol.gguf --verify -v --temp 0 -t 1 -p "$E2E_PROMPT1" \
    -n "$E2E_N1" >/tmp/out1 2>/tmp/err1 || {
    cat /tmp/err1
    fail "nvinfer --nvme $NVL_BDF1 failed"
}
grep "data path" /tmp/err1
grep "backend:" /tmp/err1 || true # which CPU kernels the guest ran (generic under noxsave)
grep -q "through the cpu-nvme loader" /tmp/err1 || fail "the weights did not come through cpu-nvme"
show smollm2 /tmp/out1

echo "== another model given with -m is refused"
if nvinfer --nvme "$NVL_BDF1" -m /nvl/stories.gguf -p x -n 1 2>/tmp/err; then
    fail "a drive holding another model than -m ran"
fi
cat /tmp/err
grep -q "holds another model" /tmp/err || fail "no 'holds another model' message"

echo "== --verify names the layer the host corrupted"
if nvinfer --nvme "$NVL_BDF2" --verify -p x -n 1 2>/tmp/err; then
    fail "a corrupted image passed --verify"
fi
cat /tmp/err
grep -q "layer $E2E_LAYER is corrupt" /tmp/err || fail "--verify did not name layer $E2E_LAYER"
echo "e2e-image: guest part passed"
