#!/usr/bin/env python3
"""Cross-checks nvload's tokenizers against independent implementations, each rebuilt from the
GGUF file's own vocab:

- byte-level BPE against Hugging Face `tokenizers` (Rust), from the vocab and merges: gpt-2,
  llama-bpe and, when it is cached, SmolLM2-135M-Instruct with its "smollm" pre-tokenizer;
- SPM against Google's `sentencepiece`, from the pieces, scores and types: llama-spm and
  stories260K.

Each vocab tokenizes the 46 llama.cpp test strings plus seeded random strings that mix scripts,
digits, punctuation, contractions and odd whitespace; the ids must be identical. SmolLM2 is also
checked with a chat prompt whose control tokens are parsed as special.

The GGUF metadata is read by a small parser here (the `gguf` package's reader takes many seconds
on a 128k-token vocab), independent of nvload's C reader.

usage: test_tokenizer_pyref.py TOKENIZER_BATCH [SMOLLM2.gguf]
Exit 77 (skipped) when the Python packages are missing."""
import os
import random
import struct
import subprocess
import sys
import tempfile

try:
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2
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


# GGUF metadata value types (ggml docs/gguf.md) and the struct format of the fixed-size ones.
GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
                12: "d"}
GGUF_STRING, GGUF_ARRAY = 8, 9


def read_gguf_kv(path):
    """Returns the metadata of a little-endian GGUF v2/v3 file as {key: value}."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic, version, _n_tensors, n_kv = struct.unpack("<4sIQQ", head)
        assert magic == b"GGUF" and version in (2, 3), path
        data = f.read(64 << 20)  # metadata sits at the front; 64 MiB covers any vocab
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "surrogateescape")
        pos += n
        return s

    def value(t):
        nonlocal pos
        if t == GGUF_STRING:
            return string()
        if t == GGUF_ARRAY:
            et, n = take("I"), take("Q")
            if et == GGUF_STRING:
                return [string() for _ in range(n)]
            fmt = GGUF_SCALARS[et]
            out = list(struct.unpack_from(f"<{n}{fmt}", data, pos))
            pos += n * struct.calcsize(fmt)
            return out
        return take(GGUF_SCALARS[t])

    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("I"))
    return kv


def build_hf(kv):
    pre = kv["tokenizer.ggml.pre"]
    tokens = kv["tokenizer.ggml.tokens"]
    types = kv["tokenizer.ggml.token_type"]
    merges = []
    for m in kv["tokenizer.ggml.merges"]:
        i = m.index(" ", 1)
        merges.append((m[:i], m[i + 1:]))
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre == "llama-bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = hf_pre_tokenizer(pre)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == CONTROL])
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def build_sp(kv):
    """A SentencePiece BPE model with Llama's settings: byte fallback, a dummy "▁" prefix, spaces
    escaped, no whitespace folding, no normalization."""
    m = sentencepiece_model_pb2.ModelProto()
    m.trainer_spec.model_type = sentencepiece_model_pb2.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(kv["tokenizer.ggml.tokens"])
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = kv.get("tokenizer.ggml.unknown_token_id", 0)
    m.trainer_spec.bos_id = kv.get("tokenizer.ggml.bos_token_id", 1)
    m.trainer_spec.eos_id = kv.get("tokenizer.ggml.eos_token_id", 2)
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    # GGUF token types are SentencePiece's piece types.
    for piece, score, ty in zip(kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"],
                                kv["tokenizer.ggml.token_type"]):
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, ty
    sp = sentencepiece.SentencePieceProcessor(model_proto=m.SerializeToString())
    return sp.encode


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
    kv = read_gguf_kv(model)
    if kv["tokenizer.ggml.model"] == "llama":
        ref, ref_name = build_sp(kv), "sentencepiece"
    else:
        ref, ref_name = build_hf(kv), "Hugging Face tokenizers"
    got = ours(batch, model, texts, parse_special)
    bad = 0
    for text, ids in zip(texts, got):
        want = ref(text)
        if ids != want:
            bad += 1
            if bad <= 5:
                print(f"{name}: MISMATCH {text!r}\n  ours {ids}\n  ref  {want}")
    print(f"{name}: {len(texts) - bad}/{len(texts)} match {ref_name}")
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
    ok &= check("llama-spm", batch,
                os.path.join(shared, "models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"), texts)
    ok &= check("stories260K", batch, os.path.join(shared, "models/stories260K.gguf"), texts)
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
