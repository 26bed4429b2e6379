"""Write checkpoints in torch.save's zip layout without torch, so tests can craft good and hostile `.pth` files.

Arrays are pickled as torch does (`torch._utils._rebuild_tensor_v2` over a persistent storage record); the torch
globals are stand-ins registered in sys.modules only while pickling, then removed.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np

_STORAGE_NAMES = {"float32": "FloatStorage", "float16": "HalfStorage", "int64": "LongStorage",
                  "float64": "DoubleStorage", "int32": "IntStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}


class BFloat16:
    """Wraps raw bfloat16 bits (uint16 array) so the writer stores them under torch.BFloat16Storage."""

    def __init__(self, bits: np.ndarray):
        self.bits = np.require(bits, dtype=np.uint16, requirements="C")


@contextlib.contextmanager
def _fake_torch():
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in list(_STORAGE_NAMES.values()) + ["BFloat16Storage"]:
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch, utils
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


class _Tensor:
    def __init__(self, storage, shape, rebuild):
        self.storage, self.shape, self.rebuild = storage, shape, rebuild

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:], dtype=np.int64)) for i in range(len(self.shape)))
        return self.rebuild, (self.storage, 0, tuple(self.shape), stride, False, {})


class _StorageRef:
    def __init__(self, cls, key, raw, numel):
        self.cls, self.key, self.raw, self.numel = cls, key, raw, numel


def write_torch_zip(path, obj, archive_name: str = "archive") -> Path:
    """Save `obj` (dicts/lists/scalars with numpy arrays or BFloat16 leaves) as torch.save would."""
    path = Path(path)
    records: dict[str, bytes] = {}
    with _fake_torch() as (torch, utils):
        def convert(value):
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(convert(v) for v in value)
            if isinstance(value, BFloat16):
                cls, arr = torch.BFloat16Storage, value.bits
            elif isinstance(value, np.ndarray):
                arr = np.require(value, requirements="C")
                cls = getattr(torch, _STORAGE_NAMES[str(arr.dtype)])
            else:
                return value
            key = str(len(records))
            records[key] = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            return _Tensor(_StorageRef(cls, key, records[key], arr.size), arr.shape, utils._rebuild_tensor_v2)

        converted = convert(obj)
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=2)
        pickler.persistent_id = lambda o: (("storage", o.cls, o.key, "cpu", o.numel)
                                           if isinstance(o, _StorageRef) else None)
        pickler.dump(converted)
    write_raw_zip(path, buffer.getvalue(), records, archive_name)
    return path


def write_raw_zip(path, data_pkl: bytes, records: dict[str, bytes] | None = None, archive_name: str = "archive"
                  ) -> Path:
    """A zip with torch's layout around any pickle bytes (used to craft hostile checkpoints)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{archive_name}/data.pkl", data_pkl)
        zf.writestr(f"{archive_name}/byteorder", "little")
        for key, raw in (records or {}).items():
            zf.writestr(f"{archive_name}/data/{key}", raw)
        zf.writestr(f"{archive_name}/version", "3\n")
    return Path(path)
