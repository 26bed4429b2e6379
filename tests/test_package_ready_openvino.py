"""A ready OpenVINO IR (made here from the shared CPM frozen graph, static input) packaged without conversion and
judged against `--reference model.pb` on coco-mini's crops, as a converted bundle is; its precision is read from its
weights; an .xml without its .bin is one line and writes nothing."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from shared import CPM_PB, coco_mini, shared

from edge_pose.bundle import load_bundle, sha256_file

ROOT = Path(__file__).resolve().parents[1]
FACTS = ["--color", "bgr", "--mean", "0", "--std", "1", "--keypoints", "aic14"]


def _cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _ir(path: Path, fp16: bool) -> Path:
    import openvino as ov

    model = ov.convert_model(str(shared(*CPM_PB)), input=[("image:0", [1, 192, 192, 3])],
                             output=["Convolutional_Pose_Machine/stage_5_out:0"])
    ov.save_model(model, str(path), compress_to_fp16=fp16)
    return path


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    return _ir(tmp_path_factory.mktemp("ir") / "cpm.xml", fp16=False)


@pytest.fixture(scope="module")
def packaged(ir):
    out = ir.parent / "b"
    r = _cli("convert", str(ir), *FACTS, "--reference", str(shared(*CPM_PB)), "--calib",
             str(coco_mini() / "test_coco.json"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "cpm-openvino-fp32"


def test_the_ir_is_packaged_as_is_and_judged_against_its_reference(ir, packaged):
    m = load_bundle(packaged).manifest
    assert m.files == {"model.xml": sha256_file(ir), "model.bin": sha256_file(ir.with_suffix(".bin"))}
    assert (m.format, m.precision, m.execution_precision) == ("openvino", "fp32", "f32")
    assert (m.input.size, m.input.layout, m.output.size, m.output.layout) == ((192, 192), "NHWC", (96, 96), "NHWC")
    f = m.fidelity
    assert f["judged"] is True and f["passed"] is True and not m.degraded
    assert f["reference"].startswith("source (frozen_graph)") and f["evaluation"]["ground_truth"]
    assert f["heatmap_max_rel_diff"] <= 1e-4 and f["mitigation"] == "packaged as is, not converted"


def test_the_runtime_compiles_it_at_the_manifest_precision(packaged):
    from edge_pose.select import open_best

    loaded = open_best(packaged, device="generic-x86-64", backend="openvino", records=False)
    d = loaded.session.describe()
    assert d["execution_precision"] == "f32" == d["validated_precision"]  # read back, not bf16 on this CPU


def test_missing_the_bar_fails_like_the_guard_and_writes_nothing(ir, tmp_path):
    r = _cli("convert", str(ir), *FACTS, "--reference", str(shared(*CPM_PB)), "--max-rel-diff", "1e-9",
             "--out", str(tmp_path / "b"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "packaged as is misses the fidelity thresholds" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "b").exists()


def test_fp16_weights_read_as_fp16_and_run_in_f32(tmp_path):
    from converters.sources.ready import read_ready
    from registry import execution_of

    ready = read_ready(_ir(tmp_path / "cpm16.xml", fp16=True), color="bgr", mean=0, std=1, keypoints="aic14")
    assert ready.precision == "fp16" and execution_of("openvino", ready.precision) == "f32"


def test_an_xml_without_its_bin_is_one_line_and_nothing_is_written(ir, tmp_path):
    lone = tmp_path / "lone.xml"
    lone.write_bytes(ir.read_bytes())
    r = _cli("convert", str(lone), *FACTS, "--out", str(tmp_path / "b"))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(lone) in last and "lone.bin" in last
    assert not (tmp_path / "b").exists()
