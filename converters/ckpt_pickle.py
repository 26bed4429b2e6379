"""What a checkpoint's pickle may name: inert stand-ins for the torch, numpy and OpenMMLab globals it mentions, and
the references to storages and tensors it declares. Nothing here imports those libraries or reads tensor data: a
storage is only a record of the archive whose declared size was checked, a tensor only a checked view of one.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from converters.ckpt_archive import Archive, Budget
from converters.errors import CheckpointError
from converters.safe_pickle import Buildable, PickleRefused, SafeCall, SafeClass, describe

# torch storage classes -> numpy dtype of one element (bf16 read as uint16 bits and widened later).
_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}
_TORCH_DTYPES = {"float32": "f4", "float": "f4", "float64": "f8", "double": "f8", "float16": "f2",
                 "half": "f2", "bfloat16": "bf16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4",
                 "int16": "i2", "int8": "i1", "uint8": "u1", "bool": "?"}
# numpy arrays and scalars in metadata: plain numbers only (no structured, string, void or object dtypes).
_NUMPY_CODES = {"b1", "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}
# Namespaces whose classes may appear in training metadata; they become inert placeholders, never imported.
_INERT_NAMESPACES = ("mmengine", "mmcv", "mmpose", "mmdet")
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # names protocol-2 pickles may use
_RECORD_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_INDEX = 1 << 48  # sizes, strides and offsets beyond this are not real tensors (and would overflow int64)


class _Marker:
    """A name the pickle may mention but never call: a storage class, a torch dtype, numpy.ndarray, torch.Tensor."""

    def __init__(self, name: str, dtype: str | None = None):
        self.name, self.dtype = name, dtype


_NDARRAY = _Marker("numpy.ndarray")
_TENSOR_TYPES = (_Marker("torch.Tensor"), _Marker("torch.nn.parameter.Parameter"))


class StorageRef:
    """A storage the archive declares: its record checked (exists, right size) but not read."""

    def __init__(self, key: str, dtype: str, numel: int, record: str):
        self.key, self.dtype, self.numel, self.record = key, dtype, numel, record

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize


class TensorRef:
    """A tensor of a declared storage with checked geometry; read only if it is in the state dict."""

    def __init__(self, storage: StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Inert(Buildable):
    """A metadata object of the training loop: swallows construction and state, runs nothing."""

    def __init__(self, qualname: str):
        self.name = f"an inert {qualname}"

    def build(self, state):
        return None


class _InertClass(SafeClass):
    def __init__(self, qualname: str):
        self.name = qualname

    def new(self, args, kwargs):
        return _Inert(self.name)


class _OrderedDict(dict, Buildable):
    """OrderedDict as a plain dict (keeps insertion order); its pickled state (`_metadata`) is dropped."""

    def build(self, state):
        return None


class _Dtype(Buildable):
    """numpy.dtype(code) limited to plain numbers; BUILD may set only the byte order (fields are refused)."""

    def __init__(self, code):
        if not isinstance(code, str) or code.lstrip("<>=|") not in _NUMPY_CODES:
            raise PickleRefused(f"refused numpy dtype {describe(code)} (only plain numeric dtypes are read)")
        self.code, self.order = code.lstrip("<>=|"), code[0] if code[0] in "<>=|" else "="

    def build(self, state):
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise PickleRefused("refused numpy dtype state of unexpected form")
        order, subarray, names, fields = state[1:5]
        if subarray is not None or names is not None or fields is not None or (len(state) == 9 and state[8]):
            raise PickleRefused("refused numpy dtype with fields, offsets, subarrays or metadata")
        if order not in ("<", ">", "=", "|"):
            raise PickleRefused(f"refused numpy dtype byte order {describe(order)}")
        self.order = order
        return None

    def resolve(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.order) if self.order in "<>" and dtype.itemsize > 1 else dtype


class UnbuiltNumpyArray(Buildable):
    """numpy's _reconstruct before its state arrives; becomes an array only from validated plain bytes."""

    name = "a numpy array without data"

    def __init__(self, budget: Budget):
        self.budget = budget

    def build(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise PickleRefused("refused numpy array state of unexpected form")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _Dtype):
            raise PickleRefused("refused numpy array whose dtype was not built from a plain numeric code")
        if not isinstance(shape, tuple) or len(shape) > 32 or not all(_is_index(s) for s in shape):
            raise PickleRefused("refused numpy array with an invalid shape")
        raw = raw.encode("latin1") if isinstance(raw, str) else raw
        dt = dtype.resolve()
        numel = math.prod(shape)
        if not isinstance(raw, bytes) or len(raw) != numel * dt.itemsize:
            raise PickleRefused(f"refused numpy array of shape {shape}: its data is not exactly "
                                f"{numel} x {dt.itemsize} bytes")
        self.budget.take(len(raw), f"a numpy array of {len(raw)} bytes in the pickle")
        flat = np.frombuffer(bytearray(raw), dtype=dt)
        return flat.reshape(shape, order="F" if fortran else "C")


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_INDEX


