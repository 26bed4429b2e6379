"""CropSet: person crops with where they came from, ready for calibration or for a fidelity check.

Calibration and evaluation must never share crops (figures measured on the calibration crops flatter int8), so the
split is done here once, seeded, and both halves remember which crops they hold.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_pose.errors import EdgePoseError

# Below this many crops, int8 activation ranges (and the fidelity figures) rest on too few people to trust:
# 32 is the smallest set on which per-tensor min/max and NNCF's statistics stopped moving in our runs, and is the
# size TFLite's and NNCF's own examples consider a minimum. Smaller sets still work; they warn.
MIN_TRUSTED_CALIB = 32
MIN_TRUSTED_EVAL = 8


class CalibrationDataError(EdgePoseError, ValueError):
    """Calibration or evaluation data that cannot be used; one line naming the file."""


class SmallCropSetWarning(UserWarning):
    """The crop set is smaller than the size we consider trustworthy."""


@dataclass
class CropSet:
    """Crops uint8 BGR [N, h, w, 3] and, per crop, its image, box (x, y, w, h), center and scale (h, w).

    `gt_keypoints` [N, K, 3] (x, y, visibility, image pixels) and `ann_ids` are set when the crop is a ground-truth
    person; `coco_gt` is the COCO keypoint dataset those ids point into (for pycocotools).
    """

    crops: np.ndarray
    image_ids: list[Any]
    image_paths: list[str]
    boxes: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    box_scores: np.ndarray
    input_size: tuple[int, int]
    source: str
    kind: str  # coco-gt | coco-det | folder | video
    ann_ids: list[int | None] = field(default_factory=list)
    gt_keypoints: np.ndarray | None = None
    coco_gt: dict | None = None
    seed: int = 0
    note: str = ""
    boxes_file: str = ""  # the COCO detection results the boxes came from, if any

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def has_ground_truth(self) -> bool:
        return self.coco_gt is not None and any(a is not None for a in self.ann_ids)

    def subset(self, indices) -> "CropSet":
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            crops=self.crops[idx], image_ids=[self.image_ids[i] for i in idx],
            image_paths=[self.image_paths[i] for i in idx], boxes=self.boxes[idx], centers=self.centers[idx],
            scales=self.scales[idx], box_scores=self.box_scores[idx],
            ann_ids=[self.ann_ids[i] for i in idx] if self.ann_ids else [],
            gt_keypoints=None if self.gt_keypoints is None else self.gt_keypoints[idx],
        )

    def sample(self, size: int | None, seed: int | None = None) -> "CropSet":
        """A seeded random subset of `size` crops (all of them, shuffled, when size is None or larger)."""
        seed = self.seed if seed is None else seed
        order = np.random.default_rng(seed).permutation(len(self))
        if size is not None:
            order = order[:size]
        return replace(self.subset(np.sort(order)), seed=seed)

    def split(self, calib_size: int, eval_size: int | None = None, seed: int | None = None):
        """Two disjoint seeded subsets (calibration, evaluation); evaluation gets the rest unless eval_size."""
        seed = self.seed if seed is None else seed
        if len(self) < 2:
            raise CalibrationDataError(f"{self.source}: {len(self)} crop(s) cannot be split into calibration and "
                                       "evaluation crops (pass --eval DATA, or more data)")
        if calib_size >= len(self):
            wanted, calib_size = calib_size, len(self) - max(1, len(self) // 4)
            warnings.warn(f"{self.source}: {len(self)} crops cannot give {wanted} calibration crops and keep any "
                          f"for evaluation: using {calib_size} for calibration and {len(self) - calib_size} for "
                          "evaluation (pass --eval DATA to keep them apart)", SmallCropSetWarning, stacklevel=2)
        order = np.random.default_rng(seed).permutation(len(self))
        calib_idx = np.sort(order[:calib_size])
        rest = order[calib_size:]
        eval_idx = np.sort(rest if eval_size is None else rest[:eval_size])
        return (replace(self.subset(calib_idx), seed=seed, note=f"calibration split of {len(self)}"),
                replace(self.subset(eval_idx), seed=seed, note=f"evaluation split of {len(self)}"))

    def warn_if_small(self, role: str = "calibration") -> bool:
        """Warn (SmallCropSetWarning) when the set is too small to trust for `role`; True when it warned."""
        minimum = MIN_TRUSTED_CALIB if role == "calibration" else MIN_TRUSTED_EVAL
        if len(self) < minimum:
            warnings.warn(f"{role} set from {self.source} has {len(self)} crops (< {minimum}): "
                          f"{'int8 ranges' if role == 'calibration' else 'fidelity figures'} may not be "
                          "trustworthy", SmallCropSetWarning, stacklevel=2)
            return True
        return False

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this set: enough to rebuild it."""
        return {
            "source": self.source, "kind": self.kind, "crops": len(self), "images": len(set(self.image_paths)),
            "input_size": list(self.input_size), "seed": self.seed, "ground_truth": self.has_ground_truth,
            **({"boxes": self.boxes_file} if self.boxes_file else {}),
            **({"note": self.note} if self.note else {}),
        }
