"""Read mmpose/PyTorch `.pth` checkpoints as numpy arrays without importing torch and without running their code.

A `.pth` written by `torch.save` is a zip archive: `<name>/data.pkl` (a pickle describing the object) plus one raw
record `<name>/data/<key>` per tensor storage and `<name>/byteorder`. Unpickling an untrusted pickle can call any
importable function, so the unpickler here resolves only an allowlist of globals, each mapped to an inert stand-in
written in this module (tensors are rebuilt from the raw records as numpy arrays). Every other global is refused
before anything is called. Bookkeeping classes of the OpenMMLab training loop (mmengine's HistoryBuffer and the
like, found in `message_hub`/`meta`) become inert placeholders that are dropped with the rest of the metadata.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from edge_pose.errors import EdgePoseError

# torch storage classes -> numpy dtype of one element (bf16 read as uint16 and widened later).
_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}
_TORCH_DTYPES = {"float32": "f4", "float": "f4", "float64": "f8", "double": "f8", "float16": "f2",
                 "half": "f2", "bfloat16": "bf16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4",
                 "int16": "i2", "int8": "i1", "uint8": "u1", "bool": "?"}
# Namespaces whose classes may appear in training metadata; they are replaced by inert placeholders, never imported.
_INERT_NAMESPACES = ("mmengine", "mmcv", "mmpose", "mmdet")
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # names protocol-2 pickles may use
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class CheckpointError(EdgePoseError):
    """A checkpoint that cannot be read safely or does not hold a state dict."""


class _StorageMarker:
    """Stands for a torch storage class in the pickle: only carries the element dtype."""

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype


class _Storage:
    """A storage record read from the archive as a flat numpy array (bf16 kept as raw uint16 bits)."""

    def __init__(self, array: np.ndarray, bf16: bool):
        self.array, self.bf16 = array, bf16


class _Inert:
    """Placeholder for a metadata object of the training loop: swallows construction and state, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self._state = state


def _inert_class(qualname: str) -> type:
    return type(f"Inert[{qualname}]", (_Inert,), {})


class _TensorBuilder:
    """Rebuilds tensors from storages with bounds-checked strides (a crafted stride must not read outside)."""

    def __init__(self, source: str):
        self.source = source

    def rebuild_tensor(self, storage, offset, size, stride, *_ignored):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"{self.source}: tensor rebuilt from something that is not a storage")
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        offset = int(offset)
        flat = storage.array
        if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise CheckpointError(f"{self.source}: invalid tensor geometry size={size} stride={stride}")
        numel = int(np.prod(size, dtype=np.int64)) if size else 1
        if numel == 0:
            out = np.zeros(size, dtype=flat.dtype)
        else:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if numel > flat.size:  # only expanded (stride-0) views exceed their storage; state dicts hold none
                raise CheckpointError(f"{self.source}: tensor of size {size} has more elements than its storage "
                                      f"({flat.size})")
            if last >= flat.size:
                raise CheckpointError(f"{self.source}: tensor of size {size} reads past its storage "
                                      f"({last + 1} > {flat.size} elements)")
            item = flat.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                                   strides=tuple(st * item for st in stride), writeable=False)
            out = np.array(view, copy=True)
        if storage.bf16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out

    @staticmethod
    def rebuild_parameter(data, *_ignored):
        return data

    @staticmethod
    def rebuild_from_type(func, _new_type, args, _state):
        return func(*args)


