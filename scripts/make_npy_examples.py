#!/usr/bin/python3
"""Writes the example files of formats/npy.md into formats/examples/npy/{valid,invalid}/.

Run once from the repository root (/usr/bin/python3 has numpy; `zstd` must be on PATH):
    /usr/bin/python3 scripts/make_npy_examples.py
The files are committed; tests/unit/libcommon/test_npy.cpp feeds them to ks::read_npy. Every
invalid file is explained in formats/examples/npy/README.md.
"""
import io
import os
import struct
import subprocess
import sys

import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "formats", "examples", "npy")


def save(path, array, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array(buf, array, version=version)
    write(path, buf.getvalue())


def write(path, data):
    with open(os.path.join(OUT, path), "wb") as f:
        f.write(data)


def raw_npy(header_dict, data=b"", version=(1, 0), header_len=None):
    """A .npy built by hand, so broken headers can be written."""
    text = header_dict.encode("latin1")
    prefix = 10 if version[0] == 1 else 12
    text += b" " * (-(prefix + len(text) + 1) % 64) + b"\n"
    n = len(text) if header_len is None else header_len
    size = struct.pack("<H", n) if version[0] == 1 else struct.pack("<I", n)
    return b"\x93NUMPY" + bytes(version) + size + text + data


def zstd(data, *args):
    return subprocess.run(["zstd", "-q", "-c", *args], input=data, stdout=subprocess.PIPE, check=True).stdout


def main():
    for sub in ("valid", "invalid"):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)

    f4 = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 4
    save("valid/float32_3x4.npy", f4)
    save("valid/int16_5.npy", np.array([-32768, -1, 0, 1, 32767], dtype="<i2"))
    save("valid/uint8_2x2x3.npy", np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    save("valid/bool_4.npy", np.array([True, False, False, True]))
    save("valid/float16_3.npy", np.array([1.0, -2.0, 65504.0], dtype="<f2"))
    save("valid/int64_0x5.npy", np.zeros((0, 5), dtype="<i8"))
    save("valid/float64_scalar.npy", np.float64(2.5))
    save("valid/uint32_v2.npy", np.array([1, 2, 3], dtype="<u4"), version=(2, 0))
    save("valid/int32_v3.npy", np.array([[7, 8]], dtype="<i4"), version=(3, 0))
    buf = io.BytesIO()
    np.save(buf, f4)
    write("valid/float32_3x4.npy.zst", zstd(buf.getvalue()))

    good = buf.getvalue()
    write("invalid/empty.npy", b"")
    write("invalid/bad_magic.npy", b"\x93NUMPZ" + good[6:])
    write("invalid/version_4_0.npy", good[:6] + b"\x04\x00" + good[8:])
    save("invalid/big_endian.npy", np.arange(3, dtype=">f4"))
    save("invalid/fortran_order.npy", np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
    save("invalid/complex64.npy", np.zeros(2, dtype="<c8"))
    save("invalid/structured.npy", np.zeros(2, dtype=[("t", "<i8"), ("amp", "<f4")]))
    write("invalid/missing_shape.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, }", b"\0" * 4))
    write("invalid/not_a_dict.npy", raw_npy("['<f4', False, (1,)]", b"\0" * 4))
    write("invalid/negative_shape.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"))
    write("invalid/shape_not_tuple.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", b"\0" * 12))
    write("invalid/header_too_long.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                                                 b"\0" * 4, header_len=4000))
    write("invalid/truncated.npy", good[:-4])
    write("invalid/trailing_bytes.npy", good + b"\0\0\0")
    compressed = zstd(good)
    write("invalid/truncated.npy.zst", compressed[: len(compressed) // 2])
    write("invalid/not_zstd.npy.zst", good)
    write("invalid/two_frames.npy.zst", compressed + zstd(b"more"))


if __name__ == "__main__":
    main()
