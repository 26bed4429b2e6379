"""SSD head as the TF Object Detection API builds it: anchors + FasterRCNN box coder + per-class scores.

Box encodings [1, A, 4] (or [1, A, 1, 4]) are (ty, tx, th, tw) relative to anchors (ycenter, xcenter, h, w) in
coordinates normalised to the input, divided by scale factors (10, 10, 5, 5 by default):
ycenter = ty / sy * ha + ya, h = exp(th / sh) * ha (x, w alike). Class predictions [1, A, C + 1] are logits with the
background at column 0, turned into scores by sigmoid (or softmax) of logits / logit_scale. As in the graph's own
Postprocessor, NMS runs on the unclipped boxes; clipping to the image and dropping empty boxes follow.
"""
from __future__ import annotations

import numpy as np

from edge_pose.detect.common import cxcywh_to_xyxy, select, shape_error


def scores_from_logits(logits: np.ndarray, conversion: str, logit_scale: float) -> np.ndarray:
    x = logits.astype(np.float32) / np.float32(logit_scale)
    if conversion == "sigmoid":
        return (1 / (1 + np.exp(-x))).astype(np.float32)
    if conversion == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return x


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray, box_scale) -> np.ndarray:
    """Encodings [A, 4] (ty, tx, th, tw) + anchors [A, 4] (yc, xc, h, w) -> normalised boxes [A, 4] x1, y1, x2, y2."""
    e = encodings.astype(np.float32)
    sy, sx, sh, sw = (np.float32(v) for v in box_scale)
    ya, xa, ha, wa = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
    yc = e[:, 0] / sy * ha + ya
    xc = e[:, 1] / sx * wa + xa
    h = np.exp(e[:, 2] / sh) * ha
    w = np.exp(e[:, 3] / sw) * wa
    return cxcywh_to_xyxy(xc, yc, w, h)


def decode(outputs, spec, geom, stats=None) -> np.ndarray:
    enc, logits = outputs
    a = len(spec.anchors)
    if enc.size != a * 4 or enc.shape[0] != 1:
        raise shape_error("ssd", spec.outputs[0], enc, f"[1, {a}, 4] (one box encoding per anchor)")
    if logits.shape[0] != 1 or logits.size % a or logits.size // a <= spec.person_class:
        raise shape_error("ssd", spec.outputs[1], logits, f"[1, {a}, classes + 1] with person column "
                                                            f"{spec.person_class}")
    logits = logits.reshape(a, -1)
    if spec.score_conversion == "softmax":
        scores = scores_from_logits(logits, "softmax", spec.logit_scale)[:, spec.person_class]
    else:
        scores = scores_from_logits(logits[:, spec.person_class], spec.score_conversion, spec.logit_scale)
    boxes = decode_boxes(enc.reshape(a, 4), spec.anchors, spec.box_scale)
    return select(boxes, scores, spec, geom, normalised=True, stats=stats)