def _safe_codecs_encode(text, encoding="utf-8", *_):
    """pickle protocol 2 writes bytes as _codecs.encode(str, 'latin1'); allow exactly that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode with unexpected arguments")
    return text.encode("latin1")


_NDARRAY = object()  # stands for numpy.ndarray in the pickle; only _safe_np_reconstruct accepts it


def _safe_np_reconstruct(subtype, shape, dtype_code):
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("refused numpy reconstruction of a non-ndarray type")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _safe_np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("refused numpy scalar of object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _safe_np_dtype(code, align=False, copy=False):
    dtype = np.dtype(code)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refused numpy object dtype")
    return dtype


class _OrderedDictStandIn(dict):
    """OrderedDict as a plain dict (keeps insertion order); takes its pickled state (`_metadata`) and runs nothing."""

    def __setstate__(self, state):
        self._state = state


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self.source, self.archive, self.prefix, self.byteorder = source, archive, prefix, byteorder
        self.builder = _TensorBuilder(source)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        module = _PY2_MODULES.get(module, module)
        allowed = {
            ("collections", "OrderedDict"): _OrderedDictStandIn,
            ("torch._utils", "_rebuild_tensor_v2"): self.builder.rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): self.builder.rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self.builder.rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self.builder.rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self.builder.rebuild_from_type,
            ("torch", "Tensor"): _inert_class("torch.Tensor"),
            ("torch.nn.parameter", "Parameter"): _inert_class("torch.nn.parameter.Parameter"),
            ("_codecs", "encode"): _safe_codecs_encode,
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _safe_np_dtype,
            ("numpy.core.multiarray", "_reconstruct"): _safe_np_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _safe_np_reconstruct,
            ("numpy.core.multiarray", "scalar"): _safe_np_scalar,
            ("numpy._core.multiarray", "scalar"): _safe_np_scalar,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageMarker(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _StorageMarker(name, _TORCH_DTYPES[name])
        if module.split(".")[0] in _INERT_NAMESPACES and name[:1].isupper():
            return _inert_class(f"{module}.{name}")
        raise CheckpointError(f"{self.source}: refused to load global '{module}.{name}' from the checkpoint "
                              f"pickle (only tensors and plain containers are allowed; nothing was run)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointError(f"{self.source}: unsupported persistent id in checkpoint pickle: {pid!r:.80}")
        _, marker, key, _location, _numel = pid[:5]
        if not isinstance(marker, _StorageMarker):
            raise CheckpointError(f"{self.source}: storage of unknown type {marker!r:.80}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = self._read_storage(key, marker)
        return self.storages[key]

    def _read_storage(self, key: str, marker: _StorageMarker) -> _Storage:
        record = f"{self.prefix}data/{key}"
        try:
            raw = self.archive.read(record)
        except KeyError:
            raise CheckpointError(f"{self.source}: storage record '{record}' is missing from the archive") from None
        bf16 = marker.dtype == "bf16"
        code = "u2" if bf16 else marker.dtype
        dtype = np.dtype(code).newbyteorder("<" if self.byteorder == "little" else ">") if code != "?" else \
            np.dtype("?")
        if len(raw) % dtype.itemsize:
            raise CheckpointError(f"{self.source}: storage '{key}' has {len(raw)} bytes, not a multiple of "
                                  f"{dtype.itemsize} ({marker.name})")
        array = np.frombuffer(raw, dtype=dtype)
        if not dtype.isnative:
            array = array.astype(dtype.newbyteorder("="))
        return _Storage(array, bf16)


def _describe_not_zip(path: Path, head: bytes) -> str:
    if head[:2] == b"\x80\x02" and _LEGACY_MAGIC.to_bytes(10, "little") in head[:32]:
        return (f"{path}: legacy (pre-1.6, non-zip) torch checkpoint; re-save it with torch>=1.6 "
                f"(torch.save(torch.load(f), f2)) and try again")
    if head[:1] == b"\x80":
        return f"{path}: a bare pickle, not a torch zip checkpoint; re-save it with torch.save"
    if len(head) == 0:
        return f"{path}: empty file, not a checkpoint"
    return f"{path}: not a PyTorch checkpoint (not a zip archive written by torch.save)"


def _open_archive(path: Path) -> tuple[zipfile.ZipFile, str]:
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not zipfile.is_zipfile(path):
        if head[:2] == b"PK":
            raise CheckpointError(f"{path}: truncated or corrupt zip archive (central directory not found)")
        raise CheckpointError(_describe_not_zip(path, head))
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt zip archive ({exc})") from None
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if not pickles:
        if any(n.endswith("constants.pkl") for n in archive.namelist()):
            raise CheckpointError(f"{path}: a TorchScript archive, not a checkpoint; save model.state_dict() instead")
        raise CheckpointError(f"{path}: zip archive without '<name>/data.pkl'; not a torch checkpoint")
    return archive, pickles[0][: -len("data.pkl")]


def _unpickle(path: Path):
    archive, prefix = _open_archive(path)
    with archive:
        try:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        except KeyError:
            byteorder = "little"
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r:.20}")
        try:
            data = archive.read(prefix + "data.pkl")
            return _RestrictedUnpickler(io.BytesIO(data), str(path), archive, prefix, byteorder).load()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: {exc})") from None
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise CheckpointError(f"{path}: malformed checkpoint pickle ({type(exc).__name__}: "
                                  f"{str(exc)[:120]})") from None


def _pick_state_dict(path: Path, obj) -> dict:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(obj).__name__}, not a dict of tensors")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        return obj
    keys = ", ".join(map(str, list(obj)[:8]))
    raise CheckpointError(f"{path}: no 'state_dict' in checkpoint and it is not a bare state dict (keys: {keys})")


def strip_prefix(key: str, prefix: str = "module.") -> str:
    """DataParallel/DistributedDataParallel save every key under `module.`; models never have it."""
    while key.startswith(prefix):
        key = key[len(prefix):]
    return key


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """Tensors of an mmpose `.pth` by PyTorch name (`module.` stripped); fp16 kept, bf16 widened to fp32."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    state = _pick_state_dict(path, _unpickle(path))
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: state dict entry '{key}' is a {type(value).__name__}, not a tensor")
        name = strip_prefix(str(key))
        if name in out:
            raise CheckpointError(f"{path}: key '{name}' appears twice once 'module.' prefixes are stripped")
        out[name] = value
    return out
