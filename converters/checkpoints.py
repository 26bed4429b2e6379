"""Read mmpose/PyTorch `.pth` checkpoints as numpy arrays without importing torch and without running their code.

A `.pth` written by `torch.save` is a zip archive: `<name>/data.pkl` (a pickle describing the object) plus one raw
record `<name>/data/<key>` per tensor storage and `<name>/byteorder`. The reader is safe by construction:

- the pickle runs on a bounded interpreter (converters.safe_pickle) whose globals resolve only to the inert
  stand-ins of converters.ckpt_pickle; nothing is imported and nothing outside them is ever called;
- a storage is only a reference the archive declares, its declared size checked against the zip record's
  declared size before anything is read; a tensor is only a reference to such a storage with its geometry checked
  (every element index inside the storage, no negative strides); only the tensors of the state dict are ever read
  (converters.ckpt_tensors), each into a buffer of exactly its declared size, under one byte budget for the whole
  read;
- element types come from a fixed set of plain numeric types; numpy arrays found in metadata are rebuilt from
  validated plain bytes (no fields, no offsets, no object dtypes), and an array without data never becomes one;
- bookkeeping classes of the OpenMMLab training loop (mmengine's HistoryBuffer and the like, in `message_hub`/`meta`)
  become inert placeholders that are dropped with the rest of the metadata.

Every refusal is a CheckpointError: one line naming the file and the reason.
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from converters.ckpt_archive import Archive, ArchiveLimits, Budget
from converters.ckpt_pickle import TensorRef, Vocabulary
from converters.ckpt_tensors import TensorReader
from converters.errors import CheckpointError
from converters.safe_pickle import PickleLimits, PickleRefused, describe
from converters.safe_pickle import load as load_pickle

__all__ = ["CheckpointError", "CheckpointLimits", "read_checkpoint", "rename_keys", "strip_prefix"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise CheckpointError(f"EDGE_POSE_CHECKPOINT_MAX_BYTES={text!r:.40}: not a size (e.g. 4G or 4294967296)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class CheckpointLimits:
    """How much a checkpoint read may take. Defaults fit every mmpose checkpoint many times over."""

    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    pickle: PickleLimits = field(default_factory=PickleLimits)
    max_dims: int = 16
    max_tensors: int = 200_000
    max_metadata_bytes: int = 256 << 20  # bytes, sets and numpy arrays the pickle itself makes (metadata: KBs)

    @classmethod
    def from_env(cls) -> "CheckpointLimits":
        """Defaults, with the total byte ceiling from EDGE_POSE_CHECKPOINT_MAX_BYTES when set (e.g. 4G)."""
        text = os.environ.get("EDGE_POSE_CHECKPOINT_MAX_BYTES")
        if not text:
            return cls()
        return cls(archive=ArchiveLimits(max_total_bytes=_parse_bytes(text)))


def _describe_not_zip(path: Path, head: bytes) -> str:
    if head[:2] == b"\x80\x02" and _LEGACY_MAGIC.to_bytes(10, "little") in head[:32]:
        return (f"{path}: legacy (pre-1.6, non-zip) torch checkpoint; re-save it with torch>=1.6 "
                f"(torch.save(torch.load(f), f2)) and try again")
    if head[:1] == b"\x80":
        return f"{path}: a bare pickle, not a torch zip checkpoint; re-save it with torch.save"
    if len(head) == 0:
        return f"{path}: empty file, not a checkpoint"
    return f"{path}: not a PyTorch checkpoint (not a zip archive written by torch.save)"


def _open_archive(path: Path, limits: CheckpointLimits, budget: Budget) -> tuple[Archive, str]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not is_zip:
        if head[:2] == b"PK":
            raise CheckpointError(f"{path}: truncated or corrupt zip archive (central directory not found)")
        raise CheckpointError(_describe_not_zip(path, head))
    archive = Archive(path, limits.archive, budget)
    names = archive.names()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pickles:
        archive.zip.close()
        if any(n.endswith("constants.pkl") for n in names):
            raise CheckpointError(f"{path}: a TorchScript archive, not a checkpoint; save model.state_dict() instead")
        raise CheckpointError(f"{path}: zip archive without '<name>/data.pkl'; not a torch checkpoint")
    return archive, pickles[0][: -len("data.pkl")]


def _unpickle(path: Path, limits: CheckpointLimits, budget: Budget):
    archive, prefix = _open_archive(path, limits, budget)
    with archive:
        byteorder = "little"
        if archive.info(prefix + "byteorder") is not None:
            byteorder = bytes(archive.read(prefix + "byteorder", max_size=16)).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r:.20}")
        data = archive.read(prefix + "data.pkl", max_size=limits.pickle.max_bytes)
        names = Vocabulary(path, archive, prefix, limits.max_dims, limits.max_metadata_bytes)
        try:
            obj = load_pickle(data, names.resolve, names.persistent_load, limits.pickle)
        except PickleRefused as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        state = _pick_state_dict(path, obj)
        if len(state) > limits.max_tensors:
            raise CheckpointError(f"{path}: state dict of {len(state)} entries (limit {limits.max_tensors})")
        reader = TensorReader(path, archive, byteorder, budget)
        out: dict[str, np.ndarray] = {}
        for key, value in state.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{path}: state dict key {describe(key)} is not a string")
            if isinstance(value, TensorRef):
                value = reader.materialise(value)
            elif not (isinstance(value, np.ndarray) and value.dtype.kind in "biufc"):
                raise CheckpointError(f"{path}: state dict entry '{key[:120]}' is {describe(value)}, not a tensor")
            out[key] = value
        return out


def _pick_state_dict(path: Path, obj) -> dict:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: checkpoint holds {describe(obj)}, not a dict of tensors")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    if obj and all(isinstance(v, (TensorRef, np.ndarray)) for v in obj.values()):
        return obj
    keys = ", ".join(str(k)[:40] for k in list(obj)[:8] if isinstance(k, (str, int)))
    raise CheckpointError(f"{path}: no 'state_dict' in checkpoint and it is not a bare state dict (keys: {keys})")


def strip_prefix(key: str, prefix: str = "module.") -> str:
    """DataParallel/DistributedDataParallel save every key under `module.`; models never have it."""
    while key.startswith(prefix):
        key = key[len(prefix):]
    return key


def rename_keys(state: dict[str, np.ndarray], rename: Callable[[str], str],
                collision: Callable[[str, str], Exception]) -> dict[str, np.ndarray]:
    """`state` with every key renamed, in order; two keys landing on one name raise collision(key, new name)."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        new = rename(key)
        if new in out:
            raise collision(key, new)
        out[new] = value
    return out


def read_checkpoint(path, limits: CheckpointLimits | None = None) -> dict[str, np.ndarray]:
    """Tensors of an mmpose `.pth` by PyTorch name (`module.` stripped); fp16 kept, bf16 widened to fp32.

    `limits` bounds the read (default: CheckpointLimits.from_env(), a 2 GiB ceiling); CheckpointError otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    limits = limits or CheckpointLimits.from_env()
    budget = Budget(str(path), limits.archive.max_total_bytes)
    try:
        state = _unpickle(path, limits, budget)
    except MemoryError:
        raise CheckpointError(f"{path}: ran out of memory reading the checkpoint ({budget.used} bytes read; "
                              f"lower EDGE_POSE_CHECKPOINT_MAX_BYTES or free memory)") from None
    return rename_keys(state, strip_prefix, lambda _key, name: CheckpointError(
        f"{path}: key '{name[:120]}' appears twice once 'module.' prefixes are stripped"))
