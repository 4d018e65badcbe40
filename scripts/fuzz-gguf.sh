#!/usr/bin/env bash
# Fuzzes the GGUF reader (with the writer and the dequantizers behind it) with libFuzzer.
#
#   scripts/fuzz-gguf.sh [--time SECONDS] [--out DIR] [-- LIBFUZZER_ARGS...]
#
# Builds tests/model/fuzz_gguf.c with clang -fsanitize=fuzzer,address,undefined, then runs it for
# SECONDS (default 60) starting from the seed corpus tests/model/corpus/gguf/ (every seed is run
# first, so past crashers stay fixed). New interesting inputs go to DIR/corpus (default
# build/fuzz-gguf), which persists between local runs. Exits 0 when nothing failed, 1 on a crash,
# leak, UB report, timeout or oversized allocation (more than 64 MiB for inputs of at most
# 64 KiB: the reader must never allocate much more than the file), 77 when clang's libFuzzer is
# not available (ctest reports a skip).
#
# When it fails, the input is in DIR/artifacts/crash-* (or leak-*, timeout-*, oom-*). To keep it:
#   1. reproduce:  DIR/fuzz_gguf DIR/artifacts/crash-...
#   2. fix the bug, rerun this script until it passes;
#   3. add the input to the seed corpus so CI replays it forever:
#        cp DIR/artifacts/crash-... tests/model/corpus/gguf/crash-<short-description>.gguf
#      and commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."

TIME=60
OUT=build/fuzz-gguf
EXTRA=()
while (($#)); do
    case "$1" in
    --time) TIME=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "usage: $0 [--time SECONDS] [--out DIR] [-- LIBFUZZER_ARGS...]" >&2; exit 2 ;;
    esac
done

CC=${FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null; then
    echo "fuzz-gguf: $CC not found; skipping" >&2
    exit 77
fi
mkdir -p "$OUT/corpus" "$OUT/artifacts"
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' |
    "$CC" -x c -fsanitize=fuzzer - -o "$OUT/probe" 2>/dev/null; then
    echo "fuzz-gguf: $CC cannot link libFuzzer; skipping" >&2
    exit 77
fi

SOURCES=(tests/model/fuzz_gguf.c model/src/gguf_common.c model/src/model_fail.c model/src/gguf_reader.c
    model/src/gguf_writer.c model/src/quant_types.c model/src/quant_float.c
    model/src/quant_legacy.c model/src/quant_k.c driver/src/log.c)
"$CC" -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror -Imodel/include -Imodel/src -Idriver/include \
    "${SOURCES[@]}" -lm -o "$OUT/fuzz_gguf"

echo "fuzz-gguf: running for ${TIME}s (seeds: tests/model/corpus/gguf, corpus: $OUT/corpus)"
set +e
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$OUT/fuzz_gguf" -max_total_time="$TIME" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=64 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/" \
    -dict=tests/model/fuzz_gguf.dict \
    "${EXTRA[@]}" "$OUT/corpus" tests/model/corpus/gguf 2>"$OUT/log.txt"
rc=$?
set -e
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus)' \
    "$OUT/log.txt" || true
if ((rc)); then
    tail -60 "$OUT/log.txt"
    echo "fuzz-gguf: FAILED (libFuzzer exit $rc); the input is in $OUT/artifacts/." >&2
    echo "fuzz-gguf: after fixing, copy it to tests/model/corpus/gguf/crash-<what>.gguf (see the" \
        "comment at the top of $0)." >&2
    exit 1
fi
echo "fuzz-gguf: no failures"
