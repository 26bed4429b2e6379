"""Float conversions need no data: without --calib/--eval their fidelity is judged on generated images, and the
command and the manifest say so. int8 still needs real crops."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hourglass_graph import build_hourglass_pb

ROOT = Path(__file__).resolve().parents[1]
FACTS = ["--color", "bgr", "--mean", "0", "--std", "1", "--keypoints", "aic14"]


def _convert(*args, cwd):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), "convert", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_fp32_without_calib_is_judged_on_generated_images(tmp_path):
    pb = build_hourglass_pb(tmp_path / "hourglass.pb")
    r = _convert(str(pb), *FACTS, "--format", "tflite", "--precision", "fp32", "--out", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    said = [ln for ln in r.stderr.splitlines() if "generated images (no --calib given)" in ln]
    assert len(said) == 1, r.stderr[-2000:]
    manifest = json.loads((tmp_path / "b" / "hourglass-tflite-fp32" / "edge_pose.json").read_text())
    evaluation = manifest["fidelity"]["evaluation"]
    assert evaluation["source"] == "generated images (no --calib given)" and evaluation["kind"] == "generated"
    assert evaluation["crops"] >= 8 and manifest["fidelity"]["passed"]
    assert manifest["fidelity"]["heatmap_max_rel_diff"] <= 1e-4


def test_int8_without_calib_still_needs_data(tmp_path):
    pb = build_hourglass_pb(tmp_path / "hourglass.pb")
    r = _convert(str(pb), *FACTS, "--format", "tflite", "--precision", "int8", "--out", "b", cwd=tmp_path)
    assert r.returncode == 2
    assert "--calib" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