class Vocabulary:
    """The stand-ins the checkpoint pickle may use, and the storages and tensors it declares (none read here)."""

    def __init__(self, path: Path, archive: Archive, prefix: str, max_dims: int, max_metadata_bytes: int):
        self.path, self.archive, self.prefix, self.max_dims = path, archive, prefix, max_dims
        self.made = Budget(str(path), max_metadata_bytes, "metadata is never this large")
        self.storages: dict[str, StorageRef] = {}
        rebuild = SafeCall("torch._utils._rebuild_tensor_v2", self.rebuild_tensor)
        self.rebuilders = {rebuild, SafeCall("torch._utils._rebuild_tensor", self.rebuild_tensor)}
        self.rebuilders.add(SafeCall("torch._utils._rebuild_parameter", self.rebuild_parameter))
        self.rebuilders.add(SafeCall("torch._utils._rebuild_parameter_with_state", self.rebuild_parameter))
        self.allowed = {tuple(c.name.rsplit(".", 1)): c for c in self.rebuilders}
        for c in (SafeCall("collections.OrderedDict", self.ordered_dict),
                  SafeCall("torch._tensor._rebuild_from_type_v2", self.rebuild_from_type),
                  SafeCall("_codecs.encode", self.codecs_encode),
                  SafeCall("numpy.dtype", self.np_dtype),
                  SafeCall("numpy.core.multiarray._reconstruct", self.np_reconstruct),
                  SafeCall("numpy._core.multiarray._reconstruct", self.np_reconstruct),
                  SafeCall("numpy.core.multiarray.scalar", self.np_scalar),
                  SafeCall("numpy._core.multiarray.scalar", self.np_scalar),
                  SafeCall("builtins.set", lambda items=(): self.charged(set, items)),
                  SafeCall("builtins.frozenset", lambda items=(): self.charged(frozenset, items)),
                  SafeCall("copyreg._reconstructor", self.reconstructor),
                  SafeCall("copyreg.__newobj__", self.newobj),
                  SafeCall("torch.device", lambda *a: "device"),
                  SafeCall("torch.Size", lambda items=(): self.charged(tuple, items))):
            self.allowed[tuple(c.name.rsplit(".", 1))] = c
        for m in (_NDARRAY, *_TENSOR_TYPES):
            self.allowed[tuple(m.name.rsplit(".", 1))] = m
        self.allowed[("builtins", "object")] = _Marker("builtins.object")

    # -- globals and persistent ids -------------------------------------------------------------------------
    def resolve(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _Marker(f"torch.{name}", _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _Marker(f"torch.{name}", _TORCH_DTYPES[name])
        if module.split(".")[0] in _INERT_NAMESPACES and name[:1].isupper() and name.isidentifier():
            return _InertClass(f"{module}.{name}")
        raise PickleRefused(f"refused to load global '{module[:80]}.{name[:80]}' from the checkpoint pickle "
                            f"(only tensors and plain containers are allowed; nothing was run)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise PickleRefused(f"unsupported persistent id in the checkpoint pickle ({describe(pid)})")
        _, marker, key, _location, numel = pid[:5]
        if not isinstance(marker, _Marker) or marker.dtype is None:
            raise PickleRefused(f"storage of unknown type {describe(marker)}")
        if not isinstance(key, str) or not _RECORD_KEY.fullmatch(key):
            raise PickleRefused(f"storage key {describe(key)} is not a record name")
        if not _is_index(numel):
            raise PickleRefused(f"storage '{key}' declares {describe(numel)} elements")
        known = self.storages.get(key)
        if known is not None:
            if (known.dtype, known.numel) != (marker.dtype, numel):
                raise PickleRefused(f"storage '{key}' is declared twice with different types or sizes")
            return known
        ref = StorageRef(key, marker.dtype, numel, f"{self.prefix}data/{key}")  # untyped: numel is bytes
        try:
            self.archive.check(ref.record, expected_size=numel * ref.itemsize)
        except CheckpointError as exc:  # already names the file; the pickle layer adds its position
            raise PickleRefused(str(exc).removeprefix(f"{self.path}: ")) from None
        self.storages[key] = ref
        return ref

    # -- torch stand-ins ------------------------------------------------------------------------------------
    def rebuild_tensor(self, storage, offset, size, stride, *_ignored):
        if not isinstance(storage, StorageRef):
            raise PickleRefused(f"tensor rebuilt from {describe(storage)}, not a storage")
        if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
            raise PickleRefused("tensor size or stride is not a tuple")
        size, stride = tuple(size), tuple(stride)
        if (not _is_index(offset) or len(size) != len(stride) or len(size) > self.max_dims
                or not all(_is_index(v) for v in size + stride)):
            raise PickleRefused(f"invalid tensor geometry (offset {describe(offset)}, {len(size)} sizes, "
                                f"{len(stride)} strides; all must be non-negative integers, at most "
                                f"{self.max_dims} dimensions)")
        numel = 1
        for s in size:
            numel *= s
        if numel == 0:
            if offset > storage.numel:
                raise PickleRefused(f"empty tensor at offset {offset} past its storage ({storage.numel})")
        else:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if numel > storage.numel:  # only expanded (stride-0) views exceed their storage; state dicts hold none
                raise PickleRefused(f"tensor of size {size} has more elements than its storage ({storage.numel})")
            if last >= storage.numel:
                raise PickleRefused(f"tensor of size {size} reads past its storage "
                                    f"({last + 1} > {storage.numel} elements)")
        return TensorRef(storage, offset, size, stride)

    def rebuild_parameter(self, data, *_ignored):
        if not isinstance(data, TensorRef):
            raise PickleRefused(f"parameter rebuilt from {describe(data)}, not a tensor")
        return data

    def rebuild_from_type(self, func, new_type, args, _state=None):
        if func not in self.rebuilders or new_type not in _TENSOR_TYPES or not isinstance(args, tuple):
            raise PickleRefused(f"tensor subclass rebuilt through {describe(func)} as {describe(new_type)}")
        return func.fn(*args)

    def ordered_dict(self, items=()):
        out = _OrderedDict()
        if items:
            pairs = self.charged(list, items)
            if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
                raise PickleRefused("OrderedDict built from something that is not (key, value) pairs")
            out.update(pairs)
        return out

    def codecs_encode(self, text, encoding="utf-8", *_):
        """Protocol 2 writes bytes as _codecs.encode(str, 'latin1'); exactly that is allowed."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise PickleRefused("refused _codecs.encode with unexpected arguments")
        self.made.take(len(text), "bytes decoded in the pickle")
        return text.encode("latin1")

    def charged(self, kind, items):
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise PickleRefused(f"{kind.__name__} built from {describe(items)}")
        self.made.take(8 * len(items), f"a {kind.__name__} of {len(items)} items")
        return kind(items)

    # -- numpy stand-ins ------------------------------------------------------------------------------------
    @staticmethod
    def np_dtype(code, _align=False, _copy=False):
        return _Dtype(code)

    def np_reconstruct(self, subtype, _shape=None, _code=None):
        if subtype is not _NDARRAY:
            raise PickleRefused(f"refused numpy reconstruction of {describe(subtype)} (plain ndarray only)")
        return UnbuiltNumpyArray(self.made)

    @staticmethod
    def np_scalar(dtype, data=None):
        if not isinstance(dtype, _Dtype):
            raise PickleRefused("refused numpy scalar whose dtype is not a plain numeric dtype")
        data = data.encode("latin1") if isinstance(data, str) else data
        dt = dtype.resolve()
        if not isinstance(data, bytes) or len(data) != dt.itemsize:
            raise PickleRefused(f"refused numpy scalar whose data is not exactly {dt.itemsize} bytes")
        return np.frombuffer(data, dtype=dt, count=1)[0]

    # -- copyreg (protocol 0/1 objects, and __reduce_ex__ written as REDUCE) ---------------------------------
    @staticmethod
    def reconstructor(cls, _base=None, _state=None):
        if not isinstance(cls, _InertClass):
            raise PickleRefused(f"refused copyreg reconstruction of {describe(cls)}")
        return cls.new((), {})

    @staticmethod
    def newobj(cls, *args):
        if not isinstance(cls, _InertClass):
            raise PickleRefused(f"refused copyreg.__newobj__ of {describe(cls)}")
        return cls.new(args, {})
