"""Heatmap decoders: the function, how heatmap pixels scale to input pixels, and the flip-test shift.

`scale` is "size" when a heatmap pixel covers input/heatmap pixels (msra, dark) and "size-1" when heatmap and
input corners coincide (udp: input/(heatmap - 1)). `flip_shift`: a horizontally flipped heatmap is shifted one
pixel right before fusing, except under UDP's aligned coordinates (mmpose's flip_heatmaps shift_heatmap rule).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderEntry:
    name: str
    function: str  # "module:function": (M, H, W) maps [, blur kernel] -> (locations (M, 2), scores (M,))
    blur: bool  # takes the blur kernel size as its second argument
    scale: str  # "size" or "size-1"
    flip_shift: bool
    label: str


DECODERS = {d.name: d for d in (
    DecoderEntry("msra", "edge_pose.decode.msra:decode_msra", False, "size", True, "argmax + quarter offset"),
    DecoderEntry("dark", "edge_pose.decode.dark:decode_dark", True, "size", True, "distribution-aware (DARK)"),
    DecoderEntry("udp", "edge_pose.decode.udp:decode_udp", True, "size-1", False, "unbiased data processing (UDP)"),
)}


@dataclass(frozen=True)
class DetectHeadEntry:
    """A detector head: the function that turns its raw outputs into person boxes, and what it reads."""

    name: str
    function: str  # "module:function": (outputs, spec, geometry, stats) -> boxes [M, 5] x, y, w, h, score
    outputs: int  # how many output tensors it takes, in the order the spec names them
    label: str


DETECT_HEADS = {h.name: h for h in (
    DetectHeadEntry("ssd", "edge_pose.detect.ssd:decode", 2, "TF Object Detection API SSD: anchors + box coder"),
    DetectHeadEntry("yolox", "edge_pose.detect.yolox:decode", 1, "YOLOX raw head [1, A, 5 + C] (grid x stride)"),
    DetectHeadEntry("yolov8", "edge_pose.detect.yolov8:decode", 1, "YOLOv8-style head [1, 4 + C, A]"),
    DetectHeadEntry("end2end", "edge_pose.detect.end2end:decode", 2, "graph ending in NMS: dets [1, N, 5], labels"),
)}
