"""Keypoint sets the project knows by name: names, skeleton edges, flip pairs and OKS sigmas."""
from __future__ import annotations

import json
from pathlib import Path

from edge_pose.bundle import BundleError, KeypointSpec

COCO17_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
COCO17_SKELETON = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
]
COCO17_FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
COCO17_SIGMAS = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
    0.087, 0.087, 0.089, 0.089,
]

# AI Challenger order, as the shared CPM model uses it.
AIC14_NAMES = [
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
]
AIC14_SKELETON = [
    (0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (2, 8), (5, 11), (8, 9), (9, 10),
    (11, 12), (12, 13), (8, 11),
]
AIC14_FLIP_PAIRS = [(2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13)]
# AI Challenger's published sigmas for its 14 joints.
AIC14_SIGMAS = [
    0.0223, 0.0223, 0.0791, 0.0721, 0.0608, 0.0791, 0.0721, 0.0608, 0.1069, 0.0867, 0.0892,
    0.1069, 0.0867, 0.0892,
]
# COCO-17 index of each AIC-14 joint (None where COCO has no such joint).
AIC14_TO_COCO17 = [None, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15]


def coco17() -> KeypointSpec:
    return KeypointSpec(list(COCO17_NAMES), list(COCO17_SKELETON), list(COCO17_FLIP_PAIRS), list(COCO17_SIGMAS))


def aic14() -> KeypointSpec:
    return KeypointSpec(list(AIC14_NAMES), list(AIC14_SKELETON), list(AIC14_FLIP_PAIRS), list(AIC14_SIGMAS))


KNOWN = {"coco17": coco17, "aic14": aic14}


def keypoint_spec(name_or_file: str) -> KeypointSpec:
    """`coco17`, `aic14`, or a JSON file with names (and optionally skeleton, flip_pairs, sigmas)."""
    if name_or_file in KNOWN:
        return KNOWN[name_or_file]()
    path = Path(name_or_file)
    if not path.is_file():
        raise BundleError(f"{name_or_file}: not a known keypoint set ({', '.join(KNOWN)}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
        spec = KeypointSpec(
            names=[str(n) for n in data["names"]],
            skeleton=[tuple(e) for e in data.get("skeleton", [])],
            flip_pairs=[tuple(e) for e in data.get("flip_pairs", [])],
            sigmas=[float(s) for s in data.get("sigmas", [])],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: not a keypoint file ({type(exc).__name__}: {exc})") from None
    return spec
