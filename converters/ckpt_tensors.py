"""The tensors of a checkpoint's state dict, read from the storages its pickle declared (converters.ckpt_pickle).

A storage is read once into a buffer of exactly its declared size; a tensor that is its whole storage is a view of
it, any other view is copied under the read's byte budget and may copy at most what the storages hold.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.ckpt_archive import Archive, Budget
from converters.ckpt_pickle import StorageRef, TensorRef
from converters.errors import CheckpointError


def _contiguous_strides(size: tuple) -> tuple:
    strides, step = [], 1
    for s in reversed(size):
        strides.append(step)
        step *= s
    return tuple(reversed(strides))


class TensorReader:
    """Storages read on demand (each once) and the tensors of the state dict made from them."""

    def __init__(self, path: Path, archive: Archive, byteorder: str, budget: Budget):
        self.path, self.archive, self.byteorder, self.budget = path, archive, byteorder, budget
        self.arrays: dict[str, np.ndarray] = {}
        self.read_bytes = self.copied_bytes = 0  # views may copy at most what the storages hold

    def storage_array(self, ref: StorageRef) -> np.ndarray:
        if ref.key in self.arrays:
            return self.arrays[ref.key]
        buf = self.archive.read(ref.record, expected_size=ref.numel * ref.itemsize)
        self.read_bytes += len(buf)
        code = "u2" if ref.dtype == "bf16" else "u1" if ref.dtype == "?" else ref.dtype
        array = np.frombuffer(buf, dtype=np.dtype(code))
        if self.byteorder != ("little" if np.little_endian else "big") and array.dtype.itemsize > 1:
            array.byteswap(inplace=True)  # in the bytearray we own: no second copy
        if ref.dtype == "?":
            np.minimum(array, 1, out=array)  # bools are 0/1 in numpy; any other byte would be a new value
            array = array.view(np.bool_)
        self.arrays[ref.key] = array
        return array

    def materialise(self, tensor: TensorRef) -> np.ndarray:
        ref = tensor.storage
        flat = self.storage_array(ref)
        size = tensor.size
        numel = int(np.prod(size, dtype=np.int64)) if size else 1
        whole = tensor.offset == 0 and numel == flat.size and all(
            st == cs for s, st, cs in zip(size, tensor.stride, _contiguous_strides(size)) if s > 1)
        if numel == 0:
            out = np.zeros(size, dtype=flat.dtype)
        elif whole:  # the common case: a tensor is its whole storage, so it is a view of it (no copy)
            out = flat.reshape(size)
        else:  # geometry was checked against the storage when the pickle declared it
            nbytes = numel * flat.dtype.itemsize
            self.copied_bytes += nbytes
            if self.copied_bytes > max(self.read_bytes, 1 << 20):
                raise CheckpointError(f"{self.path}: tensor views would copy {self.copied_bytes} bytes out of "
                                      f"{self.read_bytes} bytes of storage (overlapping views amplify memory; "
                                      f"refused)")
            self.budget.take(nbytes, f"a {size} view of storage '{ref.key}'")
            item = flat.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(flat[tensor.offset:], shape=size,
                                                   strides=tuple(st * item for st in tensor.stride),
                                                   writeable=False)
            out = np.array(view, copy=True)
        if ref.dtype == "bf16":
            self.budget.take(numel * 4, f"widening bf16 tensor {size}")
            wide = out.astype(np.uint32)
            wide <<= 16
            out = wide.view(np.float32)
        return out
