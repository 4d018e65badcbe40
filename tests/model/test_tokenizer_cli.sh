#!/usr/bin/env bash
# nvgguf tokenize / detokenize end to end: the stories260K prompt gives llama.cpp b4747's ids
# (read from the reference file), ids come back as the text, and bad input is refused with the
# documented exit codes.
# usage: test_tokenizer_cli.sh NVGGUF   (NVL_SHARED points at ../shared)
set -euo pipefail

NVGGUF=$1
MODELS=${NVL_SHARED:-../shared}/models
REF=$MODELS/reference-outputs/stories260K.llamacpp-b4747.ref.txt
STORIES=$MODELS/stories260K.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

prompt=$(sed -n 's/^# prompt: "\(.*\)".*/\1/p' "$REF")
want=$(sed -n 's/^prompt_ids: *//p' "$REF")
[ -n "$prompt" ] && [ -n "$want" ] || fail "cannot parse $REF"

# From stdin and from --file.
got=$(printf '%s' "$prompt" | "$NVGGUF" tokenize "$STORIES" --add-special)
[ "$got" = "$want" ] || fail "tokenize stdin: got '$got', want '$want'"
printf '%s' "$prompt" >"$TMP/prompt.txt"
got=$("$NVGGUF" tokenize "$STORIES" --file "$TMP/prompt.txt" --add-special)
[ "$got" = "$want" ] || fail "tokenize --file: got '$got', want '$want'"
echo "tokenize: '$prompt' -> $got"

# Back to text, ids from the arguments and from stdin (BOS hidden; SPM's leading space is kept
# after a BOS, as llama.cpp's detokenizer does).
ids_no_bos=${want#* }
# shellcheck disable=SC2086
text=$("$NVGGUF" detokenize "$STORIES" $ids_no_bos)
[ "$text" = "$prompt" ] || fail "detokenize args: got '$text'"
text=$(echo "$want" | "$NVGGUF" detokenize "$STORIES")
[ "$text" = " $prompt" ] || fail "detokenize stdin: got '$text'"
text=$(echo "$want" | "$NVGGUF" detokenize "$STORIES" --special)
[ "$text" = "<s> $prompt" ] || fail "detokenize --special: got '$text'"
echo "detokenize: ok"

# Errors: usage is exit 2, bad input exit 1, and nothing crashes.
set +e
"$NVGGUF" tokenize >/dev/null 2>&1
[ $? -eq 2 ] || fail "tokenize without a model should exit 2"
"$NVGGUF" detokenize "$STORIES" 512 >/dev/null 2>&1
[ $? -eq 1 ] || fail "an id outside the vocab should exit 1"
"$NVGGUF" detokenize "$STORIES" 12abc >/dev/null 2>&1
[ $? -eq 1 ] || fail "a malformed id should exit 1"
echo hi | "$NVGGUF" tokenize "$TMP/prompt.txt" >/dev/null 2>&1
[ $? -eq 1 ] || fail "a file that is not GGUF should exit 1"
set -e
echo "errors: ok"
