"""Choosing the calibration crops and the (disjoint) evaluation crops from what the user passed.

- `--calib DATA --eval DATA2`: calibration sampled from DATA, evaluation from DATA2 (ground truth when it has it).
- `--calib COCO.json --boxes DETS.json`: calibration from the detector's boxes, evaluation from the ground-truth
  people of the same JSON (different crops; the way COCO top-down models are evaluated).
- `--calib DATA` alone: one seeded split of DATA into calibration and evaluation crops.
- `--eval DATA` alone: evaluation only (float precisions need no calibration).
- neither: evaluation on generated images (calibration.generated), for float precisions; int8 needs real data.
"""
from __future__ import annotations

from pathlib import Path

from calibration.cropset import CalibrationDataError, CropSet
from calibration.datasets import load_crops


def _same(a, b) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def calibration_and_eval(input_size, calib=None, eval_data=None, images_dir=None, boxes=None, calib_size: int = 64,
                         eval_size: int | None = None, seed: int = 0,
                         detector: str | None = None, min_box_score: float = 0.3) -> tuple[CropSet | None, CropSet]:
    """(calibration set or None, evaluation set); each warns when too small to trust.

    `detector` finds people in folders and videos (whole, hog, a detect bundle; None: hog). Detector boxes below
    `min_box_score` are left out of calibration: they are mostly background, and int8 ranges
    set on background crops fit people worse (measured on coco-mini: OKS agreement 0.975 -> 0.980).
    """
    if calib is None and eval_data is None:  # float precisions only (int8 without data is refused before this)
        from calibration.generated import generated_crops

        return None, generated_crops(input_size, count=eval_size or 16, seed=seed)
    if calib_size < 1:
        raise CalibrationDataError(f"--calib-size {calib_size} must be at least 1")
    calib_set = eval_set = None
    if calib is not None:
        everything = load_crops(calib, input_size, images_dir=images_dir, boxes=boxes, seed=seed, detector=detector,
                                min_box_score=min_box_score)
        if eval_data is None and boxes is not None and Path(calib).suffix.lower() == ".json":
            calib_set = everything.sample(calib_size, seed)
            eval_set = load_crops(calib, input_size, images_dir=images_dir, seed=seed).sample(eval_size, seed)
        elif eval_data is None or (_same(calib, eval_data) and boxes is None):
            calib_set, eval_set = everything.split(calib_size, eval_size, seed)
        else:
            calib_set = everything.sample(calib_size, seed)
    if eval_set is None:
        eval_set = load_crops(eval_data, input_size, images_dir=images_dir, seed=seed, detector=detector,
                              min_box_score=min_box_score)
        if eval_size is not None:
            eval_set = eval_set.sample(eval_size, seed)
    if calib_set is not None:
        calib_set.warn_if_small("calibration")
    eval_set.warn_if_small("evaluation")
    return calib_set, eval_set
