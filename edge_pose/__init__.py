"""edge-pose: top-down 2D human pose on edge devices.

`from edge_pose import PoseEstimator` is resolved lazily so that `import edge_pose` stays light (no cv2, no
runtime) for tools that only read bundles or device profiles.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {"PoseEstimator": "edge_pose.estimator", "Person": "edge_pose.estimator"}

__all__ = ["PoseEstimator", "Person", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge_pose' has no attribute {name!r}")
