"""A ready .tflite pose model (the shared CPM, 14 AIC joints) packaged as a bundle without conversion: the file is
copied as it is, the facts it holds are read from it, the rest come from the usual flags, and a bundle never judged
against a source says so (manifest, selector). Predicting through the bundle gives what the .tflite itself gives."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared import CPM_TFLITE, shared

from edge_pose.bundle import load_bundle, sha256_file

ROOT = Path(__file__).resolve().parents[1]
FACTS = ["--color", "bgr", "--mean", "0", "--std", "1", "--keypoints", "aic14"]  # the model's NOTICE


def _cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    out = tmp_path_factory.mktemp("ready")
    r = _cli("convert", str(shared(*CPM_TFLITE)), *FACTS, "--out", str(out / "b"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "b" / "cpm-mbv2-aic14-tflite-fp32", r


def test_the_file_is_copied_as_is_with_the_facts_it_holds(packaged):
    path, r = packaged
    m = load_bundle(path).manifest
    assert m.files == {"model.tflite": sha256_file(shared(*CPM_TFLITE))}  # byte for byte the user's file
    assert (m.format, m.precision, m.execution_precision) == ("tflite", "fp32", "f32")
    assert (m.input.name, m.input.size, m.input.layout, m.input.dtype) == ("image", (192, 192), "NHWC", "float32")
    assert (m.input.color, m.input.mean, m.input.std) == ("bgr", (0, 0, 0), (1, 1, 1))
    assert (m.output.name, m.output.size, m.output.layout) == ("Convolutional_Pose_Machine/stage_5_out", (96, 96),
                                                               "NHWC")
    assert len(m.keypoints.names) == 14 and m.keypoints.names[0] == "head_top"
    assert m.provenance["source_kind"] == "tflite" and "not converted" in m.provenance["export_notes"][0]
    # run once on generated images (no data given), and marked as what it is: packaged, not judged
    f = m.fidelity
    assert f["judged"] is False and f["passed"] is None and f["degraded"] is False and f["reference"] is None
    assert f["evaluation"]["kind"] == "generated" and "finite heatmaps [14, 96, 96]" in f["checked"]
    assert not m.judged and not m.degraded
    assert "packaged as is, not judged" in r.stdout
    shown = _cli("inspect", str(path))
    assert shown.returncode == 0 and "judged      False" in shown.stdout


def test_predict_through_the_bundle_equals_the_tflite_itself(packaged, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edge_pose.decode import decode_heatmaps
    from edge_pose.preprocess import crop_people, crop_to_image

    path, _ = packaged
    image_path = shared("data", "astronaut.png")
    r = _cli("predict", str(path), str(image_path), "--out", str(tmp_path / "p"), "--no-draw")
    assert r.returncode == 0, r.stderr[-3000:]
    (person,) = json.loads((tmp_path / "p" / "keypoints.json").read_text())
    got = np.array(person["keypoints"], np.float32).reshape(14, 3)

    # the same .tflite run directly: the whole frame as the person box, raw 0..255 BGR pixels as the NOTICE says
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    crops = crop_people(image, [[0, 0, w, h]], (192, 192))
    it = Interpreter(model_path=str(shared(*CPM_TFLITE)))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], crops.images.astype(np.float32))
    it.invoke()
    heatmaps = it.get_tensor(it.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
    kp, scores = decode_heatmaps(heatmaps, "msra", (192, 192), 11, layout="NCHW")
    want = crop_to_image(kp, crops.centers, crops.scales, (192, 192))[0]
    assert scores.max() > 0.3  # a real person: real peaks, not a flat map
    np.testing.assert_allclose(got[:, :2], want, atol=2e-3)  # predict rounds to 3 decimals
    np.testing.assert_allclose(got[:, 2], scores[0], atol=2e-3)


def test_a_judged_bundle_is_chosen_before_one_never_judged(packaged, tmp_path):
    from edge_pose.select import open_best

    path, _ = packaged
    both = tmp_path / "both"
    shutil.copytree(path, both / "a-packaged")
    shutil.copytree(path, both / "b-judged")
    manifest = json.loads((both / "b-judged" / "edge_pose.json").read_text())
    manifest["fidelity"] = {"judged": True, "passed": True, "degraded": False, "heatmap_max_rel_diff": 0.0}
    (both / "b-judged" / "edge_pose.json").write_text(json.dumps(manifest))
    loaded = open_best(both, device="generic-x86-64", records=False)
    assert loaded.bundle.path.name == "b-judged"
    alone = open_best(both / "a-packaged", device="generic-x86-64", records=False)
    assert "never judged against a source" in alone.chosen.reason


def test_missing_facts_are_one_line_listing_the_flags(tmp_path):
    r = _cli("convert", str(shared(*CPM_TFLITE)), "--keypoints", "aic14", "--out", str(tmp_path / "b"))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(shared(*CPM_TFLITE)) in last and all(f in last for f in ("--color", "--mean", "--std"))
    assert "--layout" not in last and "--input-size" not in last and "--output" not in last  # the file says those
    assert not (tmp_path / "b").exists()


def test_a_truncated_tflite_is_one_line_naming_it_and_nothing_is_written(tmp_path):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(shared(*CPM_TFLITE).read_bytes()[:200_000])
    r = _cli("convert", str(bad), *FACTS, "--out", str(tmp_path / "b"))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(bad) in last and "TFLite" in last
    assert not (tmp_path / "b").exists()


def test_another_precision_or_format_is_refused_in_one_line(tmp_path):
    r = _cli("convert", str(shared(*CPM_TFLITE)), *FACTS, "--precision", "int8", "--format", "openvino",
             "--out", str(tmp_path / "b"))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "--format openvino" in last and "--precision int8" in last
    assert "packaged as it is" in last and not (tmp_path / "b").exists()


def test_a_reference_is_for_ready_files_only():
    from converters.errors import SourceError
    from converters.package_ready import reference_option

    assert reference_option("m.tflite", "m.pb") == {"reference": "m.pb"} and reference_option("m.pb", None) == {}
    with pytest.raises(SourceError, match="--reference judges a ready .tflite or .xml"):
        reference_option("m.pb", "other.pb")
