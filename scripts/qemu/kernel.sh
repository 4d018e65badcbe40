#!/usr/bin/env bash
# Prepares the guest kernel for the QEMU/VFIO harness and prints the directory that holds it.
#
#   scripts/qemu/kernel.sh [--noiommu]
#
# It downloads Debian's cloud kernel package (LZ4-compressed, ~2 s to boot under TCG) with
# `apt-get download`, unpacks it with `dpkg -x` and runs depmod, all under .cache/qemu/<kver>/.
# Nothing is installed on the machine itself. With --noiommu it also builds vfio.ko with
# CONFIG_VFIO_NOIOMMU, which Debian's kernels lack: from linux-source-6.1 of the same version as the
# kernel, against that kernel's linux-headers, both downloaded and unpacked into the cache too (so
# the machine's linux-libc-dev is never touched). The exported symbols of that vfio.ko match the
# stock one, so the stock vfio-pci and vfio_iommu_type1 load on top of it.
#
# The result is cached: a second call costs nothing. The output directory contains
#   vmlinuz               the kernel image
#   root/lib/modules/KV   its modules, with modules.dep
#   kver                  the kernel release string
#   vfio-noiommu.ko       (with --noiommu) the rebuilt vfio module
#
# Environment: NVL_QEMU_CACHE (default <repo>/.cache/qemu), NVL_QEMU_KERNEL_PKG (default
# linux-image-cloud-amd64; the metapackage is resolved to the concrete image package).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${NVL_QEMU_CACHE:-$REPO/.cache/qemu}
META=${NVL_QEMU_KERNEL_PKG:-linux-image-cloud-amd64}
NOIOMMU=0

while (($#)); do
    case $1 in
    --noiommu) NOIOMMU=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "kernel.sh: unknown argument '$1'" >&2
        exit 2
        ;;
    esac
    shift
done

log() { echo "kernel.sh: $*" >&2; }
die() {
    echo "kernel.sh: error: $*" >&2
    exit 1
}

mkdir -p "$CACHE"
# Concurrent harness runs (ctest -j) share the cache: one prepares it, the others wait.
exec 9>"$CACHE/.lock"
flock 9

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo

# Resolves the metapackage to the image package it depends on (linux-image-6.1.0-NN-cloud-amd64).
resolve_image_pkg() {
    case $META in
    linux-image-[0-9]*) apt-cache show "$META" >/dev/null 2>&1 && echo "$META" ;;
    *) apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}' ;;
    esac
}

IMAGE_PKG=$(resolve_image_pkg || true)
if [ -z "$IMAGE_PKG" ]; then
    # No package lists yet (fresh machine): fetch them once and retry.
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    IMAGE_PKG=$(resolve_image_pkg || true)
fi
if [ -z "$IMAGE_PKG" ]; then
    # Offline: fall back to whatever kernel an earlier run cached.
    cached=$(find "$CACHE" -mindepth 2 -maxdepth 2 -name vmlinuz -printf '%h\n' 2>/dev/null | sort | tail -1)
    [ -n "$cached" ] || die "cannot resolve $META with apt-cache and nothing is cached in $CACHE"
    KDIR=$cached
    KVER=$(cat "$KDIR/kver")
    log "apt-cache unavailable; using cached kernel $KVER"
