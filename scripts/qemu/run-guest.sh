#!/usr/bin/env bash
# Boots a QEMU guest with one or more emulated NVMe controllers and runs commands in it.
#
#   scripts/qemu/run-guest.sh [options] --disk IMG[,NVME-PROPS] --run 'CMD' [--run 'CMD' ...]
#
# The guest is Debian's cloud kernel (scripts/qemu/kernel.sh) with a busybox initramfs. Its /init
# mounts proc/sys/dev, loads the vfio modules, binds the controller(s) to vfio-pci
# (driver_override + drivers_probe), runs the --run commands in order in /bin/sh, prints the
# guest's dmesg and powers off. Files given with --add are copied into the initramfs; a
# dynamically linked program brings its shared libraries along, so any project binary can run.
#
# Options:
#   --mode iommu|noiommu  iommu (default): q35 + intel-iommu, vfio type1. noiommu: no IOMMU,
#                         vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU, enable_unsafe_noiommu_mode=1.
#   --disk IMG[,PROPS]    a raw image behind an emulated NVMe controller; PROPS are extra
#                         `-device nvme` properties, e.g. logical_block_size=4096,
#                         physical_block_size=4096,mdts=5,max_ioqpairs=8,msix_qsize=9.
#                         Repeatable; controller N sits at PCI address 0000:00:0<4+N>.0.
#   --add SRC[:DEST]      copy SRC into the guest (DEST defaults to /nvl/bin/<name>; /nvl/bin is
#                         on PATH), with the shared libraries ldd finds for it on the host (one
#                         it cannot find is a harness error). Repeatable.
#   --run CMD             a shell command to run in the guest; the run fails at the first command
#                         that exits non-zero. Repeatable.
#   --script FILE         a shell script to run in the guest (after the --run commands), with
#                         `sh -e` and the functions below.
#   --bind first|all|none which controllers /init binds to vfio-pci (default first). With none the
#                         vfio modules are not loaded either (nvload-setup does it).
#   --mem MIB             guest memory (default 512).   --smp N    guest CPUs (default 1).
#   --append ARGS         extra kernel command line.    --timeout S (default 180).
#   --workdir DIR         where the initramfs and logs go (default: a new directory in /tmp,
#                         deleted on success unless --keep).
#   --log FILE            copy the guest console log here as well.
#   --trace EVENT         also record this QEMU trace event (glob) in WORKDIR/qemu.err.
#   --allow-nvme-errors   do not fail on QEMU's DMA/PRP error trace events (for tests that
#                         provoke them on purpose).
#   --qemu ARG            pass ARG to qemu-system-x86_64 as is (repeatable).
#   --quiet               do not echo the guest console while it runs.
#
# In the guest the environment has NVL_BDF (controller 0), NVL_BDF0, NVL_BDF1, ..., NVL_MODE, and
# shell functions nvl_bind_vfio BDF, nvl_bind_nvme BDF and nvl_wait_for PATH [SECONDS].
#
# Exit status: 0 all commands passed; 1 a command failed; 2 DMAR fault (blocked DMA: QEMU's NVMe
# reports such a transfer as success, so the log is the only witness); 3 timeout; 4 guest kernel
# crash; 5 harness error; 6 QEMU's controller saw the host break an NVMe rule (its pci_nvme_ub_*
# "undefined behaviour" trace events, or a DMA/PRP error event: bad address, PRP list entry or
# alignment, MDTS exceeded, controller fatal status).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)

MODE=iommu
DISKS=()
ADDS=()
RUNS=()
SCRIPT=""
BIND=first
MEM=512
SMP=1
APPEND=""
TIMEOUT=180
WORKDIR=""
KEEP=0
LOGCOPY=""
QUIET=0
TRACES=()
QEMU_EXTRA=()
ALLOW_NVME_ERRORS=0

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}
die() {
    echo "run-guest: error: $*" >&2
    exit 5
}

