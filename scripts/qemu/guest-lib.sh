# Shell functions for commands and scripts that run inside the QEMU guest (busybox sh).
# run-guest.sh installs this file as /nvl/lib.sh; /init sources it before running the commands.

# Prints a line the host harness can find in the console log.
nvl_say() {
    echo "nvl-guest: $*"
}

# Seconds since boot, with centiseconds.
nvl_uptime() {
    read -r up _ </proc/uptime
    echo "$up"
}

# nvl_wait_for PATH [SECONDS]: waits until PATH exists (default 10 s).
nvl_wait_for() {
    _n=$((${2:-10} * 10))
    while [ ! -e "$1" ] && [ "$_n" -gt 0 ]; do
        sleep 0.1
        _n=$((_n - 1))
    done
    [ -e "$1" ]
}

# The name of the driver bound to a PCI function, or nothing.
nvl_driver_of() {
    [ -e "/sys/bus/pci/devices/$1/driver" ] || return 0
    basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
}

# Loads vfio-pci and the type1 IOMMU backend; in no-IOMMU mode vfio first, with the unsafe option
# (insmod ignores options on the kernel command line).
nvl_load_vfio() {
    if [ "$NVL_MODE" = noiommu ]; then
        modprobe vfio enable_unsafe_noiommu_mode=1 || return 1
    fi
    modprobe vfio_iommu_type1 && modprobe vfio-pci
}

# nvl_bind_vfio BDF: unbinds the current driver and binds vfio-pci through driver_override.
nvl_bind_vfio() {
    _d=/sys/bus/pci/devices/$1
    [ -e "$_d" ] || { nvl_say "no PCI device $1"; return 1; }
    [ -e "$_d/driver" ] && echo "$1" >"$_d/driver/unbind"
    echo vfio-pci >"$_d/driver_override"
    echo "$1" >/sys/bus/pci/drivers_probe
    if [ "$(nvl_driver_of "$1")" != vfio-pci ]; then
        nvl_say "binding $1 to vfio-pci failed"
        return 1
    fi
    nvl_say "$1 bound to vfio-pci, iommu group $(basename "$(readlink "$_d/iommu_group")")"
}

# nvl_bind_nvme BDF: gives the controller back to the kernel's nvme driver.
nvl_bind_nvme() {
    _d=/sys/bus/pci/devices/$1
    [ -e "$_d/driver" ] && echo "$1" >"$_d/driver/unbind"
    echo >"$_d/driver_override"
    echo "$1" >/sys/bus/pci/drivers_probe
    [ "$(nvl_driver_of "$1")" = nvme ]
}

# nvl_step CMD: runs one command of the run list; the first failure ends the run with its status.
nvl_step() {
    nvl_say "\$ $1"
    _t0=$(nvl_uptime)
    eval "$1"
    _rc=$?
    _t1=$(nvl_uptime)
    if [ "$_rc" -ne 0 ]; then
        nvl_say "FAILED (exit $_rc) after $(awk "BEGIN {print $_t1 - $_t0}") s: $1"
        exit "$_rc"
    fi
    nvl_say "ok ($(awk "BEGIN {print $_t1 - $_t0}") s)"
}
