"""Person detection for top-down pose: preprocessing, per-head decoders, vectorised NMS, the Detector.

numpy (and OpenCV for resizing) only; a runtime comes in as a session object. Each head is one module with one
`decode(outputs, spec, geometry) -> boxes [M, 5]` function (x, y, w, h, score in frame pixels), registered in the
registry (registry.DETECT_HEADS) by the name a detector spec's `head` uses.
"""
from __future__ import annotations

from registry import DETECT_HEADS, load

DECODERS = {name: load(entry.function) for name, entry in DETECT_HEADS.items()}


def __getattr__(name):  # Detector pulls in nothing heavier, but keep `import edge_pose.detect` minimal
    if name in ("Detector", "DetectSpec"):
        from edge_pose.detect import detector, spec

        return {"Detector": detector.Detector, "DetectSpec": spec.DetectSpec}[name]
    raise AttributeError(name)
