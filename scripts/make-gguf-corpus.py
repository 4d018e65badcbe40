#!/usr/bin/env python3
"""Writes the seed corpus for the GGUF fuzz target (tests/model/corpus/gguf/).

usage: make-gguf-corpus.py [OUT_DIR] [STORIES260K.gguf]

Valid files come from the independent `gguf` package (every metadata type, every tensor type we
read, v2 and v3, several alignments, and a trimmed copy of stories260K's real metadata); malformed
files are built byte by byte, one defect each. Files are kept small (a few KiB) so that the fuzzer
mutates the structure, not bulk data. Crash inputs found by the fuzzer are added to the same
directory by hand (see scripts/fuzz-gguf.sh); this script never deletes files.
"""
import os
import struct
import sys

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT, GGUFValueType as VT

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests/model/corpus/gguf")
STORIES = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "..", "shared", "models", "stories260K.gguf")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1234)


def write_with(name, fill, alignment=None):
    path = os.path.join(OUT, name)
    w = gguf.GGUFWriter(path, "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def all_kv_types(w):
    w.add_uint8("k.u8", 1)
    w.add_int8("k.i8", -1)
    w.add_uint16("k.u16", 2)
    w.add_int16("k.i16", -2)
    w.add_uint32("k.u32", 3)
    w.add_int32("k.i32", -3)
    w.add_float32("k.f32", 0.5)
    w.add_bool("k.bool", True)
    w.add_string("k.str", "text")
    w.add_uint64("k.u64", 4)
    w.add_int64("k.i64", -4)
    w.add_float64("k.f64", 0.25)
    for vt in (VT.UINT8, VT.INT8, VT.UINT16, VT.INT16, VT.UINT32, VT.INT32, VT.FLOAT32, VT.BOOL,
               VT.UINT64, VT.INT64, VT.FLOAT64):
        vals = [True, False] if vt == VT.BOOL else [1, 2] if vt not in (VT.FLOAT32, VT.FLOAT64) else [0.5, 1.5]
        w.add_key_value(f"a.{vt.name.lower()}", vals, VT.ARRAY, sub_type=vt)
    w.add_array("a.string", ["x", "", "yz"])


def quant_tensors(w):
    for qt in (QT.F32, QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.Q2_K, QT.Q3_K,
               QT.Q4_K, QT.Q5_K, QT.Q6_K):
        bs, ts = GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, 2 * ts if bs > 1 else 2 * 256 * ts, dtype=np.uint8)
        w.add_tensor(f"t.{qt.name.lower()}", raw.reshape(2, -1), raw_dtype=qt)


write_with("valid-all-kv-types.gguf", all_kv_types)
write_with("valid-quant-tensors.gguf", quant_tensors)
write_with("valid-align-64.gguf", lambda w: (w.add_uint32("n", 1), w.add_tensor("w", np.ones((3, 32), np.float32))), alignment=64)
write_with("valid-align-1.gguf", lambda w: (w.add_tensor("a", np.ones(3, np.float32)), w.add_tensor("b", np.ones((2, 5), np.float32))), alignment=1)
write_with("valid-empty.gguf", lambda w: None)

# A v2 copy of a small file (the layout is the same; only the version differs).
data = bytearray(open(os.path.join(OUT, "valid-align-64.gguf"), "rb").read())
data[4:8] = struct.pack("<I", 2)
open(os.path.join(OUT, "valid-v2.gguf"), "wb").write(bytes(data))

