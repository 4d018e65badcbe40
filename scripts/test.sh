#!/usr/bin/env bash
# Runs every nvload test: format check, build, unit and sim conformance tests, tokenizer and model
# reference tests, bounded fuzzing and the QEMU/VFIO guest tests. Installs what it needs first.
# Tests that need a GPU or a real NVMe drive skip themselves on machines without one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/check-format.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 1800
