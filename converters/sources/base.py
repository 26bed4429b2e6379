"""The Source: one model the converters start from, with everything known about its input and output.

`Source.run` is the reference every exported bundle is compared with, so it runs the model in the framework it
came from (Keras/TF for Keras, SavedModel and frozen graphs; onnxruntime for ONNX) and always returns NCHW float32
heatmaps, whatever the model's own output layout.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from edge_pose.bundle import DecodeSpec, InputSpec, KeypointSpec, OutputSpec
from edge_pose.digests import sha256_file

from converters.errors import SourceError

KINDS = ("keras", "savedmodel", "onnx", "frozen_graph")


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


class Source:
    """Base class; subclasses implement `_infer` (one model-input batch -> the raw output tensor)."""

    kind: str = ""

    def __init__(self, *, path: Path | None, model_name: str, input: InputSpec, output: OutputSpec,
                 keypoints: KeypointSpec, sha256: str | None, untrained: bool = False, family: str | None = None,
                 checkpoint: Path | None = None, decode: DecodeSpec | None = None, fixed_batch: int | None = 1):
        self.path = path
        self.model_name = model_name
        self.input = input
        self.output = output
        self.keypoints = keypoints
        self.sha256 = sha256
        self.untrained = untrained
        self.family = family
        self.checkpoint = checkpoint
        self.checkpoint_url: str | None = None  # where an official checkpoint was downloaded from
        self.decode = decode or DecodeSpec()
        self.fixed_batch = fixed_batch  # the model's own batch size when it is fixed (run() splits bigger batches)
        self._workdir: Path | None = None
        self.cache: dict[str, Any] = {}  # exporters keep per-source intermediates here (e.g. onnx2tf SavedModel)

    # -- facts --------------------------------------------------------------------------------------------------
    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def output_name(self) -> str:
        return self.output.name

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Batch-1 shape of the model's input tensor in its own layout."""
        h, w = self.input.size
        return (1, 3, h, w) if self.input.layout == "NCHW" else (1, h, w, 3)

    def workdir(self) -> Path:
        """A private temporary directory, removed when the Source is garbage-collected."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"edge-pose-{self.kind}-"))
            weakref.finalize(self, shutil.rmtree, str(self._workdir), True)
        return self._workdir

    def provenance(self) -> dict[str, Any]:
        return {"source": str(self.path) if self.path else self.model_name, "source_kind": self.kind,
                "source_sha256": self.sha256, "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                **({"checkpoint_url": self.checkpoint_url} if self.checkpoint_url else {}),
                "untrained": self.untrained}

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.model_name} {self.input.layout} {self.input.size} -> "
                f"{self.output.name} {self.output.layout} {self.output.size} K={len(self.keypoints.names)}>")

    # -- reference inference --------------------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model-input batch (exactly the tensor the model takes, any N) -> heatmaps (N, K, H, W) float32."""
        batch = np.asarray(batch, dtype=np.float32)
        expected = self.input_shape[1:]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected or not len(batch):
            raise SourceError(f"{self.model_name}: input batch shape {list(batch.shape)} is not (N, "
                              f"{', '.join(map(str, expected))}) ({self.input.layout})")
        step = self.fixed_batch or len(batch)
        outs = [self._infer(batch[i:i + step]) for i in range(0, len(batch), max(step, 1))]
        out = np.concatenate(outs, axis=0).astype(np.float32, copy=False)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2) if self.output.layout == "NHWC" else out)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError
