"""YOLOX head as mmdet / rtmlib export it: [1, A, 4 + 1 + C] over the grid cells of every stride, finest first.

Raw (the usual export): per cell (tx, ty, tw, th, objectness, class scores), objectness and classes already
sigmoided; cells enumerate each stride's (input / stride) grid row by row; centre = (t + cell) * stride,
size = exp(t) * stride, in input pixels; a class's score is objectness * class score (classes scored
independently, as rtmlib's multiclass NMS does). Decoded (`decoded: true`): the first four are already
(cx, cy, w, h) in input pixels.
"""
from __future__ import annotations

import functools

import numpy as np

from edge_pose.detect.common import cxcywh_to_xyxy, select, shape_error


@functools.lru_cache(maxsize=8)
def grid(input_size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets [A, 2] (x, y) and the stride [A] of every anchor point, in the head's order."""
    cells, per = [], []
    for s in strides:
        hs, ws = input_size[0] // s, input_size[1] // s
        ys, xs = np.mgrid[0:hs, 0:ws]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        per.append(np.full(hs * ws, s))
    xy = np.concatenate(cells).astype(np.float32)
    st = np.concatenate(per).astype(np.float32)
    xy.flags.writeable = st.flags.writeable = False
    return xy, st


def decode(outputs, spec, geom, stats=None) -> np.ndarray:
    (pred,) = outputs
    if pred.ndim != 3 or pred.shape[0] != 1 or pred.shape[2] <= 5 + spec.person_class:
        raise shape_error("yolox", spec.outputs[0], pred, f"[1, anchors, 5 + classes] with person class "
                                                          f"{spec.person_class}")
    p = pred[0].astype(np.float32, copy=False)
    if spec.decoded:
        cx, cy, w, h = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    else:
        xy, st = grid(spec.input_size, spec.strides)
        if len(xy) != len(p):
            raise shape_error("yolox", spec.outputs[0], pred, f"[1, {len(xy)}, ...] (strides {list(spec.strides)} "
                                                              f"on {spec.input_size[0]}x{spec.input_size[1]})")
        cx = (p[:, 0] + xy[:, 0]) * st
        cy = (p[:, 1] + xy[:, 1]) * st
        w = np.exp(p[:, 2]) * st
        h = np.exp(p[:, 3]) * st
    scores = p[:, 4] * p[:, 5 + spec.person_class]
    return select(cxcywh_to_xyxy(cx, cy, w, h), scores, spec, geom, stats=stats)