while (($#)); do
    case $1 in
    --mode) MODE=$2 && shift ;;
    --disk) DISKS+=("$2") && shift ;;
    --add) ADDS+=("$2") && shift ;;
    --run) RUNS+=("$2") && shift ;;
    --script) SCRIPT=$2 && shift ;;
    --bind) BIND=$2 && shift ;;
    --mem) MEM=$2 && shift ;;
    --smp) SMP=$2 && shift ;;
    --append) APPEND=$2 && shift ;;
    --timeout) TIMEOUT=$2 && shift ;;
    --workdir) WORKDIR=$2 && shift ;;
    --keep) KEEP=1 ;;
    --log) LOGCOPY=$2 && shift ;;
    --quiet) QUIET=1 ;;
    --trace) TRACES+=("$2") && shift ;;
    --allow-nvme-errors) ALLOW_NVME_ERRORS=1 ;;
    --qemu) QEMU_EXTRA+=("$2") && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

case $MODE in iommu | noiommu) ;; *) die "--mode must be iommu or noiommu, not '$MODE'" ;; esac
case $BIND in first | all | none) ;; *) die "--bind must be first, all or none, not '$BIND'" ;; esac
((${#DISKS[@]})) || die "at least one --disk is needed"
((${#RUNS[@]})) || [ -n "$SCRIPT" ] || die "nothing to run: give --run or --script"
[ -z "$SCRIPT" ] || [ -f "$SCRIPT" ] || die "no such script: $SCRIPT"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
BUSYBOX=$(command -v busybox || true)
# The initramfs has no C library for busybox to load: it must be the static build.
[ -n "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 ||
    die "a static busybox is needed (apt-get install busybox-static)"

KOPT=()
[ "$MODE" = noiommu ] && KOPT=(--noiommu)
KDIR=$("$HERE/kernel.sh" "${KOPT[@]}") || die "kernel preparation failed"
KVER=$(cat "$KDIR/kver")

if [ -z "$WORKDIR" ]; then
    WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/nvl-guest.XXXXXX")
else
    mkdir -p "$WORKDIR"
    KEEP=1
fi
STAGE=$WORKDIR/initramfs
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,etc/modprobe.d,proc,sys,dev,tmp,mnt,nvl/bin,lib/modules/"$KVER"}

# --- initramfs -------------------------------------------------------------------------------
cp "$BUSYBOX" "$STAGE/bin/busybox"

# vfio modules and their dependencies, laid out like /lib/modules so busybox modprobe finds them.
MROOT=$KDIR/root/lib/modules/$KVER
while read -r _ path _; do
    rel=${path#"$KDIR/root/lib/modules/$KVER/"}
    mkdir -p "$STAGE/lib/modules/$KVER/$(dirname "$rel")"
    cp "$path" "$STAGE/lib/modules/$KVER/$rel"
done < <(modprobe -d "$KDIR/root" -S "$KVER" --show-depends -a vfio-pci vfio_iommu_type1 | sort -u)
cp "$MROOT"/modules.{order,builtin,builtin.modinfo} "$STAGE/lib/modules/$KVER/"
if [ "$MODE" = noiommu ]; then
    # The option is not set here: /init passes it when it loads vfio itself, and with
    # --bind none the program under test (nvload-setup) has to turn no-IOMMU mode on.
    cp "$KDIR/vfio-noiommu.ko" "$STAGE/lib/modules/$KVER/kernel/drivers/vfio/vfio.ko"
fi
depmod -b "$STAGE" "$KVER"

# Directories the guest's dynamic loader searches without an ld.so.cache (the initramfs has
# none). Libraries from anywhere else (/usr/local/lib, found on the host through its cache) go to
# /nvl/lib, which the guest's commands get as LD_LIBRARY_PATH.
LIB_DEFAULT_DIRS=" /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib /usr/lib /lib64 /usr/lib64 "
LIB_DIR_USED=0

# Copies one file into the stage, with the shared libraries and loader of a dynamic ELF. A library
# the host's loader cannot find either fails the run here (exit 5), naming it, rather than as a
# bare "exit 127" inside the guest.
add_file() { # add_file SRC DEST
    local src=$1 dest=$2 lib deps missing to
    [ -e "$src" ] || die "--add: no such file: $src"
    mkdir -p "$STAGE$(dirname "$dest")"
    cp -L "$src" "$STAGE$dest"
    # ldd fails on static programs and on non-ELF files (scripts, data): nothing to add then.
    deps=$(ldd "$src" 2>/dev/null) || return 0
    missing=$(awk '$2 == "=>" && $3 == "not" { printf " %s", $1 }' <<<"$deps")
    [ -z "$missing" ] || die "--add $src: shared libraries not found on this host:$missing"
    for lib in $(grep -o '/[^ ]*' <<<"$deps" | sort -u); do
        to=$lib
        if [[ $LIB_DEFAULT_DIRS != *" $(dirname "$lib") "* ]]; then
            to=/nvl/lib/$(basename "$lib")
            LIB_DIR_USED=1
        fi
        [ -e "$STAGE$to" ] && continue
        mkdir -p "$STAGE$(dirname "$to")"
        cp -L "$lib" "$STAGE$to"
    done
}
for a in "${ADDS[@]}"; do
    src=${a%%:*}
    dest=/nvl/bin/$(basename "$src")
    [[ $a == *:* ]] && dest=${a#*:}
    add_file "$src" "$dest"
done

BDFS=()
for i in "${!DISKS[@]}"; do
    BDFS+=("$(printf '0000:00:%02x.0' $((4 + i)))")
done

{
    echo "NVL_MODE=$MODE"
    echo "NVL_BIND=$BIND"
    echo "NVL_BDFS='${BDFS[*]}'"
    echo "NVL_BDF=${BDFS[0]}"
    for i in "${!BDFS[@]}"; do echo "NVL_BDF$i=${BDFS[$i]}"; done
    ((LIB_DIR_USED == 0)) || echo "LD_LIBRARY_PATH=/nvl/lib"
} >"$STAGE/etc/nvl.conf"

# The command list: each step is announced, and the first failing one ends the run.
{
    echo "# generated by run-guest.sh"
    for cmd in "${RUNS[@]}"; do
        printf 'nvl_step %q\n' "$cmd"
    done
    # The script gets the guest-lib.sh functions too, and stops at its first failing command.
    [ -z "$SCRIPT" ] || echo "nvl_step 'sh -ec \". /nvl/lib.sh; . /nvl/script.sh\"'"
} >"$STAGE/nvl/run.sh"
[ -z "$SCRIPT" ] || cp "$SCRIPT" "$STAGE/nvl/script.sh"

cp "$HERE/guest-init.sh" "$STAGE/init"
cp "$HERE/guest-lib.sh" "$STAGE/nvl/lib.sh"
chmod 0755 "$STAGE/init" "$STAGE/bin/busybox"

# Uncompressed: the kernel copies it instead of inflating it under TCG, which matters when --add
# brings large files (a model) along.
(cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet) >"$WORKDIR/initramfs.cpio"

# --- QEMU ------------------------------------------------------------------------------------
QEMU=(qemu-system-x86_64 -nodefaults -no-user-config -display none -serial stdio -no-reboot
    -m "$MEM" -smp "$SMP" -accel tcg -cpu max -bios /usr/share/qemu/qboot.rom
    -kernel "$KDIR/vmlinuz" -initrd "$WORKDIR/initramfs.cpio")
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can time out and
# panic ("timer doesn't work through Interrupt-remapped IO-APIC"). Interrupt remapping itself
# must stay on: vfio_iommu_type1 refuses an IOMMU without it (-EPERM on VFIO_SET_IOMMU).
CMDLINE="console=ttyS0 panic=-1 loglevel=4 quiet no_timer_check"
if [ "$MODE" = iommu ]; then
    QEMU+=(-M q35 -device intel-iommu)
    CMDLINE+=" intel_iommu=on"
else
    QEMU+=(-M q35)
fi
for i in "${!DISKS[@]}"; do
    spec=${DISKS[$i]}
    img=${spec%%,*}
    props=""
    [[ $spec == *,* ]] && props=,${spec#*,}
    [ -f "$img" ] || die "no such disk image: $img"
    QEMU+=(-drive "file=$img,if=none,id=nvm$i,format=raw,cache=unsafe"
        -device "nvme,serial=nvl$i,drive=nvm$i,addr=$(printf '%02x' $((4 + i))).0$props")
done
# QEMU's NVMe model reports host mistakes it tolerates through trace events; they go to stderr.
NVME_UB_EVENTS=('pci_nvme_ub_*')
NVME_ERR_EVENTS=(pci_nvme_err_addr_read pci_nvme_err_addr_write pci_nvme_err_invalid_dma
    pci_nvme_err_invalid_prplist_ent pci_nvme_err_invalid_prp2_align pci_nvme_err_mdts
    pci_nvme_err_cfs)
for ev in "${NVME_UB_EVENTS[@]}" "${NVME_ERR_EVENTS[@]}" "${TRACES[@]}"; do
    QEMU+=(-trace "$ev")
done
QEMU+=("${QEMU_EXTRA[@]}" -append "$CMDLINE $APPEND")

LOG=$WORKDIR/guest.log
ERR=$WORKDIR/qemu.err
printf '%q ' "${QEMU[@]}" >"$WORKDIR/qemu.cmd"
echo "run-guest: $MODE mode, kernel $KVER, ${#DISKS[@]} controller(s), workdir $WORKDIR"
start=$EPOCHREALTIME
set +e
if ((QUIET)); then
    timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$LOG" 2>"$ERR"
    qrc=$?
else
    timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>"$ERR" | tee "$LOG"
    qrc=${PIPESTATUS[0]}
fi
set -e
elapsed=$(awk "BEGIN {print $EPOCHREALTIME - $start}")
[ -z "$LOGCOPY" ] || cp "$LOG" "$LOGCOPY"

# --- verdict ---------------------------------------------------------------------------------
# A DMAR fault is the IOMMU blocking a DMA the driver did not map: QEMU's NVMe still completes
# the command with status 0, so only the guest log and QEMU's stderr can show it.
DMAR_RE='DMAR: \[DMA (Read|Write)|DMAR: DRHD: handling fault|vtd_iommu_translate: detected translation failure|DMAR:.*fault addr'
CRASH_RE='Kernel panic|BUG: |Oops: |general protection fault|WARNING: CPU:'
NVME_RE='pci_nvme_ub_'
((ALLOW_NVME_ERRORS)) || NVME_RE+="|$(IFS='|' && echo "${NVME_ERR_EVENTS[*]}")"
verdict=0
reason="passed"
if grep -Eq "$DMAR_RE" "$LOG" "$ERR"; then
    verdict=2
    reason="DMAR fault (blocked DMA) in the guest log or QEMU stderr:"
elif grep -Eq "$NVME_RE" "$ERR"; then
    verdict=6
    reason="QEMU's NVMe controller saw the host break a rule:"
elif grep -Eq "$CRASH_RE" "$LOG"; then
    verdict=4
    reason="guest kernel crash:"
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    verdict=3
    reason="timeout after $TIMEOUT s"
elif ! grep -q '^nvl-guest: result rc=' "$LOG"; then
    verdict=5
    reason="the guest ended without a result (QEMU exit $qrc): $(tail -3 "$ERR" | tr '\n' ' ')"
elif ! grep -q '^nvl-guest: result rc=0' "$LOG"; then
    verdict=1
    reason="$(grep -m1 '^nvl-guest: FAILED' "$LOG" || grep -m1 '^nvl-guest: result' "$LOG")"
fi

printf 'run-guest: %s mode: %s (%.1f s boot to power-off)\n' "$MODE" "$reason" "$elapsed"
if ((verdict == 2 || verdict == 4 || verdict == 6)); then
    grep -Eh "$DMAR_RE|$CRASH_RE|$NVME_RE" "$LOG" "$ERR" | head -20 | sed 's/^/run-guest:   /'
fi
if ((verdict == 0 && !KEEP)); then
    rm -rf "$WORKDIR"
else
    echo "run-guest: logs in $WORKDIR (guest.log, qemu.err, qemu.cmd)"
fi
exit $verdict
