"""nvgguf pack and nvload-setup write checked with independent readers.

The packed GGUF is read with the `gguf` PyPI package (llama.cpp's reader): every tensor 4 KiB
aligned, globals first then blk.0, blk.1, ... each layer one contiguous run of tensors, every
tensor byte-identical to the source and all metadata equal but general.alignment.

The drive image that `nvload-setup write --sim` lays onto a file is parsed here from the byte
layout in docs/disk-layout.md, with a CRC32C written here from the polynomial: header CRC, table
CRC, every extent's CRC, the extents tiling the GGUF, and the GGUF on the drive identical to what
nvgguf pack makes of the same model.

usage: test_pack_pyref.py NVGGUF NVLOAD_SETUP SHARED_DIR [MORE_MODELS...]
"""
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def layer_of(name):
    m = re.match(r"blk\.(0|[1-9][0-9]*)\.", name)
    return int(m.group(1)) if m else -1


def field_value(f):
    return [bytes(np.asarray(f.parts[i]).tobytes()) for i in f.data], list(f.types)


def check_packed(src_path, packed_path):
    src, out = GGUFReader(src_path), GGUFReader(packed_path)
    assert out.alignment == 4096, out.alignment
    assert int(out.fields["general.alignment"].parts[-1][0]) == 4096

    skeys = [k for k in src.fields if k not in ("general.alignment",) and not k.startswith("GGUF.")]
    okeys = [k for k in out.fields if k not in ("general.alignment",) and not k.startswith("GGUF.")]
    assert skeys == okeys, (skeys, okeys)
    for k in skeys:
        assert field_value(src.fields[k]) == field_value(out.fields[k]), k

    by_name = {t.name: t for t in src.tensors}
    assert len(out.tensors) == len(src.tensors)
    layers = [layer_of(t.name) for t in out.tensors]
    assert layers == sorted(layers), "tensors are not ordered globals first, then by layer"
    # Within a layer (and among the globals) the source order is kept.
    src_index = {t.name: i for i, t in enumerate(src.tensors)}
    for a, b in zip(out.tensors, out.tensors[1:]):
        if layer_of(a.name) == layer_of(b.name):
            assert src_index[a.name] < src_index[b.name], (a.name, b.name)
    prev_end = 0
    for t in out.tensors:
        assert t.data_offset % 4096 == 0, (t.name, t.data_offset)
        assert t.data_offset >= prev_end, t.name  # stored in order, so layers are contiguous
        prev_end = t.data_offset + t.n_bytes
        s = by_name[t.name]
        assert s.tensor_type == t.tensor_type and list(s.shape) == list(t.shape), t.name
        assert s.n_bytes == t.n_bytes, t.name
        assert np.array_equal(np.asarray(s.data).view(np.uint8).reshape(-1),
                              np.asarray(t.data).view(np.uint8).reshape(-1)), t.name
    print(f"{os.path.basename(src_path)}: {len(out.tensors)} tensors packed, "
          f"{max(layers) + 1} layers, metadata and data identical")


def check_image(img_path, packed_path):
    with open(img_path, "rb") as f:
        img = f.read()
    h = img[:4096]
    assert h[:8] == b"NVLOADIM", h[:8]
    (version, header_bytes, flags, lba_size, gguf_off, gguf_bytes, table_off, n_ext, ext_bytes,
     table_crc, n_layers, created, data_off, align) = struct.unpack_from("<IIIIQQQIIIIQQI", h, 8)
    assert (version, header_bytes, ext_bytes) == (1, 4096, 32)
    assert flags & 1, "the image is not marked complete"
    assert struct.unpack_from("<I", h, 4092)[0] == crc32c(h[:4092]), "header CRC"
    name = h[88:344].split(b"\0")[0].decode()
    arch = h[344:376].split(b"\0")[0].decode()
    table = img[table_off:table_off + 32 * n_ext]
    assert crc32c(table) == table_crc, "table CRC"
    gguf = img[gguf_off:gguf_off + gguf_bytes]
    with open(packed_path, "rb") as f:
        assert gguf == f.read(), "the GGUF on the drive is not what nvgguf pack makes"
    at, layers = 0, 0
    for i in range(n_ext):
        off, size, crc, kind, layer, res = struct.unpack_from("<QQIIII", table, 32 * i)
        assert off == at and size > 0 and res == 0, i
        assert kind == (1 if i == 0 else kind) and kind in (1, 2, 3), (i, kind)
        assert (layer != 0xFFFFFFFF) == (kind == 3), (i, layer)
        assert crc32c(gguf[off:off + size]) == crc, f"extent {i} CRC"
        at += size
        layers += kind == 3
    assert at == gguf_bytes and layers == n_layers
    print(f"{os.path.basename(img_path)}: '{name}' ({arch}), {n_ext} extents, "
          f"{n_layers} layers, every CRC32C matches")


def main():
    nvgguf, setup, shared = sys.argv[1:4]
    models = [os.path.join(shared, "models", "stories260K.gguf")] + sys.argv[4:]
    with tempfile.TemporaryDirectory() as tmp:
        for i, m in enumerate(models):
            if not os.path.exists(m):
                print(f"SKIP: {m} is missing")
                sys.exit(77)
            packed = os.path.join(tmp, f"packed{i}.gguf")
            subprocess.run([nvgguf, "pack", m, packed], check=True)
            check_packed(m, packed)
            # Packing a packed file changes nothing.
            again = os.path.join(tmp, f"again{i}.gguf")
            subprocess.run([nvgguf, "pack", packed, again], check=True)
            with open(packed, "rb") as a, open(again, "rb") as b:
                assert a.read() == b.read(), "pack is not idempotent"
            assert subprocess.run([nvgguf, "pack", "--check", packed]).returncode == 0
            assert subprocess.run([nvgguf, "pack", "--check", m]).returncode == 1
        img = os.path.join(tmp, "drive.img")
        with open(img, "wb") as f:
            f.truncate(8 << 20)
        subprocess.run([setup, "write", "--yes", "--sim", f"file={img},lba=4096", models[0]],
                       check=True)
        check_image(img, os.path.join(tmp, "packed0.gguf"))


if __name__ == "__main__":
    main()