else
    KVER=${IMAGE_PKG#linux-image-}
    KDIR=$CACHE/$KVER
fi

# apt-get download writes into the current directory as user _apt when it can; a private
# directory it can write to avoids the "unsandboxed" warning and works as root or not.
download() { # download DIR PKG[=VERSION]...
    local dir=$1
    shift
    mkdir -p "$dir"
    chmod 0777 "$dir" 2>/dev/null || true
    (cd "$dir" && apt-get download -q "$@" >/dev/null 2>"$dir/apt.err") ||
        die "apt-get download $* failed: $(cat "$dir/apt.err")"
}

if [ ! -f "$KDIR/vmlinuz" ]; then
    log "fetching $IMAGE_PKG"
    start=$SECONDS
    tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
    download "$tmp" "$IMAGE_PKG"
    rm -rf "$KDIR.partial"
    mkdir -p "$KDIR.partial/root"
    dpkg -x "$tmp"/linux-image-*.deb "$KDIR.partial/root"
    # The package ships no modules.dep; busybox modprobe and modprobe --show-depends need it.
    depmod -b "$KDIR.partial/root" "$KVER"
    cp "$KDIR.partial/root/boot/vmlinuz-$KVER" "$KDIR.partial/vmlinuz"
    echo "$KVER" >"$KDIR.partial/kver"
    apt-cache show "$IMAGE_PKG" 2>/dev/null | awk '/^Version:/ {print $2; exit}' >"$KDIR.partial/version"
    rm -rf "$tmp" "$KDIR.partial/root/boot" "$KDIR.partial/root/usr"
    rm -rf "$KDIR"
    mv "$KDIR.partial" "$KDIR"
    log "kernel $KVER ready in $((SECONDS - start)) s"
fi

if ((NOIOMMU)) && [ ! -f "$KDIR/vfio-noiommu.ko" ]; then
    command -v make >/dev/null || die "make is needed to build vfio.ko (apt-get install build-essential)"
    log "building vfio.ko with CONFIG_VFIO_NOIOMMU for $KVER"
    start=$SECONDS
    VERSION=$(cat "$KDIR/version" 2>/dev/null || true)
    [ -n "$VERSION" ] || die "unknown package version of $KVER; delete $KDIR and retry"
    # The headers package of this flavour pulls the common headers and kbuild (scripts, modpost).
    FLAVOUR_HDR=linux-headers-$KVER
    COMMON_HDR=$(apt-cache depends "$FLAVOUR_HDR" | awk '/Depends: linux-headers-.*-common/ {print $2; exit}')
    KBUILD=$(apt-cache depends "$FLAVOUR_HDR" | awk '/Depends: linux-kbuild-/ {print $2; exit}')
    [ -n "$COMMON_HDR" ] && [ -n "$KBUILD" ] || die "cannot resolve the dependencies of $FLAVOUR_HDR"
    SRC_PKG=linux-source-${KBUILD#linux-kbuild-}
    tmp=$(mktemp -d "$CACHE/build.XXXXXX")
    download "$tmp/debs" "$FLAVOUR_HDR=$VERSION" "$COMMON_HDR=$VERSION" "$KBUILD=$VERSION" \
        "$SRC_PKG=$VERSION"
    for d in "$tmp"/debs/linux-headers-*.deb "$tmp"/debs/linux-kbuild-*.deb; do
        dpkg -x "$d" "$tmp/root"
    done
    HDR=$tmp/root/usr/src/$FLAVOUR_HDR
    # The flavour Makefile includes the common one by absolute path; point it into our tree.
    sed -i "s#/usr/src/#$tmp/root/usr/src/#" "$HDR/Makefile"
    # Only drivers/vfio is needed from the 140 MB source tarball.
    dpkg --fsys-tarfile "$tmp"/debs/linux-source-*.deb |
        tar -xO "./usr/src/$SRC_PKG.tar.xz" |
        tar -xJ -C "$tmp" "$SRC_PKG/drivers/vfio"
    mkdir "$tmp/vfio"
    cp "$tmp/$SRC_PKG"/drivers/vfio/{vfio_main.c,iova_bitmap.c,container.c,vfio.h} "$tmp/vfio/"
    # Same objects as the kernel's drivers/vfio/Makefile builds into vfio.ko.
    cat >"$tmp/vfio/Kbuild" <<'EOF'
obj-m := vfio.o
vfio-y := vfio_main.o iova_bitmap.o container.o
ccflags-y := -DCONFIG_VFIO_NOIOMMU=1
EOF
    make -s -C "$HDR" M="$tmp/vfio" -j"$(nproc)" modules >"$tmp/build.log" 2>&1 ||
        die "vfio.ko build failed: $(tail -20 "$tmp/build.log")"
    cp "$tmp/vfio/vfio.ko" "$KDIR/vfio-noiommu.ko.partial"
    mv "$KDIR/vfio-noiommu.ko.partial" "$KDIR/vfio-noiommu.ko"
    rm -rf "$tmp"
    log "vfio-noiommu.ko ready in $((SECONDS - start)) s"
fi

echo "$KDIR"
