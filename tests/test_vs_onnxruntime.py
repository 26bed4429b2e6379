"""benchmarks/vs_onnxruntime.py, short: one timed round with a ready fp32 bundle instead of a conversion.

With no quantisation between them, the hand-written onnxruntime pipeline and edge-pose must find nearly the same
keypoints: that checks the baseline's crop geometry and decode as much as edge-pose's. (This test bundle's OpenVINO
CPU plugin runs bf16 on CPUs with native bf16, which moves keypoints by ~0.3 px on average; the script's own
TFLite fp32 bundle agreed with onnxruntime to 0.000 px.)
"""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_onnxruntime.py"


def test_vs_onnxruntime_runs_and_fp32_pipelines_agree(simplebaseline_ov_bundle, tmp_path):
    out = tmp_path / "vs.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(simplebaseline_ov_bundle.path), "--rounds", "1",
                          "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "onnxruntime (per person)" in res.stdout and "edge-pose" in res.stdout
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["people"] > 10
    base, ours = result["rows"]
    assert base["fps"] > 0 and ours["fps"] > 0 and ours["speedup"] == ours["speedup"]  # measured, finite
    agree = ours["agreement_vs_onnxruntime"]
    exact = result["edge_pose_runs"].get("inference_precision") in (None, "f32")
    assert agree["mean_px"] < (0.05 if exact else 0.6) and agree["oks"] > (0.999 if exact else 0.98), agree