# stories260K's real metadata with the vocab trimmed to 24 tokens and every tensor shrunk.
if os.path.exists(STORIES):
    r = gguf.GGUFReader(STORIES)

    def trimmed(w):
        for key, f in r.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            vt = f.types[0]
            val = f.contents()
            if vt == VT.ARRAY:
                w.add_key_value(key, val[:24], VT.ARRAY, sub_type=f.types[-1])
            else:
                w.add_key_value(key, val, vt)
        for t in r.tensors:
            shape = [min(int(n), 4 if i else 16) for i, n in enumerate(t.shape)]
            w.add_tensor(t.name, np.asarray(t.data).ravel()[: int(np.prod(shape))].reshape(shape[::-1]).astype(np.float32))

    write_with("valid-stories260k-trimmed.gguf", trimmed)
    # The real header alone: parses all metadata and tensor infos, then fails on the data.
    raw = open(STORIES, "rb").read()
    open(os.path.join(OUT, "bad-stories260k-header-only.gguf"), "wb").write(raw[:14176])


def hdr(version=3, n_tensors=0, n_kv=0, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv_u32(key, v):
    return s(key) + struct.pack("<II", VT.UINT32, v)


def tinfo(name, ne, ttype, offset):
    return s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", ttype, offset)


def pad(b, a=32):
    return b + b"\0" * (-len(b) % a)


bad = {
    "bad-magic.gguf": hdr(magic=b"GGML"),
    "bad-version-1.gguf": hdr(version=1),
    "bad-big-endian.gguf": b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
    "bad-kv-count.gguf": hdr(n_kv=2**62),
    "bad-tensor-count.gguf": hdr(n_tensors=2**40),
    "bad-kv-type.gguf": hdr(n_kv=1) + s("k") + struct.pack("<II", 99, 0),
    "bad-nested-array.gguf": hdr(n_kv=1) + s("k") + struct.pack("<IIQ", VT.ARRAY, VT.ARRAY, 1) + struct.pack("<IQ", VT.UINT8, 1) + b"\1",
    "bad-array-count.gguf": hdr(n_kv=1) + s("k") + struct.pack("<IIQ", VT.ARRAY, VT.UINT64, 2**60),
    "bad-string-array.gguf": hdr(n_kv=1) + s("k") + struct.pack("<IIQ", VT.ARRAY, VT.STRING, 3) + s("a") + struct.pack("<Q", 2**63),
    "bad-string-length.gguf": hdr(n_kv=1) + s("k") + struct.pack("<IQ", VT.STRING, 2**64 - 1),
    "bad-duplicate-key.gguf": hdr(n_kv=2) + kv_u32("k", 1) + kv_u32("k", 2),
    "bad-alignment.gguf": hdr(n_kv=1) + kv_u32("general.alignment", 24),
    "bad-n-dims.gguf": pad(hdr(n_tensors=1) + tinfo("w", [1, 1, 1, 1, 1], 0, 0)) + b"\0" * 32,
    "bad-tensor-type.gguf": pad(hdr(n_tensors=1) + tinfo("w", [32], 5, 0)) + b"\0" * 32,
    "bad-block-multiple.gguf": pad(hdr(n_tensors=1) + tinfo("w", [33], QT.Q8_0, 0)) + b"\0" * 64,
    "bad-ne-overflow.gguf": pad(hdr(n_tensors=1) + tinfo("w", [2**62, 2**62], 0, 0)) + b"\0" * 32,
    "bad-past-eof.gguf": pad(hdr(n_tensors=1) + tinfo("w", [64], 0, 0)) + b"\0" * 255,
    "bad-offset-unaligned.gguf": pad(hdr(n_tensors=1) + tinfo("w", [4], 0, 4)) + b"\0" * 64,
    "bad-overlap.gguf": pad(hdr(n_tensors=2) + tinfo("a", [64], 0, 0) + tinfo("b", [64], 0, 128)) + b"\0" * 512,
    "bad-duplicate-tensor.gguf": pad(hdr(n_tensors=2) + tinfo("a", [8], 0, 0) + tinfo("a", [8], 0, 32)) + b"\0" * 64,
    "bad-truncated-header.gguf": hdr(n_kv=1)[:20],
}
for name, b in bad.items():
    open(os.path.join(OUT, name), "wb").write(b)
print(f"wrote {len(os.listdir(OUT))} files to {OUT}")
