#!/usr/bin/env python3
"""Cross-checks nvload's BPE tokenizer against Hugging Face `tokenizers` (an independent Rust
implementation), rebuilt from each GGUF file's own vocab and merges.

For every vocab (gpt-2, llama-bpe and, when it is cached, SmolLM2-135M-Instruct with its
"smollm" pre-tokenizer) this tokenizes the 46 llama.cpp test strings plus seeded random strings
that mix scripts, digits, punctuation, contractions and odd whitespace, with both implementations,
and requires identical ids. SmolLM2 is also checked with a chat prompt whose control tokens are
parsed as special.

usage: test_tokenizer_hf.py TOKENIZER_BATCH [SMOLLM2.gguf]
Exit 77 (skipped) when the Python packages are missing."""
import os
import random
import subprocess
import sys
import tempfile

try:
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
except ImportError as e:  # pragma: no cover
    print(f"skip: {e}")
    sys.exit(77)

SEP = "\n__ggml_vocab_test__\n"
CONTROL = 3

# The pre-tokenizers as the models' tokenizer.json files define them (not as llama.cpp does).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_pre_tokenizer(pre):
    if pre == "gpt-2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    if pre == "llama-bpe":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    raise ValueError(f"no Hugging Face pre-tokenizer for {pre}")


def field_str(r, key):
    f = r.fields[key]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def field_strs(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def build_hf(path):
    r = gguf.GGUFReader(path)
    pre = field_str(r, "tokenizer.ggml.pre")
    tokens = field_strs(r, "tokenizer.ggml.tokens")
    tf = r.fields["tokenizer.ggml.token_type"]
    types = [int(tf.parts[i][0]) for i in tf.data]
    merges = []
    for m in field_strs(r, "tokenizer.ggml.merges"):
        i = m.index(" ", 1)
        merges.append((m[:i], m[i + 1:]))
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre == "llama-bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = hf_pre_tokenizer(pre)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == CONTROL])
    return pre, tok


def random_strings(seed, n):
    rng = random.Random(seed)
    pieces = [
        "Hello", "world", " the", "The", "DON'T", "I'm", "you'll", "we've", "it's", "'s", "'",
        "12", "3", "2024", "1234567", "3.14", "0x1F", "a1b2", "¼", "١٢٣", "Ⅻ",
        " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009",
        "!", "?", "...", ",", ";", "(", ")", "[]", "{}", "->", "==", "#", "@", "$", "%", "&&",
        "é", "naïve", "Ærø", "Straße", "Ελληνικά", "русский", "中文", "日本語の", "한국어",
        "हिन्दी", "ไทย", "🦙", "😀😀", "👍🏽", "✅", "e\u0301", "\u200b", "\ufeff", "ﬁ",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(pieces) for _ in range(k)))
    return out


def ours(batch, model, texts, parse_special=False):
    with tempfile.NamedTemporaryFile("wb", suffix=".inp", delete=False) as f:
        for t in texts:
            f.write(t.encode("utf-8") + SEP.encode())
        name = f.name
    try:
        cmd = [batch, model, name] + (["--parse-special"] if parse_special else [])
        out = subprocess.run(cmd, check=True, capture_output=True).stdout.decode()
    finally:
        os.unlink(name)
    lines = out.split("\n")[:len(texts)]
    return [[int(x) for x in line.split()] for line in lines]


def check(name, batch, model, texts, parse_special=False):
    pre, hf = build_hf(model)
    got = ours(batch, model, texts, parse_special)
    bad = 0
    for text, ids in zip(texts, got):
        want = hf.encode(text, add_special_tokens=False).ids
        if ids != want:
            bad += 1
            if bad <= 5:
                print(f"{name}: MISMATCH {text!r}\n  ours {ids}\n  hf   {want}")
    print(f"{name} (pre={pre}): {len(texts) - bad}/{len(texts)} match Hugging Face tokenizers")
    return bad == 0


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    batch = sys.argv[1]
    smol = sys.argv[2] if len(sys.argv) > 2 else ""
    shared = os.environ.get("NVL_SHARED", "../shared")
    with open(os.path.join(shared, "models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf.inp"),
              encoding="utf-8") as f:
        vectors = f.read().split(SEP)[:-1]
    texts = vectors + random_strings(1234, 300)

    ok = True
    ok &= check("gpt-2", batch, os.path.join(shared, "models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"),
                texts)
    ok &= check("llama-bpe", batch,
                os.path.join(shared, "models/generated-vocab/ggml-vocab-llama-bpe.gguf"), texts)
    if smol and os.path.exists(smol):
        ok &= check("SmolLM2", batch, smol, texts)
        chat = ["<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                "<|im_start|>assistant\n",
                "<|endoftext|>x<|im_end|><|im_end|> <|im_start|>"]
        ok &= check("SmolLM2 chat", batch, smol, chat, parse_special=True)
    else:
        print("SmolLM2 GGUF not cached (scripts/fetch-model.sh); its check is skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
