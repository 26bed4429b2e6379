"""Detector: a session that runs the model + a spec (manifest data) -> person boxes for a frame.

The session is anything with `run(batch) -> list of output arrays`, the outputs in the order of the spec's
`outputs` names (the backend adapter maps names to its runtime's tensors).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from edge_pose.detect import DECODERS
from edge_pose.detect.common import DetectOutputError
from edge_pose.detect.preprocess import Geometry, prepare
from edge_pose.detect.spec import DetectSpec


class Detector:
    def __init__(self, session: Any, spec: Mapping[str, Any] | DetectSpec, where: str = "detector spec"):
        self.session = session
        self.spec = spec if isinstance(spec, DetectSpec) else DetectSpec.from_dict(spec, where)
        self.decode_fn = DECODERS[self.spec.head]
        self.last_timings: dict[str, float] = {}
        self.last_stats: dict[str, Any] = {}

    def prepare(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Geometry]:
        s = self.spec
        return prepare(image_bgr, s.input_size, resize=s.resize, sampling=s.sampling, pad=s.pad,
                       pad_value=s.pad_value, color=s.color, mean=s.mean, std=s.std, layout=s.layout)

    def decode(self, outputs, geom: Geometry) -> np.ndarray:
        outputs = [np.asarray(o) for o in outputs]
        if len(outputs) != len(self.spec.outputs):
            raise DetectOutputError(f"{self.spec.head} decoder: session returned {len(outputs)} outputs, the spec "
                                    f"names {len(self.spec.outputs)} ({', '.join(self.spec.outputs)})")
        self.last_stats = {}
        return self.decode_fn(outputs, self.spec, geom, stats=self.last_stats)

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        """Person boxes float32 [M, 5] = x, y, w, h, score in frame pixels, best first.

        last_timings afterwards holds preprocess / infer / decode / total milliseconds of this call.
        """
        t0 = time.perf_counter()
        batch, geom = self.prepare(image_bgr)
        t1 = time.perf_counter()
        outputs = self.session.run(batch)
        t2 = time.perf_counter()
        boxes = self.decode(outputs, geom)
        t3 = time.perf_counter()
        self.last_timings = {"preprocess_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3,
                             "decode_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3}
        return boxes

    def boxes(self, image_bgr: np.ndarray, image_name: str | None = None) -> np.ndarray:
        """edge_pose.boxes.BoxSource protocol, so a Detector can stand where HOG or a COCO file does."""
        return self.detect(image_bgr)
