# Runs inside the QEMU guest (scripts/qemu/run-guest.sh --bind none --script): nvload-setup for
# real against QEMU's NVMe controllers, with the kernel's nvme driver holding them at boot.
# Controller 0 ($NVL_BDF0) holds the test pattern; controller 1 ($NVL_BDF1) is a spare the
# script formats, mounts and swaps on to see the refusals. $NVL_TEST_ARGS are the arguments of
# nvme_guest_test run. sh -e: the first failing command fails the run.

fail() {
    echo "setup-guest: FAIL: $*"
    exit 1
}

# expect_fail PATTERN CMD...: CMD must exit non-zero and print PATTERN on stderr.
expect_fail() {
    pattern=$1
    shift
    if "$@" 2>/tmp/err; then
        fail "'$*' succeeded; it should have failed with '$pattern'"
    fi
    cat /tmp/err
    grep -q "$pattern" /tmp/err || fail "'$*' failed without saying '$pattern'"
}

driver_is() {
    [ "$(nvl_driver_of "$1")" = "$2" ] || fail "$1 is bound to '$(nvl_driver_of "$1")', not $2"
}

# The namespace block device of a controller bound to nvme (QEMU's are not multipath).
ns_of() {
    for _ns in "/sys/bus/pci/devices/$1/nvme/"nvme*/nvme*n1; do
        [ -e "$_ns" ] && basename "$_ns" && return 0
    done
}

nvl_wait_for "/sys/bus/pci/devices/$NVL_BDF0/nvme" && nvl_wait_for "/sys/bus/pci/devices/$NVL_BDF1/nvme"
nvload-setup --list

echo "== bad input: nothing changes"
expect_fail "invalid PCI address" nvload-setup 0000:00:04
expect_fail "invalid PCI address" nvload-setup 0000:00:20.0
expect_fail "no PCI device" nvload-setup 0000:00:09.0
expect_fail "not an NVMe controller" nvload-setup 0000:00:1f.0
echo "== vfio-pci cannot be loaded: clear error, controller untouched"
[ ! -e /sys/bus/pci/drivers/vfio-pci ] || fail "vfio-pci is already loaded"
NVL_MODPROBE=false expect_fail "vfio-pci driver is not available" nvload-setup "$NVL_BDF0"
driver_is "$NVL_BDF0" nvme
echo "== a drive the system uses is refused"
spare=$(ns_of "$NVL_BDF1")
[ -n "$spare" ] && nvl_wait_for "/dev/$spare" || fail "no block device for $NVL_BDF1"
mke2fs -q "/dev/$spare"
mkdir -p /mnt/spare
mount "/dev/$spare" /mnt/spare
expect_fail "/dev/$spare is mounted at /mnt/spare" nvload-setup "$NVL_BDF1"
driver_is "$NVL_BDF1" nvme
umount /mnt/spare
mkswap "/dev/$spare" >/dev/null
swapon "/dev/$spare"
expect_fail "/dev/$spare is in use as swap" nvload-setup "$NVL_BDF1"
driver_is "$NVL_BDF1" nvme
swapoff "/dev/$spare"
expect_fail "no user named" nvload-setup --user nosuchuser "$NVL_BDF0"
driver_is "$NVL_BDF0" nvme

echo "== bind controller 0 for a user"
echo 'alice:x:1000:1000::/:/bin/sh' >>/etc/passwd
nvload-setup --user alice "$NVL_BDF0"
driver_is "$NVL_BDF0" vfio-pci
nvload-setup --status "$NVL_BDF0" | tee /tmp/status
grep -q "ready for nvload: yes" /tmp/status || fail "--status does not say ready"
node=$(sed -n 's/^  vfio node: *\([^ ]*\) .*/\1/p' /tmp/status)
[ -c "$node" ] || fail "no vfio group node '$node'"
[ "$(stat -c %u:%a "$node")" = 1000:660 ] || fail "$node is $(stat -c %u:%a "$node"), want 1000:660"
nvload-setup "$NVL_BDF0" # a second run finds it bound and changes nothing

echo "== the driver test through the vfio device nvload-setup made"
# shellcheck disable=SC2086
nvme_guest_test run "$NVL_BDF0" $NVL_TEST_ARGS

echo "== --restore refuses while the group is open, then gives the drive back"
exec 3<>"$node"
expect_fail "is in use" nvload-setup --restore "$NVL_BDF0"
driver_is "$NVL_BDF0" vfio-pci
exec 3>&-
nvload-setup --restore "$NVL_BDF0"
driver_is "$NVL_BDF0" nvme
disk=$(ns_of "$NVL_BDF0")
[ -b "/dev/$disk" ] || fail "/dev/$disk did not come back"
# The kernel reads what nvload's driver wrote: the write pattern in the scratch region, the
# image pattern everywhere else.
nvme_guest_test check-image "/dev/$disk"
nvload-setup --list
echo "setup-guest: PASS"
