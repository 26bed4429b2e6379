"""The one way tests reach ../shared (real models, COCO images, mmpose reference outputs).

Missing material fails the test under CI=true (CI must never pass by skipping) and skips it elsewhere, with the
path that was looked for.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))


def missing(reason: str) -> None:
    """Something a test needs is absent: a failure under CI=true (CI must never pass by skipping), else a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        missing(f"shared test material missing: {path} (set EDGE_POSE_SHARED to the shared/ folder)")
    return path


def fixture(name: str) -> Path:
    return shared("fixtures", "mmpose", name)


def coco_mini() -> Path:
    return shared("data", "coco-mini")


SIMPLEBASELINE_ONNX = ("models", "simplebaseline-mbv2-ultralight", "model.onnx")
CPM_PB = ("models", "cpm-mbv2-aic14", "model.pb")
CPM_TFLITE = ("models", "cpm-mbv2-aic14", "model.tflite")
