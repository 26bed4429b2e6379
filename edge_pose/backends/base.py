"""The backend protocol: load a bundle on an accelerator, infer a batch, say what actually runs.

Adapters import their runtime inside `load`, never at module import, and raise BackendUnavailable with a one-line
reason that the selector records and shows.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_pose.bundle import Bundle
from edge_pose.errors import EdgePoseError


CACHE_ENV = "EDGE_POSE_CACHE_DIR"


def default_cache_dir(backend: str) -> Path:
    """Where a backend keeps compiled models between starts: $EDGE_POSE_CACHE_DIR or ~/.cache/edge-pose, /backend."""
    base = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-pose"
    return Path(base) / backend


class BackendUnavailable(EdgePoseError, RuntimeError):
    """This backend cannot run this bundle here; str(exc) is a one-line reason."""


class NotAsAsked(BackendUnavailable):
    """The runtime would run this candidate otherwise than asked (precision, threads, provider): the selector skips
    it with the reason instead of running something else under its name."""


class PrecisionMismatch(NotAsAsked):
    """The device would compute in another precision than the bundle was validated at (and that was not allowed)."""


class ThreadsNotHonoured(NotAsAsked):
    """The runtime would run another number of threads than was asked for."""


class ProviderFellBack(NotAsAsked):
    """ONNX Runtime created the session on another execution provider than the one asked for."""


def check_execution(bundle: Bundle, actual: str | None, options: dict[str, Any], where: str) -> None:
    """Refuse a session whose execution precision (as the runtime reports it) is not the validated one.

    `actual` None means the runtime does not report it (OpenVINO AUTO): the hint was passed and the caller says so
    in describe(). options["allow_precision"]: execution precisions the user accepts in place of the manifest's.
    """
    want = bundle.manifest.execution_precision
    if actual is None or actual == want or actual in set(options.get("allow_precision") or ()):
        return
    raise PrecisionMismatch(f"{where} computes in {actual}, but {bundle.path.name} was validated at {want} "
                            f"(allow it with --allow-precision {actual})")


def check_threads(asked: int | None, actual: int | None, where: str) -> None:
    if asked and actual and int(actual) != int(asked):
        raise ThreadsNotHonoured(f"{where} runs {actual} threads where {asked} were asked "
                                 f"(it caps at the cores it can use)")


class Session(Protocol):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Model-ready input (N, ...) in the bundle's input layout and dtype -> heatmaps (N, K, H, W) float32."""

    def describe(self) -> dict[str, Any]:
        """What actually runs, as the runtime reports it: backend, device or delegate, threads, precision, and
        `execution_precision` (f32 | f16 | bf16, read back from the runtime) next to `validated_precision`."""


class Backend(Protocol):
    name: str  # "litert" | "openvino"
    formats: tuple[str, ...]  # bundle formats it loads

    def available(self) -> str | None:
        """None when the runtime can be imported here, else the reason it cannot (cheap, no model load)."""

    def load(self, bundle: Bundle, accelerator: str, options: dict[str, Any]) -> Session:
        ...
