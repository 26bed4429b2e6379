"""`edge-pose convert` end to end on the shared ONNX (TFLite int8 + OpenVINO int8, calibrated on coco-mini detector
boxes, checked on its ground-truth people with the real thresholds), then `validate` and `inspect` on the bundles;
bad calibration data fails in one line and leaves nothing that looks like a bundle."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
from shared import SIMPLEBASELINE_ONNX, coco_mini, shared

from converters.cli_common import MissingToolError, convert_tool_errors
from converters.targets import resolve_targets
from edge_pose.bundle import is_bundle, load_bundle, resolve_bundles
from edge_pose.cli.main import main

FACTS = ["--color", "rgb", "--mean", "123.675,116.28,103.53", "--std", "58.395,57.12,57.375", "--keypoints", "coco17"]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """One real conversion (the expensive part of this file), shared by the tests below."""
    out = tmp_path_factory.mktemp("convert") / "bundles"
    mini = coco_mini()
    rc, stdout, stderr = _cli(["convert", str(shared(*SIMPLEBASELINE_ONNX)), *FACTS,
                               "--format", "tflite", "--format", "openvino", "--precision", "int8",
                               "--calib", str(mini / "test_coco.json"), "--boxes",
                               str(mini / "test_coco_det_AP_H_56.json"), "--calib-size", "24", "--json",
                               "--out", str(out)])
    assert rc == 0, stderr[-3000:]
    return out, json.loads(stdout), stderr


def test_convert_writes_guarded_int8_bundles(converted):
    out, rows, stderr = converted
    names = sorted(p.name for p in out.iterdir())
    assert names == ["simplebaseline-mbv2-ultralight-openvino-int8", "simplebaseline-mbv2-ultralight-tflite-int8"]
    for row in rows:
        assert row["passed"] and not row["degraded"]
        assert row["oks_agreement"] >= 0.95 and row["ap_drop"] <= 1.0 and row["crops"] == 12
    for bundle in resolve_bundles(out).bundles:
        m = bundle.manifest
        assert m.precision == "int8" and m.model["name"] == "simplebaseline-mbv2-ultralight"
        f = m.fidelity
        assert f["passed"] and f["oks_agreement"] >= 0.95 and f["ap_drop"] <= 1.0 and f["mitigation"]
        assert f["thresholds"]["int8_oks_agreement"] == 0.95 and f["evaluation"]["ground_truth"]
        p = m.provenance
        assert p["source_sha256"] and len(p["source_sha256"]) == 64
        assert p["calibration"]["kind"] == "coco-det" and p["calibration"]["crops"] == 24
        assert {"openvino", "edge-pose", "onnx2tf"} <= set(p["tools"])
        assert len(m.keypoints.names) == 17 and m.keypoints.sigmas and m.decode.method == "msra"
    assert "calibration set" in stderr and "(< 32)" in stderr  # 24 crops warn as too small to trust


def test_validate_against_source_and_bundle(converted):
    out, _, _ = converted
    tfl = out / "simplebaseline-mbv2-ultralight-tflite-int8"
    ov = out / "simplebaseline-mbv2-ultralight-openvino-int8"
    data = str(coco_mini() / "test_coco.json")
    rc, stdout, _ = _cli(["validate", str(tfl), "--reference", str(shared(*SIMPLEBASELINE_ONNX)), "--data", data,
                          "--json"])
    figures = json.loads(stdout)
    assert rc == 0 and figures["passed"] and figures["crops"] == 12
    stored = load_bundle(tfl).manifest.fidelity
    assert figures["oks_agreement"] == pytest.approx(stored["oks_agreement"], abs=1e-6)
    rc, stdout, _ = _cli(["validate", str(ov), "--reference", str(tfl), "--data", data])
    assert "OKS" in stdout and "bundle simplebaseline-mbv2-ultralight tflite/int8" in stdout


def test_inspect_prints_manifest(converted):
    out, _, _ = converted
    rc, stdout, _ = _cli(["inspect", str(out / "simplebaseline-mbv2-ultralight-openvino-int8")])
    assert rc == 0
    for text in ("precision   int8", "fidelity:", "oks_agreement", "mitigation", "source_sha256", "left_shoulder"):
        assert text in stdout


@pytest.mark.parametrize("case, message", [
    ("no_images", "none of its 4 images found"),
    ("corrupt_image", "bad.png: not a readable image"),
    ("broken_json", "broken JSON"),
])
def test_bad_calibration_data_fails_in_one_line(tmp_path, case, message):
    if case == "no_images":
        data = tmp_path / "test_coco.json"
        shutil.copy(coco_mini() / "test_coco.json", data)
    elif case == "corrupt_image":
        data = tmp_path / "frames"
        data.mkdir()
        shutil.copy(coco_mini() / "000000000785.jpg", data / "good.jpg")
        (data / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    else:
        data = tmp_path / "broken.json"
        data.write_text('{"images": [{"id": 1,')
    out = tmp_path / "out"
    rc, _, stderr = _cli(["convert", str(shared(*SIMPLEBASELINE_ONNX)), *FACTS, "--format", "openvino",
                          "--precision", "int8", "--calib", str(data), "--out", str(out)])
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert rc == 2 and len(errors) == 1 and message in errors[0]
    assert not (out.exists() and any(is_bundle(p) for p in out.iterdir()))


def test_targets_from_device_profile_and_flags():
    targets, _, _ = resolve_targets(device="rpi5")
    assert targets[0] == ("tflite", "int8") and all(f == "tflite" for f, _ in targets)
    targets, notes, _ = resolve_targets(["openvino"], ["dynamic", "fp16"])
    assert targets == [("openvino", "fp16")] and "no dynamic" in notes[0]
    with pytest.raises(Exception, match="need calibration crops"):
        resolve_targets(["tflite"], ["int8"], have_calibration=False)


def test_missing_conversion_tool_is_one_line():
    with pytest.raises(MissingToolError, match=r"pip install 'edge-pose\[convert\]'"):
        with convert_tool_errors():
            raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")


def test_missed_threshold_fails_without_bundle_unless_allow_degraded(tmp_path):
    """An fp32 OpenVINO IR differs from onnxruntime by ~1e-6: a 1e-12 threshold cannot be met."""
    mini = coco_mini()
    argv = ["convert", str(shared(*SIMPLEBASELINE_ONNX)), *FACTS, "--format", "openvino", "--precision", "fp32",
            "--eval", str(mini / "test_coco.json"), "--max-rel-diff", "1e-12", "--out", str(tmp_path / "out")]
    rc, _, stderr = _cli(argv)
    assert rc == 1 and "misses the fidelity thresholds" in stderr and "--allow-degraded" in stderr  # as validate
    assert not (tmp_path / "out").exists() or not any(is_bundle(p) for p in (tmp_path / "out").iterdir())
    rc, stdout, _ = _cli(argv + ["--allow-degraded", "--json"])
    row = json.loads(stdout)[0]
    assert rc == 0 and row["degraded"] and not row["passed"]
    m = load_bundle(row["path"]).manifest
    assert m.fidelity["degraded"] and not m.fidelity["passed"] and m.provenance["calibration"] is None
    rc, stdout, _ = _cli(["validate", row["path"], "--reference", str(shared(*SIMPLEBASELINE_ONNX)),
                          "--data", str(mini / "test_coco.json")])  # the manifest's 1e-12 bar: missed again
    assert rc == 1 and "missed: " in stdout  # the same status as convert's miss


def test_bench_record_ranks_the_int8_twins_by_measured_p50(converted, tmp_path):
    """A TFLite int8 and an OpenVINO int8 bundle of the same model: after `bench --record`, explain chooses the one
    with the lower recorded p50 on this machine and says so (the profile alone put OpenVINO first)."""
    from edge_pose import records

    out, _, _ = converted
    work = tmp_path / "twins"
    shutil.copytree(out, work)
    rc, _, stderr = _cli(["bench", str(work), "--device", "generic-x86-64", "--runs", "20", "--warmup", "3",
                          "--record"])
    assert rc == 0, stderr[-2000:]
    p50 = {e.bundle: e.p50_ms for e in records.read_entries(work / records.FILENAME,
                                                             records.device_id("generic-x86-64"))}
    assert len(p50) == 2
    rc, stdout, _ = _cli(["explain", str(work), "--device", "generic-x86-64", "--json"])
    plan = json.loads(stdout)
    chosen = next(c for c in plan["candidates"] if c["status"] == "chosen")
    print(f"recorded p50 ms: {p50}; chosen {chosen['bundle']}")
    assert chosen["bundle"] == min(p50, key=p50.get) and "fastest recorded here" in chosen["reason"]
    assert plan["ranking"].startswith("by recorded p50")
