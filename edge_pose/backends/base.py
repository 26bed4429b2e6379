"""The backend protocol: load a bundle on an accelerator, infer a batch, say what actually runs.

Adapters import their runtime inside `load`, never at module import, and raise BackendUnavailable with a one-line
reason that the selector records and shows.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from edge_pose.bundle import Bundle
from edge_pose.errors import EdgePoseError


class BackendUnavailable(EdgePoseError, RuntimeError):
    """This backend cannot run this bundle here; str(exc) is a one-line reason."""


class Session(Protocol):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Model-ready input (N, ...) in the bundle's input layout and dtype -> heatmaps (N, K, H, W) float32."""

    def describe(self) -> dict[str, Any]:
        """What actually runs, as the runtime reports it: backend, device or delegate, threads, precision."""


class Backend(Protocol):
    name: str  # "litert" | "openvino"
    formats: tuple[str, ...]  # bundle formats it loads

    def available(self) -> str | None:
        """None when the runtime can be imported here, else the reason it cannot (cheap, no model load)."""

    def load(self, bundle: Bundle, accelerator: str, options: dict[str, Any]) -> Session:
        ...
