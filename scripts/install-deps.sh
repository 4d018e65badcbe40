#!/usr/bin/env bash
# Installs everything nvload needs to build and test on Debian 12: compilers and libraries from
# apt, Python test dependencies into a private venv (.cache/venv), and the default model.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    build-essential cmake ninja-build pkg-config git clang clang-format llvm
    # clang's sanitizer and libFuzzer runtimes (scripts/fuzz-gguf.sh)
    libclang-rt-dev
    libcmocka-dev libpciaccess-dev liburing-dev libmicrohttpd-dev libcjson-dev libpcre2-dev
    python3 python3-venv python3-pip curl
    qemu-system-x86 qemu-utils busybox-static cpio kmod zstd
    # scripts/qemu/kernel.sh: rebuilds vfio.ko (no-IOMMU) against the guest kernel headers
    xz-utils gcc-12 make
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages used only by tests (independent reference implementations and clients).
VENV=.cache/venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY_PACKAGES=(numpy gguf openai tokenizers sentencepiece protobuf)
if ! "$VENV/bin/python" -c "import numpy, gguf, openai, tokenizers, sentencepiece, google.protobuf" \
    2>/dev/null; then
    "$VENV/bin/pip" install -q "${PY_PACKAGES[@]}"
fi

# The default model (SmolLM2-135M-Instruct Q4_1), cached in .cache/models.
scripts/fetch-model.sh >/dev/null
