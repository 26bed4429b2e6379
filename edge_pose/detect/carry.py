"""Detection every N frames, boxes carried in between from the people just found (RTMPose's pipeline and rtmlib's
PoseTracker do the same): on a frame without detection each person's box is the bounding box of their confident
keypoints in the previous frame, enlarged, so a moving person stays inside it and the detector's cost is paid once
per N frames."""
from __future__ import annotations

import numpy as np

CARRY_MARGIN = 1.15  # keypoint extent -> box: head top and feet lie beyond the outermost joints
MIN_JOINTS = 3  # fewer confident joints than this and the person's box is not carried (re-detect next frame)


def boxes_from_people(people, shape, min_score: float = 0.3, margin: float = CARRY_MARGIN) -> np.ndarray:
    """float32 [M, 5] x, y, w, h, score: each person's confident-keypoint extent grown by `margin`, inside the frame."""
    rows = []
    h, w = shape[:2]
    for p in people:
        ok = p.scores >= min_score
        if ok.sum() < MIN_JOINTS:
            continue
        pts = p.keypoints[ok]
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bw, bh = (x1 - x0) * margin, (y1 - y0) * margin
        x0, y0 = max(0.0, cx - bw / 2), max(0.0, cy - bh / 2)
        x1, y1 = min(float(w), cx + bw / 2), min(float(h), cy + bh / 2)
        if x1 > x0 and y1 > y0:
            rows.append((x0, y0, x1 - x0, y1 - y0, p.box_score))
    return np.asarray(rows, np.float32).reshape(-1, 5)


class EveryN:
    """A box source for a stream: the detector on every `every`-th frame (and whenever nobody was carried), boxes
    carried from the previous frame's people otherwise. `detected` says whether the last call ran the detector."""

    def __init__(self, detector, every: int = 1):
        if int(every) < 1:
            raise ValueError(f"detect every {every} frames: must be at least 1")
        self.detector, self.every = detector, int(every)
        self.frame, self.detected = 0, False
        self._carried: np.ndarray | None = None

    def boxes(self, image, image_name=None) -> np.ndarray:
        due = self.frame % self.every == 0 or self._carried is None or not len(self._carried)
        self.frame += 1
        self.detected = due
        return self.detector.detect(image) if due else self._carried

    def update(self, people, shape) -> None:
        """The people found on the frame just boxed: their boxes carry to the next frame."""
        self._carried = boxes_from_people(people, shape)

    def reset(self) -> None:
        self.frame, self._carried = 0, None
