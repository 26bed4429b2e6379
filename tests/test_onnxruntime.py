"""ONNX bundles on ONNX Runtime: the exporter's three precisions against the source, the providers read back after
the session is made (a provider that did not take is a skipped candidate, never a silent fallback), and Jetson
profiles that prefer TensorRT, then CUDA, then the CPU paths. Real onnxruntime (its CPU build: no GPU here)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from shared import coco_mini

from edge_pose.backends.onnxruntime import OnnxRuntimeBackend, provider_chain
from edge_pose.select import SKIPPED, open_best


def _crops(source, n=6):
    from calibration.datasets import load_crops
    from edge_pose.preprocess import to_model_input

    crops = load_crops(coco_mini() / "test_coco.json", source.input.size).crops[:n]
    return crops, to_model_input(crops, source.input)


def test_onnx_fp32_bundle_on_onnxruntime_equals_the_source(onnx_source, sb_onnx_bundles):
    bundle = sb_onnx_bundles["fp32"]
    assert (bundle.manifest.format, bundle.manifest.execution_precision) == ("onnx", "f32")
    session = OnnxRuntimeBackend().load(bundle, "cpu", {"threads": 1})
    d = session.describe()
    assert d["providers"][0] == "CPUExecutionProvider" and d["execution_precision"] == "f32" and d["threads"] == 1
    _, x = _crops(onnx_source)
    got, want = session.infer(x), onnx_source.run(x)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_onnx_fp16_is_a_float16_graph_validated_at_f16(onnx_source, sb_onnx_bundles):
    """fp16 ONNX computes in fp16 (unlike fp16-weight formats); OpenVINO's CPU would compute it otherwise: skipped."""
    import onnx

    bundle = sb_onnx_bundles["fp16"]
    assert bundle.manifest.execution_precision == "f16"
    graph = onnx.load(str(bundle.model_path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O kept float32
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    crops, x = _crops(onnx_source)
    loaded = open_best(bundle, device="generic-x86-64")
    assert loaded.chosen.backend == "onnxruntime"
    got, want = loaded.session.infer(x), onnx_source.run(x)
    peaks = lambda h: np.stack(np.unravel_index(h.reshape(*h.shape[:2], -1).argmax(-1), h.shape[2:]), -1)  # noqa
    assert np.abs(peaks(got) - peaks(want)).max() <= 1  # heatmap px
    ov = open_best(bundle, device="generic-x86-64", backend="openvino", accelerator="CPU")
    asked = next(c for c in ov.plan.candidates if c.requested)
    assert asked.status == SKIPPED and "was validated at f16" in asked.reason


def test_onnx_int8_is_qdq_with_per_channel_weights(onnx_source, sb_onnx_bundles):
    import onnx

    model = onnx.load(str(sb_onnx_bundles["int8"].model_path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    axis_set = [a for n in model.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute if a.name == "axis"]
    assert axis_set  # per-channel weight scales carry an axis
    _, x = _crops(onnx_source)
    got = OnnxRuntimeBackend().load(sb_onnx_bundles["int8"], "cpu", {}).infer(x)
    want = onnx_source.run(x)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


@pytest.fixture()
def onnx_dir(sb_onnx_bundles, tmp_path):
    root = tmp_path / "bundles"
    for p, b in sb_onnx_bundles.items():
        shutil.copytree(b.path, root / b.path.name)
    return root


def test_jetson_without_gpu_skips_tensorrt_and_cuda_with_the_reason_and_runs_on_cpu(onnx_dir):
    loaded = open_best(onnx_dir, device="jetson-orin-nano")
    gpu = [c for c in loaded.plan.candidates if c.backend == "onnxruntime" and c.accelerator in ("tensorrt", "cuda")]
    assert [c.accelerator for c in gpu[:2]] == ["tensorrt", "tensorrt"]  # fp16 then int8, the profile's order
    assert gpu and all(c.status == SKIPPED and "not available in this onnxruntime build" in c.reason for c in gpu)
    assert loaded.chosen.backend == "onnxruntime" and loaded.chosen.accelerator == "cpu"
    assert loaded.session.describe()["providers"][0] == "CPUExecutionProvider"


def test_a_provider_that_does_not_take_is_refused_not_run(onnx_dir, monkeypatch):
    """The known trap: the build claims TensorRT and CUDA (faked list), the session silently lands on the CPU; the
    read-back refuses both as skipped candidates and the plan goes on, in the profile's order, to the CPU path."""
    import onnxruntime as ort

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", *real])
    loaded = open_best(onnx_dir, device="jetson-orin-nano")
    tried = [c for c in loaded.plan.candidates if c.backend == "onnxruntime" and c.bundle is not None
             and c.accelerator in ("tensorrt", "cuda")]
    order = [c.accelerator for c in tried]
    assert order.index("tensorrt") < order.index("cuda")
    for c in tried:
        assert c.status == SKIPPED and "did not take: the session runs on CPUExecutionProvider" in c.reason, c.reason
    assert loaded.chosen.accelerator == "cpu" and loaded.session.describe()["providers"][0] == "CPUExecutionProvider"


def test_provider_chain_asks_tensorrt_for_the_validated_precision_with_caches(sb_onnx_bundles, tmp_path):
    chain = dict(provider_chain("tensorrt", sb_onnx_bundles["fp16"], tmp_path))
    trt = chain["TensorrtExecutionProvider"]
    assert list(chain) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert trt["trt_fp16_enable"] == "1" and trt["trt_int8_enable"] == "0"
    assert trt["trt_engine_cache_enable"] == "1" and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["trt_timing_cache_enable"] == "1"
    fp32 = dict(provider_chain("tensorrt", sb_onnx_bundles["fp32"], tmp_path))
    assert fp32["TensorrtExecutionProvider"]["trt_fp16_enable"] == "0"
    assert fp32["CUDAExecutionProvider"]["use_tf32"] == "0"  # f32 means f32, not TF32 matmuls
    assert dict(provider_chain("tensorrt", sb_onnx_bundles["int8"], tmp_path))["TensorrtExecutionProvider"][
        "trt_int8_enable"] == "1"
    assert list(dict(provider_chain("cpu", sb_onnx_bundles["fp32"], tmp_path))) == ["CPUExecutionProvider"]


def test_cli_explain_on_jetson_lists_the_skipped_gpu_providers(onnx_dir):
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([str(root / ".venv/bin/edge-pose"), "explain", str(onnx_dir), "--device", "jetson-orin-nano",
                        "--json"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    skipped = [c for c in plan["candidates"] if c["accelerator"] in ("tensorrt", "cuda") and c["bundle"] != "-"]
    assert skipped and all("not available in this onnxruntime build" in c["reason"] for c in skipped)
    assert plan["runs"]["backend"] == "onnxruntime" and plan["runs"]["providers"][0] == "CPUExecutionProvider"


def test_predict_on_onnxruntime_gives_the_keypoints_of_the_other_backends(sb_onnx_bundles, simplebaseline_ov_bundle,
                                                                          tmp_path):
    """`edge-pose predict --backend onnxruntime` on the ONNX fp32 bundle and OpenVINO on its fp32 IR of the same
    model: the same people, keypoints within a hundredth of a pixel."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    mini = coco_mini()
    out = {}
    for name, bundle, backend in (("ort", sb_onnx_bundles["fp32"], "onnxruntime"),
                                  ("ov", simplebaseline_ov_bundle, "openvino")):
        r = subprocess.run([str(root / ".venv/bin/edge-pose"), "predict", str(bundle.path), str(mini), "--boxes",
                            str(mini / "test_coco.json"), "--backend", backend, "--no-draw", "--out",
                            str(tmp_path / name)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["runs"]["backend"] == backend and summary["runs"]["execution_precision"] == "f32"
        out[name] = json.loads((tmp_path / name / "keypoints.json").read_text())
    assert len(out["ort"]) == len(out["ov"]) > 0
    a = np.array([p["keypoints"] for p in out["ort"]]).reshape(len(out["ort"]), -1, 3)
    b = np.array([p["keypoints"] for p in out["ov"]]).reshape(len(out["ov"]), -1, 3)
    assert np.abs(a[..., :2] - b[..., :2]).max() < 0.05 and np.abs(a[..., 2] - b[..., 2]).max() < 1e-3
