"""The detector's spec: everything its preprocessing and decoder need, read from a plain dict (a manifest section).

Validated once, at Detector construction: a missing or contradictory field is one line naming it, never a
traceback at the first frame. See `DetectSpec.from_dict` for the keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edge_pose.detect.preprocess import PADS, RESIZES, SAMPLINGS
from edge_pose.errors import EdgePoseError

from registry import DETECT_HEADS

HEADS = tuple(DETECT_HEADS)
SCORE_CONVERSIONS = ("sigmoid", "softmax", "identity")
MAX_PRE_NMS = 4096  # the NMS matrix is K x K float32: 4096 -> 64 MB, the most a frame may cost


class DetectSpecError(EdgePoseError, ValueError):
    """A detector spec that cannot be used; one line naming the field."""


@dataclass(frozen=True)
class DetectSpec:
    head: str
    input_size: tuple[int, int]
    outputs: tuple[str, ...]
    layout: str = "NHWC"
    color: str = "rgb"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "stretch"
    sampling: str = "half_pixel"
    pad: str = "corner"
    pad_value: float = 114.0
    person_class: int = 0
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000
    # ssd
    anchors: np.ndarray | None = None  # [A, 4] ycenter, xcenter, h, w (normalised)
    box_scale: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
    score_conversion: str = "sigmoid"
    logit_scale: float = 1.0
    # yolox
    strides: tuple[int, ...] = ()
    decoded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "detector spec") -> "DetectSpec":
        if not isinstance(d, Mapping):
            raise DetectSpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__) - {"extra"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DetectSpecError(f"{where}: unknown key(s) {', '.join(unknown)}")

        def need(key):
            if key not in d:
                raise DetectSpecError(f"{where}: missing {key!r}")
            return d[key]

        def choice(key, options, default):
            v = d.get(key, default)
            if v not in options:
                raise DetectSpecError(f"{where}: {key} {v!r} is not one of {', '.join(options)}")
            return v

        def number(key, default, kind=float, lo=None, hi=None):
            v = d.get(key, default)
            try:
                v = kind(v)
            except (TypeError, ValueError):
                raise DetectSpecError(f"{where}: {key} must be a number, got {v!r}") from None
            if isinfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
                raise DetectSpecError(f"{where}: {key} {v} out of range [{lo}, {hi}]")
            return v

        def numbers(key, default):
            v = d.get(key, default)
            try:
                return tuple(float(x) for x in v)
            except (TypeError, ValueError):
                raise DetectSpecError(f"{where}: {key} must be a list of numbers, got {v!r}") from None

        def triple(key, default):
            v = d.get(key, default)
            try:
                t = tuple(float(x) for x in v)
            except (TypeError, ValueError):
                t = ()
            if len(t) != 3 or not all(np.isfinite(t)):
                raise DetectSpecError(f"{where}: {key} must be 3 numbers (0..255 units), got {v!r}")
            return t

        head = choice("head", HEADS, None) if "head" in d else need("head")
        size = need("input_size")
        try:
            size = tuple(int(v) for v in size)
        except (TypeError, ValueError):
            size = ()
        if len(size) != 2 or min(size) < 1:
            raise DetectSpecError(f"{where}: input_size must be (height, width), got {d['input_size']!r}")
        outputs = need("outputs")
        if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
            raise DetectSpecError(f"{where}: outputs must be a list of tensor names")
        want = {"ssd": 2, "yolox": 1, "yolov8": 1, "end2end": 2}[head]
        if len(outputs) != want:
            raise DetectSpecError(f"{where}: a {head} head has {want} output(s), spec names {len(outputs)}")
        std = triple("std", (1.0, 1.0, 1.0))
        if min(abs(s) for s in std) == 0:
            raise DetectSpecError(f"{where}: std has a zero")
        kwargs: dict[str, Any] = dict(
            head=head, input_size=size, outputs=tuple(outputs),
            layout=choice("layout", ("NHWC", "NCHW"), "NHWC"), color=choice("color", ("rgb", "bgr"), "rgb"),
            mean=triple("mean", (0.0, 0.0, 0.0)), std=std, resize=choice("resize", RESIZES, "stretch"),
            sampling=choice("sampling", SAMPLINGS, "half_pixel"), pad=choice("pad", PADS, "corner"),
            pad_value=number("pad_value", 114.0, lo=0, hi=255),
            person_class=number("person_class", 0, int, lo=0),
            score_threshold=number("score_threshold", 0.05, lo=0, hi=1),
            iou_threshold=number("iou_threshold", 0.5, lo=0, hi=1),
            max_detections=number("max_detections", 100, int, lo=1, hi=MAX_PRE_NMS),
            pre_nms_top_k=number("pre_nms_top_k", 1000, int, lo=1, hi=MAX_PRE_NMS),
            box_scale=numbers("box_scale", (10.0, 10.0, 5.0, 5.0)),
            score_conversion=choice("score_conversion", SCORE_CONVERSIONS, "sigmoid"),
            logit_scale=number("logit_scale", 1.0), decoded=bool(d.get("decoded", False)))
        if head == "ssd":
            try:
                anchors = np.asarray(need("anchors"), dtype=np.float32)
            except (TypeError, ValueError):
                raise DetectSpecError(f"{where}: anchors must be a numeric [A, 4] array") from None
            if anchors.ndim != 2 or anchors.shape[1] != 4 or len(anchors) == 0 or not np.isfinite(anchors).all():
                raise DetectSpecError(f"{where}: anchors must be a finite [A, 4] array (ycenter, xcenter, h, w), "
                                      f"got shape {list(anchors.shape)}")
            if len(kwargs["box_scale"]) != 4 or min(kwargs["box_scale"]) <= 0:
                raise DetectSpecError(f"{where}: box_scale must be 4 positive numbers (y, x, h, w)")
            if kwargs["logit_scale"] <= 0:
                raise DetectSpecError(f"{where}: logit_scale must be positive")
            kwargs["anchors"] = anchors
        if head == "yolox" and not kwargs["decoded"]:
            strides = need("strides")
            try:
                strides = tuple(int(s) for s in strides)
            except (TypeError, ValueError):
                strides = ()
            if not strides or min(strides) < 1:
                raise DetectSpecError(f"{where}: strides must be positive integers, got {d['strides']!r}")
            kwargs["strides"] = strides
        return cls(**kwargs)


def isinfinite(v) -> bool:
    return isinstance(v, float) and not np.isfinite(v)
