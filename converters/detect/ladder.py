"""int8 mitigations for the SSD detector, cheapest first, and the climb that judges each rung out of fold.

A rung is a recipe (export options), not a model: it is judged on detections that int8 models made on images they
were not calibrated on (converters.detect.folds), and the climb stops at the first rung within the bar. Rungs that
keep layers in float come after all-int8 ones because a float island costs latency (in TFLite it splits the
XNNPACK int8 graph).

Measured out of fold on coco-mini (4 images, 14 people, leave-one-image-out; source 43.5 AP;
benchmarks/detect_int8_rungs.py): TFLite full int8 41.4, with zoomed views 42.4, box predictors in float 42.9;
OpenVINO min-max ranges 42.8, with zoomed views 41.3, box-predictor convs in float + min-max 42.9, MIXED preset with
those in float 41.3. With 14 people one box crossing an IoU step moves AP by about a point: the zoomed-view rungs
gave 42.2 (TFLite) and 43.2 (OpenVINO) with one crop one pixel smaller. So these differ mostly by noise, and the
order follows runtime cost, not these figures. The first conv in float as well as the box predictors: 41.3. Tried and left out: NNCF's default ranges
(39.8 even calibrated on the judged frames); NNCF quantize_with_accuracy_control with box AP on the fold's own
calibration images as its metric (41.4, and 7-220 s per fold: three images are too few for its ranking); TFLite
sensitivity-ranked selective quantisation (tf.lite.experimental.QuantizationDebugger on each fold's calibration
frames, layers ranked by RMS error relative to their float output, ignoring layers whose float reference read back
as garbage such as 2.5e38; the worst 2 / 4 / 8 / 16 kept in float: 41.5 / 41.2 / 42.9 / 38.7, not monotonic in k
and no better than the box predictors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

ZOOM = 0.8  # "more calibration frames": each frame's centre 80% as well (see export.calibration_inputs)
LADDER: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "tflite": [("full int8, float I/O", {}),
               ("full int8, zoomed views added to calibration", {"zoom": ZOOM}),
               ("box predictors in float", {"float_ops": ("BoxPredictor",)})],
    "openvino": [("min-max ranges, all int8", {"float_heads": False, "ranges": "minmax"}),
                 ("min-max ranges, all int8, zoomed views added to calibration",
                  {"float_heads": False, "ranges": "minmax", "zoom": ZOOM}),
                 ("box-predictor convs in float, min-max ranges", {"float_heads": True, "ranges": "minmax"}),
                 ("NNCF MIXED preset, box-predictor convs in float", {"float_heads": True, "preset": "mixed"})],
}


@dataclass
class Attempt:
    label: str
    options: dict[str, Any]
    figures: dict[str, Any]
    missed: list[str]
    staged: Any = None  # the staged bundle when it is the judged model itself (one fold), else None


def out_of_fold(judging, build: Callable[[dict, list, str], tuple[Any, Any]], options: dict, tag: str,
                log: Callable[[str], None] = print) -> tuple[dict[int, np.ndarray], list]:
    """Each fold's images detected by a model `build(options, fold frames, tag)` -> (detector, staged bundle)
    calibrated on that fold's frames only: ({image id: boxes}, staged bundles per fold)."""
    dets, staged = {}, []
    for n, (fold, frames) in enumerate(zip(judging.folds, judging.fold_frames)):
        if len(judging.folds) > 1:
            log(f"    fold {n + 1}/{len(judging.folds)}: calibrated on {len(fold.calibrated_on)} image(s), "
                f"judging {list(fold.judged)}")
        det, bundle = build(options, frames, f"{tag}-fold{n}")
        for i in fold.judged:
            dets[i] = det.detect(judging.frames[i])
        staged.append(bundle)
    return dets, staged


def climb(rungs, judge: Callable[[str, dict], tuple[dict, Any]], check: Callable[[dict], list[str]],
          log: Callable[[str], None] = print) -> list[Attempt]:
    """judge(label, options) -> (figures, staged or None) for each rung in order, until one passes check()."""
    attempts = []
    for label, options in rungs:
        figures, staged = judge(label, options)
        missed = check(figures)
        attempts.append(Attempt(label, dict(options), figures, missed, staged))
        if not missed:
            break
    return attempts


def closest(attempts: list[Attempt]) -> Attempt:
    """The passing attempt (the last one, since the climb stops there), else the smallest AP drop."""
    return min(attempts, key=lambda a: (bool(a.missed), a.figures["ap_drop"] if "ap_drop" in a.figures else
                                        -a.figures["agreement"]["matched_fraction"]))
