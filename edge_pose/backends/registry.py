"""The adapters the selector can use, by name, and which bundle formats each loads."""
from __future__ import annotations

from edge_pose.backends.litert import LiteRTBackend
from edge_pose.backends.openvino import OpenVINOBackend

BACKENDS = {"litert": LiteRTBackend(), "openvino": OpenVINOBackend()}


def get_backend(name: str):
    from edge_pose.backends.base import BackendUnavailable

    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]
