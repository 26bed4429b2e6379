"""A graph that already ends in NMS (mmdeploy's end2end export): dets [1, N, 5] + labels [1, N].

dets rows are x1, y1, x2, y2 (input pixels), score; rows padded with score 0 are dropped by the score threshold.
The graph did NMS, so only the person label, the threshold and max_detections apply here.
"""
from __future__ import annotations

import numpy as np

from edge_pose.detect.common import empty, shape_error, to_frame


def decode(outputs, spec, geom, stats=None) -> np.ndarray:
    dets, labels = outputs
    if dets.ndim != 3 or dets.shape[0] != 1 or dets.shape[2] != 5:
        raise shape_error("end2end", spec.outputs[0], dets, "[1, N, 5] (x1, y1, x2, y2, score)")
    if labels.size != dets.shape[1]:
        raise shape_error("end2end", spec.outputs[1], labels, f"[1, {dets.shape[1]}] (one label per detection)")
    d = dets[0].astype(np.float32, copy=False)
    lab = labels.reshape(-1)
    ok = (lab == spec.person_class) & (d[:, 4] > np.float32(spec.score_threshold)) & np.isfinite(d).all(axis=1)
    d = d[ok]
    if len(d) == 0:
        return empty()
    d = d[np.argsort(-d[:, 4], kind="stable")][:spec.max_detections]
    return to_frame(d[:, :4], d[:, 4], geom, normalised=False)
