#!/bin/busybox sh
# /init of the QEMU harness's initramfs (installed by run-guest.sh): mounts the pseudo
# filesystems, loads vfio, binds the controller(s), runs /nvl/run.sh, prints dmesg, powers off.
/bin/busybox --install -s /bin
export PATH=/nvl/bin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/hugepages
mount -t hugetlbfs hugetlbfs /dev/hugepages

# Every setting (NVL_MODE, NVL_BDF, NVL_BDF0, ...) goes into the commands' environment.
set -a
. /etc/nvl.conf
set +a
. /nvl/lib.sh

nvl_say "kernel $(uname -r), $NVL_MODE mode, controllers $NVL_BDFS, up $(nvl_uptime) s"
rc=0
if [ "$NVL_BIND" != none ]; then
    nvl_load_vfio || rc=$?
    if [ "$rc" -eq 0 ]; then
        case $NVL_BIND in
        first) nvl_bind_vfio "$NVL_BDF" || rc=$? ;;
        all) for b in $NVL_BDFS; do nvl_bind_vfio "$b" || rc=$?; done ;;
        esac
    fi
    [ "$rc" -eq 0 ] || nvl_say "FAILED (exit $rc): vfio setup"
fi
if [ "$rc" -eq 0 ]; then
    (. /nvl/run.sh)
    rc=$?
fi
nvl_say "result rc=$rc, up $(nvl_uptime) s"
nvl_say "dmesg begin"
dmesg
nvl_say "dmesg end"
sync
poweroff -f
