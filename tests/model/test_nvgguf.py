#!/usr/bin/env python3
"""Tests `nvgguf info` and `nvgguf quantize` end to end, checking the results with the
independent `gguf` package.

usage: test_nvgguf.py NVGGUF SHARED_DIR            (info and quantize on small models)
       test_nvgguf.py NVGGUF SHARED_DIR SMOLLM2.gguf  (requantize SmolLM2; exit 77 if absent)

- info prints the header, metadata and tensor table of stories260K, and fails cleanly (exit 1,
  message with the offset) on a truncated file.
- quantize: a small llama-shaped F32 model written by gguf.GGUFWriter is quantized to every
  supported type; for each, the tensor types follow the documented rules (1-D stays F32, the tied
  output gets Q6_K, fallbacks for rows that are not a multiple of the block), all metadata is
  copied, general.file_type is set, quantized bytes equal gguf.quants.quantize where the package
  can quantize, and the dequantized weights are within the format's expected error.
- usage errors exit 2 with a message.
- with the SmolLM2-135M-Instruct Q4_1 file: requantizing it to q8_0 and
  q4_K gives the tensor types llama.cpp would choose (its rows of 576 are not a multiple of 256,
  so those matrices fall back from q4_K to q5_0 and the tied embedding from q6_K to q8_0), copies
  all metadata, and stays within the formats' error of the Q4_1 weights.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import quants
from gguf.constants import GGMLQuantizationType as QT

NVGGUF, SHARED = sys.argv[1], sys.argv[2]
SMOLLM2 = sys.argv[3] if len(sys.argv) > 3 else ""
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def nvgguf(*args):
    return subprocess.run([NVGGUF, *args], capture_output=True, text=True)


def test_info(tmp):
    path = os.path.join(SHARED, "models", "stories260K.gguf")
    if not os.path.exists(path):
        print("skip: stories260K.gguf not found")
        return
    r = nvgguf("info", path)
    check(r.returncode == 0, f"info exit {r.returncode}: {r.stderr}")
    out = r.stdout
    check("GGUF v3, 1185376 bytes, 19 metadata keys, 48 tensors, alignment 32" in out, "info header")
    check("llama.embedding_length" in out and "uint32   64" in out, "info kv line")
    check('[string x 512] "<unk>", "<s>", "</s>"' in out, "info array summary")
    check("blk.4.ffn_down.weight" in out and "172 x 64" in out, "info tensor table")
    # Truncated copy: a clean error naming the offset, exit 1.
    data = open(path, "rb").read()
    bad = os.path.join(tmp, "truncated.gguf")
    with open(bad, "wb") as f:
        f.write(data[:5000])
    r = nvgguf("info", bad)
    check(r.returncode == 1 and "at offset 0x" in r.stderr, f"info on truncated file: {r.returncode} {r.stderr!r}")
    r = nvgguf("info")
    check(r.returncode == 2 and "usage" in r.stderr, "info without file")
    r = nvgguf("info", os.path.join(tmp, "missing.gguf"))
    check(r.returncode == 1 and "No such file" in r.stderr, f"info missing file: {r.stderr!r}")


N_EMBD, N_FF, N_VOCAB = 512, 768, 320


def make_model(path, rng, tied):
    """A 2-layer llama-shaped F32 model; one odd tensor with a row length of 100."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(2)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(8)
    w.add_context_length(256)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
    w.add_token_scores([float(i) for i in range(N_VOCAB)])
    w.add_key_value("test.bool_array", [True, False], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.BOOL)
    w.add_key_value("test.f64", 0.125, gguf.GGUFValueType.FLOAT64)
    tensors = {}

    def add(name, shape):  # shape in numpy order (rows, row length)
        a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        tensors[name] = a
        w.add_tensor(name, a)

    add("token_embd.weight", (N_VOCAB, N_EMBD))
    for l in range(2):
        add(f"blk.{l}.attn_norm.weight", (N_EMBD,))
        add(f"blk.{l}.attn_q.weight", (N_EMBD, N_EMBD))
        add(f"blk.{l}.ffn_up.weight", (N_FF, N_EMBD))
        add(f"blk.{l}.ffn_down.weight", (N_EMBD, N_FF))
        add(f"blk.{l}.odd.weight", (4, 100))
    add("output_norm.weight", (N_EMBD,))
    if not tied:
        add("output.weight", (N_VOCAB, N_EMBD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


# Expected output type per tensor role; FILE_TYPE is llama.cpp's llama_ftype.
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_K": 14, "q6_K": 18, "bf16": 32}


def noise_bound(a, fmt):
    """RMS error of an ideal uniform quantizer with the format's step on this data: step^2/12
    averaged over blocks. The step follows from the format: Q8_0 amax/127, Q4_0 amax/8,
    Q5_0 amax/16, Q4_1 (max-min)/15, Q5_1 (max-min)/31, Q4_K (max-min)/15 per 32 values,
    Q6_K amax/31.5 per 16; F16/BF16 round to 11/8 significant bits (relative 2^-11/sqrt(3))."""
    if fmt == "f32":
        return 0.0
    if fmt in ("f16", "bf16"):
        rel = 2.0 ** (-11 if fmt == "f16" else -8) / np.sqrt(3)
        return rel * float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
    size = {"q6_K": 16}.get(fmt, 32)
    b = a.reshape(-1, size).astype(np.float64)
    amax, lo, hi = np.abs(b).max(1), b.min(1), b.max(1)
    step = {"q8_0": amax / 127, "q4_0": amax / 8, "q5_0": amax / 16, "q4_1": (hi - lo) / 15,
            "q5_1": (hi - lo) / 31, "q4_K": (hi - np.minimum(lo, 0)) / 15, "q6_K": amax / 31.5}[fmt]
    return float(np.sqrt(np.mean(step ** 2 / 12)))


PY_QUANTIZABLE = {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}


def expected_type(name, want, tied):
    if name.endswith("_norm.weight"):
        return "f32"
    if name.endswith("odd.weight"):  # row length 100: no block fits
        return "f32" if want not in ("f16", "bf16") else want
    out = name == "output.weight" or (tied and name == "token_embd.weight")
    if out and want in ("q4_0", "q4_1", "q5_0", "q5_1", "q4_K"):
        return "q6_K"
    return want


def test_quantize(tmp):
    rng = np.random.default_rng(5)
    for tied in (False, True):
        src = os.path.join(tmp, f"model_tied{int(tied)}.gguf")
        orig = make_model(src, rng, tied)
        src_fields = gguf.GGUFReader(src).fields
        for want in FILE_TYPE:
            dst = os.path.join(tmp, f"out_{want}.gguf")
            r = nvgguf("quantize", "--threads", "2", src, dst, want)
            check(r.returncode == 0, f"quantize {want}: exit {r.returncode} {r.stderr}")
            if r.returncode:
                continue
            rd = gguf.GGUFReader(dst)
            for key, fld in src_fields.items():
                if key.startswith("GGUF.") or key in ("general.file_type",):
                    continue
                check(key in rd.fields and rd.fields[key].contents() == fld.contents(), f"{want}: metadata {key} copied")
            check(rd.fields["general.file_type"].contents() == FILE_TYPE[want], f"{want}: file_type")
            for t in rd.tensors:
                exp = expected_type(t.name, want, tied)
                got = t.tensor_type.name.lower().replace("_k", "_K")
                check(got == exp, f"{want} tied={tied}: {t.name} is {got}, expected {exp}")
                a = orig[t.name]
                y = quants.dequantize(t.data, t.tensor_type).reshape(a.shape)
                rmse = float(np.sqrt(np.mean((y.astype(np.float64) - a) ** 2)))
                bound = noise_bound(a, got)
                # Q4_0/Q5_0 cannot represent +amax (one step short) and fp16 scales add a little.
                check(rmse <= 1.05 * bound, f"{want}: {t.name} ({got}) rmse {rmse:.3g} > {bound:.3g}")
                if os.environ.get("VERBOSE"):
                    print(f"  {t.name} {got} rmse/bound {rmse / bound if bound else 0:.3f}")
                if got in PY_QUANTIZABLE:
                    ref = np.ascontiguousarray(quants.quantize(a, QT[got.upper()])).view(np.uint8).ravel()
                    check(np.array_equal(np.asarray(t.data).view(np.uint8).ravel(), ref), f"{want}: {t.name} bytes equal gguf.quants.quantize({got})")
            print(f"ok: quantize {want} (tied={tied}): {len(rd.tensors)} tensors, {os.path.getsize(dst)} bytes")

    # Errors.
    r = nvgguf("quantize", src, os.path.join(tmp, "x.gguf"), "q3_K")
    check(r.returncode == 2 and "unsupported type" in r.stderr, f"unsupported type: {r.returncode} {r.stderr!r}")
    r = nvgguf("quantize", src, src, "q8_0")
    check(r.returncode == 2 and "is the input file" in r.stderr, f"in == out: {r.stderr!r}")
    r = nvgguf("quantize", src, os.path.join(tmp, "no", "dir", "x.gguf"), "q8_0")
    check(r.returncode == 1 and "No such file" in r.stderr and not os.path.exists(os.path.join(tmp, "no")), f"bad output path: {r.stderr!r}")
    r = nvgguf("quantize", "--threads", "0", src, os.path.join(tmp, "x.gguf"), "q8_0")
    check(r.returncode == 2, "bad --threads")
    # A NaN in a weight is refused with the tensor and row, and no output is left behind.
    nan_src = os.path.join(tmp, "nan.gguf")
    w = gguf.GGUFWriter(nan_src, "llama")
    a = np.ones((3, 64), dtype=np.float32)
    a[2, 5] = np.nan
    w.add_tensor("blk.0.attn_q.weight", a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = os.path.join(tmp, "nan_out.gguf")
    r = nvgguf("quantize", nan_src, out, "q8_0")
    check(r.returncode == 1 and "'blk.0.attn_q.weight': row 2 has a NaN" in r.stderr and not os.path.exists(out), f"NaN input: {r.stderr!r}")


def test_smollm2(tmp):
    src = gguf.GGUFReader(SMOLLM2)
    src_t = {t.name: t for t in src.tensors}
    for want in ("q8_0", "q4_K"):
        dst = os.path.join(tmp, f"smollm2-{want}.gguf")
        r = nvgguf("quantize", SMOLLM2, dst, want)
        check(r.returncode == 0, f"smollm2 {want}: exit {r.returncode} {r.stderr}")
        if r.returncode:
            continue
        rd = gguf.GGUFReader(dst)
        for key, fld in src.fields.items():
            if not key.startswith("GGUF.") and key != "general.file_type":
                check(rd.fields[key].contents() == fld.contents(), f"smollm2 {want}: {key} copied")
        counts = {}
        for t in rd.tensors:
            s_t = src_t[t.name]
            got = t.tensor_type.name.lower().replace("_k", "_K")
            if len(t.shape) == 1:
                exp = "f32"
            elif t.name == "token_embd.weight":
                exp = "q8_0"  # tied output: q6_K wanted, 576 % 256 != 0 -> q8_0
            elif want == "q4_K" and int(t.shape[0]) % 256:
                exp = "q5_0"
            else:
                exp = want
            check(got == exp, f"smollm2 {want}: {t.name} is {got}, expected {exp}")
            counts[got] = counts.get(got, 0) + 1
            a = quants.dequantize(s_t.data, s_t.tensor_type).astype(np.float64)
            if got != s_t.tensor_type.name.lower().replace("_k", "_K"):
                y = quants.dequantize(t.data, t.tensor_type).astype(np.float64)
                rmse = float(np.sqrt(np.mean((y - a) ** 2)))
                bound = noise_bound(a.astype(np.float32).reshape(-1), got)
                check(rmse <= 1.05 * bound, f"smollm2 {want}: {t.name} ({got}) rmse {rmse:.3g} > {bound:.3g}")
        print(f"ok: smollm2 -> {want}: {counts}, {os.path.getsize(dst)} bytes")


def main():
    if SMOLLM2 and not os.path.exists(SMOLLM2):
        print(f"skip: {SMOLLM2} not present (scripts/fetch-model.sh fetches it)")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        if SMOLLM2:
            test_smollm2(tmp)
        else:
            test_info(tmp)
            test_quantize(tmp)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
