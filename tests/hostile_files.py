"""Craft hostile checkpoints byte by byte: a tiny pickle assembler and zip patchers (tests only, no torch).

`enc` turns plain values into protocol-2 opcodes; `Ops` marks bytes that already are opcodes, so a payload can sit
anywhere in an otherwise ordinary structure. The zip patchers rewrite fields of a written archive in place (flags,
method, sizes, CRC) the way a forger would.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from torch_zip import write_raw_zip


class Ops(bytes):
    """Bytes that are already pickle opcodes."""


def enc(x) -> bytes:
    if isinstance(x, Ops):
        return x
    if x is None:
        return b"N"
    if x is True or x is False:
        return b"\x88" if x else b"\x89"
    if isinstance(x, int):
        if -2**31 <= x < 2**31:
            return b"J" + struct.pack("<i", x)
        n = (x.bit_length() + 8) // 8
        return b"\x8a" + bytes([n]) + x.to_bytes(n, "little", signed=True)
    if isinstance(x, float):
        return b"G" + struct.pack(">d", x)
    if isinstance(x, str):
        raw = x.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(x, bytes):
        return b"B" + struct.pack("<I", len(x)) + x
    if isinstance(x, tuple):
        return b"(" + b"".join(map(enc, x)) + b"t"
    if isinstance(x, list):
        return b"]" + (b"(" + b"".join(map(enc, x)) + b"e" if x else b"")
    if isinstance(x, dict):
        return b"}" + (b"(" + b"".join(enc(k) + enc(v) for k, v in x.items()) + b"u" if x else b"")
    raise TypeError(type(x))


def glob(module: str, name: str) -> Ops:
    return Ops(b"c" + f"{module}\n{name}\n".encode())


def call(func, *args) -> Ops:
    return Ops(enc(func) + enc(tuple(args)) + b"R")


def build(obj, state) -> Ops:
    return Ops(enc(obj) + enc(state) + b"b")


def storage(key="0", numel=6, cls="FloatStorage", tag="storage") -> Ops:
    return Ops(enc((tag, glob("torch", cls), key, "cpu", numel)) + b"Q")


def tensor(key="0", numel=6, offset=0, size=(6,), stride=(1,), cls="FloatStorage", store=None) -> Ops:
    return call(glob("torch._utils", "_rebuild_tensor_v2"), store if store is not None else storage(key, numel, cls),
                offset, size, stride, False, call(glob("collections", "OrderedDict")))


def np_dtype(code="f4", state=(3, "<", None, None, None, -1, -1, 0)) -> Ops:
    made = call(glob("numpy", "dtype"), code, False, True)
    return build(made, state) if state is not None else made


def np_array(shape, dtype: Ops, raw, fortran=False) -> Ops:
    made = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), (0,), b"b")
    return build(made, (1, tuple(shape), dtype, fortran, raw))


def pkl(obj, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + enc(obj) + b"."


SIX = np.arange(6, dtype=np.float32).tobytes()


def checkpoint(path, obj, records=None, raw_pickle: bytes | None = None) -> Path:
    """A torch-layout zip whose data.pkl is pkl(obj) (or raw_pickle), with storage records (default '0': 6 floats)."""
    return write_raw_zip(path, raw_pickle if raw_pickle is not None else pkl(obj),
                         {"0": SIX} if records is None else records)


def _entries(data: bytes, name: str):
    """(central directory offset, local header offset) of member `name`."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n, m, k = struct.unpack("<HHH", data[at + 28:at + 34])
        if data[at + 46:at + 46 + n].decode() == name:
            return at, struct.unpack("<L", data[at + 42:at + 46])[0]
        at = data.find(b"PK\x01\x02", at + 46 + n + m + k)
    raise KeyError(name)


def patch_member(path, name: str, *, flags=None, method=None, crc=None, compress_size=None, file_size=None,
                 local: bool = True) -> None:
    """Rewrite fields of member `name` in the central directory (and its local header when `local`)."""
    data = bytearray(Path(path).read_bytes())
    cd, lh = _entries(bytes(data), name)
    for value, cd_off, lh_off, fmt in ((flags, 8, 6, "<H"), (method, 10, 8, "<H"), (crc, 16, 14, "<L"),
                                       (compress_size, 20, 18, "<L"), (file_size, 24, 22, "<L")):
        if value is not None:
            struct.pack_into(fmt, data, cd + cd_off, value)
            if local:
                struct.pack_into(fmt, data, lh + lh_off, value)
    Path(path).write_bytes(bytes(data))


def member_data_offset(path, name: str) -> int:
    data = Path(path).read_bytes()
    _, lh = _entries(data, name)
    n, m = struct.unpack("<HH", data[lh + 26:lh + 30])
    return lh + 30 + n + m


def patch_end_record(path, *, entries=None, cd_size=None) -> None:
    data = bytearray(Path(path).read_bytes())
    at = data.rfind(b"PK\x05\x06")
    if entries is not None:
        struct.pack_into("<HH", data, at + 8, entries, entries)
    if cd_size is not None:
        struct.pack_into("<L", data, at + 12, cd_size)
    Path(path).write_bytes(bytes(data))


def deflate_zeros(nbytes: int, chunk: int = 1 << 20) -> bytes:
    """A raw deflate stream of `nbytes` zeros in ~1/1000 of the size, without compressing them all: after a full
    flush deflate restarts byte-aligned, so one flushed chunk of zeros repeats verbatim."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (nbytes // chunk) + c.flush()


def zip_bomb(path, data_pkl: bytes, key: str, nbytes: int, crc: int = 0) -> Path:
    """A torch-layout zip whose record `key` inflates to `nbytes` zeros (CRC not computed unless given)."""
    write_raw_zip(path, data_pkl, {key: deflate_zeros(nbytes)})
    patch_member(path, f"archive/data/{key}", method=zipfile.ZIP_DEFLATED, file_size=nbytes, crc=crc)
    return Path(path)
