"""YOLOv8-style head (ultralytics export, also YOLO11): [1, 4 + C, A], channels first, no objectness.

Rows 0-3 are (cx, cy, w, h) in input pixels, rows 4.. the class scores, already sigmoided.
"""
from __future__ import annotations

import numpy as np

from edge_pose.detect.common import cxcywh_to_xyxy, select, shape_error


def decode(outputs, spec, geom, stats=None) -> np.ndarray:
    (pred,) = outputs
    if pred.ndim != 3 or pred.shape[0] != 1 or pred.shape[1] <= 4 + spec.person_class:
        raise shape_error("yolov8", spec.outputs[0], pred, f"[1, 4 + classes, anchors] with person class "
                                                           f"{spec.person_class}")
    p = pred[0].astype(np.float32, copy=False)
    boxes = cxcywh_to_xyxy(p[0], p[1], p[2], p[3])
    return select(boxes, np.ascontiguousarray(p[4 + spec.person_class]), spec, geom, stats=stats)
