#!/usr/bin/env python3
"""Checks nvload's GGUF reader, writer and quant code against the independent `gguf` package.

usage: test_gguf_pyref.py TEST_GGUF_TOOL

1. Our type table (block size, bytes per block) equals gguf.constants.GGML_QUANT_SIZES.
2. A file written by our writer (every metadata type, arrays, tensors) is read by gguf.GGUFReader
   and every value is compared with what the C side wrote.
3. A file written by gguf.GGUFWriter is read by our reader (test_gguf_tool dump) and compared.
4. Dequantization of random blocks of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
   Q4_K, Q5_K and Q6_K equals gguf.quants.dequantize exactly.
5. Our quantizers: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16 produce the same bytes as
   gguf.quants.quantize (which reimplements ggml's reference quantizers); Q4_K and Q6_K (which the
   package cannot quantize) dequantize identically through the package and through our code.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT, GGUFValueType as VT
from gguf import quants

TOOL = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    return subprocess.run([TOOL, *args], check=True, capture_output=True, text=True).stdout


# ---- 1. type table ---------------------------------------------------------------------------

def test_types():
    ours = {}
    for line in run("types").splitlines():
        tid, name, bs, ts, _, _ = line.split()
        ours[int(tid)] = (name, int(bs), int(ts))
    for t, (bs, ts) in GGML_QUANT_SIZES.items():
        if t == QT.Q8_1:
            # gguf-py still lists the 2023 layout with fp32 d and s (40 bytes); ggml's block_q8_1
            # has fp16 d and s (36 bytes). Q8_1 is an activation format and never in files.
            check(ours[t.value][1:] == (32, 36), "q8_1 size")
            continue
        if t.value not in ours:
            check(False, f"type {t.name} ({t.value}) missing from our table")
            continue
        check(ours[t.value][1:] == (bs, ts), f"type {t.name}: ours {ours[t.value]} vs gguf {(bs, ts)}")
        check(ours[t.value][0].lower() == t.name.lower(), f"type {t.value} name {ours[t.value][0]} vs {t.name}")


# ---- 2. our writer -> gguf reader -------------------------------------------------------------

def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def test_writer(tmp):
    path = os.path.join(tmp, "ours.gguf")
    run("write-all", path)
    r = gguf.GGUFReader(path)
    f = r.fields

    def scalar(key, vtype):
        fld = f[key]
        check(fld.types == [vtype], f"{key}: type {fld.types}")
        return fld.parts[fld.data[0]][0]

    check(scalar("test.u8", VT.UINT8) == 250, "u8")
    check(scalar("test.i8", VT.INT8) == -120, "i8")
    check(scalar("test.u16", VT.UINT16) == 65000, "u16")
    check(scalar("test.i16", VT.INT16) == -32000, "i16")
    check(scalar("test.u32", VT.UINT32) == 4000000000, "u32")
    check(scalar("test.i32", VT.INT32) == -2000000000, "i32")
    check(scalar("test.f32", VT.FLOAT32) == np.float32(3.5), "f32")
    check(bool(scalar("test.bool", VT.BOOL)) is True, "bool")
    check(scalar("test.u64", VT.UINT64) == 18000000000000000000, "u64")
    check(scalar("test.i64", VT.INT64) == -9000000000000000000, "i64")
    check(scalar("test.f64", VT.FLOAT64) == 2.718281828459045, "f64")
    check(f["test.str"].contents() == "h\u00e9llo, world", "str")
    check(f["general.architecture"].contents() == "llama", "arch")
    check(f["general.alignment"].contents() == 64, "alignment kv")
    check(r.alignment == 64, f"reader alignment {r.alignment}")

    arrays = {
        "test.arr.u8": (VT.UINT8, [0, 1, 2, 255]),
        "test.arr.i8": (VT.INT8, [-128, -1, 0, 127]),
        "test.arr.u16": (VT.UINT16, [0, 1, 65535]),
        "test.arr.i16": (VT.INT16, [-32768, 0, 32767]),
        "test.arr.u32": (VT.UINT32, [0, 123456789, 4294967295]),
        "test.arr.i32": (VT.INT32, [-2147483648, 0, 2147483647]),
        "test.arr.f32": (VT.FLOAT32, [0.5, -1.25, float(np.float32(1e30))]),
        "test.arr.bool": (VT.BOOL, [True, False, False, True]),
        "test.arr.u64": (VT.UINT64, [0, 18446744073709551615]),
        "test.arr.i64": (VT.INT64, [-9223372036854775808, 9223372036854775807]),
        "test.arr.f64": (VT.FLOAT64, [0.1, -1e-300]),
        "test.arr.str": (VT.STRING, ["one", "", "tr\u00e8s", "<|im_start|>"]),
    }
    for key, (et, want) in arrays.items():
        fld = f[key]
        check(fld.types == [VT.ARRAY, et], f"{key}: types {fld.types}")
        got = fld.contents()
        if et == VT.BOOL:
            got = [bool(x) for x in got]
        check(list(got) == want, f"{key}: {got} != {want}")

    t = {x.name: x for x in r.tensors}
    check(sorted(t) == sorted(["t.f32", "t.f16", "t.bf16", "t.q8_0", "t.q4_k", "t.f32_3d"]), f"tensors {sorted(t)}")
    check(t["t.f32"].tensor_type == QT.F32 and list(t["t.f32"].shape) == [4, 3], "t.f32 info")
    check(np.array_equal(t["t.f32"].data.ravel(), np.arange(12, dtype=np.float32) * 0.25 - 1), "t.f32 data")
    check(np.array_equal(t["t.f16"].data.ravel(), f16(np.arange(16) - 7.5)), "t.f16 data")
    bf = np.frombuffer(t["t.bf16"].data.tobytes(), dtype=np.uint16).astype(np.uint32) << 16
    check(np.array_equal(bf.view(np.float32), np.arange(16, dtype=np.float32) * 1.5), "t.bf16 data")
    q8 = np.array([(i * 31 + 7) % 256 for i in range(4 * 34)], dtype=np.uint8)
    check(t["t.q8_0"].tensor_type == QT.Q8_0 and list(t["t.q8_0"].shape) == [64, 2], "t.q8_0 info")
    check(np.array_equal(t["t.q8_0"].data.ravel(), q8), "t.q8_0 data")
    q4k = np.array([(i * 17 + 3) % 256 for i in range(144)], dtype=np.uint8)
    check(np.array_equal(t["t.q4_k"].data.ravel(), q4k), "t.q4_k data")
    check(list(t["t.f32_3d"].shape) == [2, 3, 4], "t.f32_3d shape")
    check(np.array_equal(t["t.f32_3d"].data.ravel(), np.arange(24, dtype=np.float32)), "t.f32_3d data")
    for x in r.tensors:
        check(x.data_offset % 64 == 0, f"{x.name} data offset {x.data_offset} not 64-aligned")


# ---- 3. gguf writer -> our reader -------------------------------------------------------------

def test_reader(tmp):
    path = os.path.join(tmp, "theirs.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("k.u8", 7)
    w.add_int8("k.i8", -7)
    w.add_uint16("k.u16", 65535)
    w.add_int16("k.i16", -32768)
    w.add_uint32("k.u32", 4294967295)
    w.add_int32("k.i32", -5)
    w.add_float32("k.f32", 0.1)
    w.add_bool("k.bool", False)
    w.add_string("k.str", "sm\u00f8rrebr\u00f8d")
    w.add_uint64("k.u64", 2**64 - 1)
    w.add_int64("k.i64", -(2**63))
    w.add_float64("k.f64", 1e-310)
    w.add_key_value("k.arr.i16", [1, -2, 3], VT.ARRAY, sub_type=VT.INT16)
    w.add_key_value("k.arr.f64", [0.5, 0.25], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_array("k.arr.str", ["a", "bc", ""])
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 64)).astype(np.float32)
    w.add_tensor("w.f32", a)
    q = quants.quantize(a, QT.Q8_0)
    w.add_tensor("w.q8_0", q, raw_dtype=QT.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    kv, tensors, info = {}, {}, {}
    for line in run("dump", path).splitlines():
        parts = line.split(" ")
        if parts[0] == "kv":
            kv[parts[1]] = parts[2:]
        elif parts[0] == "tensor":
            tensors[parts[1]] = parts[2:]
        else:
            info[parts[0]] = parts[1]

    def fl(s):
        return float(s)

    def fl32(s):
        # The dump prints the shortest decimal that reads back as the same float32.
        return float(np.float32(s))

    check(info["version"] == "3" and info["alignment"] == "32", f"header {info}")
    check(kv["k.u8"] == ["uint8", "7"], f"k.u8 {kv['k.u8']}")
    check(kv["k.i8"] == ["int8", "-7"], "k.i8")
    check(kv["k.u16"] == ["uint16", "65535"], "k.u16")
    check(kv["k.i16"] == ["int16", "-32768"], "k.i16")
    check(kv["k.u32"] == ["uint32", "4294967295"], "k.u32")
    check(kv["k.i32"] == ["int32", "-5"], "k.i32")
    check(kv["k.f32"][0] == "float32" and kv["k.f32"][1] == "0.1" and fl32(kv["k.f32"][1]) == float(np.float32(0.1)), "k.f32")
    check(kv["k.bool"] == ["bool", "false"], "k.bool")
    check(kv["k.str"] == ["string", "sm\u00f8rrebr\u00f8d".encode().hex()], "k.str")
    check(kv["k.u64"] == ["uint64", str(2**64 - 1)], "k.u64")
    check(kv["k.i64"] == ["int64", str(-(2**63))], "k.i64")
    check(kv["k.f64"][0] == "float64" and fl(kv["k.f64"][1]) == 1e-310, "k.f64")
    check(kv["k.arr.i16"] == ["array", "int16", "3", "1", "-2", "3"], f"k.arr.i16 {kv['k.arr.i16']}")
    check(kv["k.arr.f64"][:3] == ["array", "float64", "2"] and [fl(x) for x in kv["k.arr.f64"][3:]] == [0.5, 0.25], "k.arr.f64")
    check(kv["k.arr.str"] == ["array", "string", "3", "x" + b"a".hex(), "x" + b"bc".hex(), "x"], f"k.arr.str {kv['k.arr.str']}")
    check(kv["general.architecture"] == ["string", b"llama".hex()], "arch")
    t = tensors["w.f32"]
    check(t[:3] == ["f32", "2", "64,3"] and bytes.fromhex(t[5]) == a.tobytes(), f"w.f32 {t[:5]}")
    t = tensors["w.q8_0"]
    check(t[:3] == ["q8_0", "2", "64,3"] and bytes.fromhex(t[5]) == q.tobytes(), f"w.q8_0 {t[:5]}")
    check(int(t[3]) % 32 == 0, "w.q8_0 offset aligned")


# ---- 4. dequantization ------------------------------------------------------------------------

# fp16 fields (byte offsets within a block) that hold scales/mins: they get finite random values.
FP16_FIELDS = {
    QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0],
    QT.Q2_K: [80, 82], QT.Q3_K: [108], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208],
}
N_BLOCKS = 512


def random_blocks(rng, qt):
    bs, ts = GGML_QUANT_SIZES[qt]
    if qt == QT.F32:
        v = (rng.standard_normal(N_BLOCKS) * np.exp(rng.uniform(-20, 20, N_BLOCKS))).astype(np.float32)
        return v.tobytes()
    if qt == QT.F16:
        bits = rng.integers(0, 65536, N_BLOCKS * 4, dtype=np.uint16)
        bits = bits[(bits & 0x7C00) != 0x7C00][:N_BLOCKS]  # finite values, subnormals included
        return bits.tobytes()
    if qt == QT.BF16:
        bits = rng.integers(0, 65536, N_BLOCKS * 4, dtype=np.uint16)
        bits = bits[(bits & 0x7F80) != 0x7F80][:N_BLOCKS]
        return bits.tobytes()
    raw = rng.integers(0, 256, (N_BLOCKS, ts), dtype=np.uint8)
    for off in FP16_FIELDS[qt]:
        # Scales spanning normal and subnormal fp16, both signs.
        mag = np.exp(rng.uniform(np.log(1e-7), np.log(8.0), N_BLOCKS))
        s = (mag * rng.choice([-1.0, 1.0], N_BLOCKS)).astype(np.float16)
        raw[:, off:off + 2] = s.view(np.uint8).reshape(N_BLOCKS, 2)
    return raw.tobytes()


def test_dequant(tmp):
    rng = np.random.default_rng(20250221)
    for qt in [QT.F32, QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0,
               QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K]:
        raw = random_blocks(rng, qt)
        src, dst = os.path.join(tmp, "blocks.bin"), os.path.join(tmp, "out.f32")
        with open(src, "wb") as fp:
            fp.write(raw)
        run("dequant", qt.name.lower(), src, dst)
        ours = np.fromfile(dst, dtype=np.float32)
        ref = quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qt).astype(np.float32).ravel()
        same = ours.shape == ref.shape and np.array_equal(ours, ref)
        if not same and ours.shape == ref.shape:
            bad = np.flatnonzero(ours != ref)
            print(f"  {qt.name}: {bad.size} of {ref.size} differ; first at {bad[0]}: ours {ours[bad[0]]!r} ref {ref[bad[0]]!r}")
        check(same, f"dequantize {qt.name} matches gguf.quants ({ref.size} values)")
        if same:
            print(f"ok: dequantize {qt.name}: {ref.size} values identical")


# ---- 5. quantization --------------------------------------------------------------------------

def test_values(rng, n):
    """Weight-like data of several shapes, including blocks that are zero or constant."""
    parts = [
        rng.standard_normal(n // 4) * 0.02,
        rng.uniform(-1, 1, n // 4),
        rng.standard_t(3, n // 4) * 0.05,  # heavy tails / outliers
        np.concatenate([np.zeros(256), np.full(256, 0.75), np.full(256, -3.0),
                        rng.standard_normal(n // 4 - 768) * 1e-3]),
    ]
    return np.concatenate(parts).astype(np.float32)


def test_quant(tmp):
    rng = np.random.default_rng(42)
    x = test_values(rng, 256 * 64)
    src, dst, deq = (os.path.join(tmp, n) for n in ("in.f32", "out.bin", "deq.f32"))
    x.tofile(src)
    for qt in [QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q4_K, QT.Q6_K]:
        run("quant", qt.name.lower(), src, dst)
        ours = np.fromfile(dst, dtype=np.uint8)
        bs, ts = GGML_QUANT_SIZES[qt]
        check(ours.size == x.size // bs * ts, f"quantize {qt.name}: size {ours.size}")
        if qt in (QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
            ref = np.ascontiguousarray(quants.quantize(x.reshape(-1, 256), qt)).view(np.uint8).ravel()
            same = np.array_equal(ours, ref)
            if not same:
                nb = np.flatnonzero(ours.reshape(-1, ts) != ref.reshape(-1, ts)).size
                print(f"  {qt.name}: bytes differ in {nb} places")
            check(same, f"quantize {qt.name} bytes equal gguf.quants.quantize")
        # Our dequantizer and the package's agree on what we produced.
        run("dequant", qt.name.lower(), dst, deq)
        mine = np.fromfile(deq, dtype=np.float32)
        theirs = quants.dequantize(ours, qt).astype(np.float32).ravel()
        check(np.array_equal(mine, theirs), f"quantize {qt.name}: our bytes dequantize identically in gguf")
        rmse = float(np.sqrt(np.mean((theirs - x) ** 2)))
        print(f"ok: quantize {qt.name}: rmse {rmse:.3g} (data rms {float(np.sqrt(np.mean(x ** 2))):.3g})")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_types()
        test_writer(tmp)
        test_reader(tmp)
        test_dequant(tmp)
        test_quant(tmp)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
