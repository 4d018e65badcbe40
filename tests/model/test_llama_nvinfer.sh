#!/usr/bin/env bash
# nvinfer end to end on stories260K: greedy text against the reference text (the text llama.cpp
# b4747 and llama2.c's run.c print for this model at temperature 0, quoted in
# ../shared/models/README.md), seeded sampling reproducible, -v / --benchmark reports, chat mode,
# and clear errors with non-zero exit codes for bad input.
# usage: test_llama_nvinfer.sh NVINFER SHARED_DIR
set -u
NVINFER=$1
SHARED=$2
M=$SHARED/models/stories260K.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

expected="Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
out=$("$NVINFER" -m "$M" -p "Once upon a time" -n 40 --temp 0 -t 2) || fail "greedy run failed"
[[ "$out" == "$expected"* ]] || fail "greedy text: '$out'"
echo "greedy: $out"

a=$("$NVINFER" -m "$M" -p "Once upon a time" -n 40 --seed 7 -t 1) || fail "sampled run failed"
b=$("$NVINFER" -m "$M" -p "Once upon a time" -n 40 --seed 7 -t 3) || fail "sampled run failed"
[[ "$a" == "$b" ]] || fail "seed 7 gave different text: '$a' vs '$b'"
echo "seed 7: $a"

"$NVINFER" -m "$M" -p "Once" -n 4 --temp 0 -v >/dev/null 2>"$TMP/v" || fail "-v run failed"
grep -q "backend: cpu" "$TMP/v" || fail "-v does not name the backend: $(cat "$TMP/v")"
grep -q "data path: weights mmap'd" "$TMP/v" || fail "-v does not name the data path"

"$NVINFER" -m "$M" --benchmark -n 16 -t 2 >"$TMP/bench" || fail "--benchmark failed"
for key in "prompt processing:.*tok/s" "generation:.*tok/s" "memcpy bandwidth:.*GB/s" \
    "bandwidth bound:.*tok/s"; do
    grep -q "$key" "$TMP/bench" || fail "--benchmark lacks '$key': $(cat "$TMP/bench")"
done

printf 'Hello\n/reset\nOnce upon a time\n' |
    "$NVINFER" -m "$M" -i --chat-template chatml -n 8 --temp 0 >"$TMP/chat" 2>&1 ||
    fail "chat failed: $(cat "$TMP/chat")"
[[ $(grep -c '^> ' "$TMP/chat") == 2 ]] || fail "chat did not answer two turns: $(cat "$TMP/chat")"

check_error() { # expected-status message-pattern args...
    local want=$1 pattern=$2
    shift 2
    "$NVINFER" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [[ $rc == "$want" ]] || fail "nvinfer $* exited $rc, expected $want"
    grep -q "$pattern" "$TMP/err" || fail "nvinfer $*: no '$pattern' in: $(cat "$TMP/err")"
}
check_error 1 "No such file" -m "$TMP/missing.gguf"
check_error 1 'not "GGUF"' -m "$0"
check_error 1 "missing tensor token_embd" -m "$SHARED/models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"
head -c 4096 "$M" >"$TMP/truncated.gguf"
check_error 1 "cannot load" -m "$TMP/truncated.gguf"
check_error 2 "no model given"
check_error 2 "not a number" -m "$M" --temp abc
check_error 2 "no chat template" -m "$M" -i
check_error 2 "context holds" -m "$M" -c 2 -p "Once upon a time"
"$NVINFER" --help | grep -q "usage: nvinfer" || fail "--help"
echo "nvinfer: all checks passed"
