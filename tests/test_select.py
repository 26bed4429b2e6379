"""Selection: plan order follows the device profile, requests that cannot run here fall back with a reason,
refused bundles are refused clearly, and `edge-pose explain` shows the plan (real bundles, real runtimes)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pose.bundle import BundleError
from edge_pose.select import CHOSEN, FAILED, SKIPPED, STANDBY, DeviceError, neutral_input, open_best

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def both(cpm_bundle, simplebaseline_ov_bundle, tmp_path_factory):
    """A directory holding a LiteRT and an OpenVINO bundle."""
    root = tmp_path_factory.mktemp("both")
    shutil.copytree(cpm_bundle.path, root / "cpm-tflite-fp32")
    shutil.copytree(simplebaseline_ov_bundle.path, root / "sb-openvino-fp32")
    return root


def _runnable(plan):
    return [(c.name, c.backend, c.accelerator) for c in plan.candidates if c.bundle is not None
            and c.status != SKIPPED]


@pytest.mark.parametrize("device, first", [("generic-x86-64", "sb-openvino-fp32"),
                                           ("core-ultra-meteor-lake", "sb-openvino-fp32"),
                                           ("generic-arm64", "cpm-tflite-fp32")])
def test_plan_order_follows_profile(both, device, first):
    loaded = open_best(both, device=device, threads=1)
    order = _runnable(loaded.plan)
    assert order[0][0] == first and loaded.chosen.name == first and loaded.chosen.status == CHOSEN
    assert {n for n, _, _ in order} == {"cpm-tflite-fp32", "sb-openvino-fp32"}
    statuses = [c.status for c in loaded.plan.candidates if c.bundle is not None and c.status != SKIPPED]
    assert statuses[0] == CHOSEN and set(statuses[1:]) == {STANDBY}
    out = loaded.session.infer(neutral_input(loaded.bundle))
    assert out.shape[1] == len(loaded.bundle.manifest.keypoints.names) and np.isfinite(out).all()


def test_profile_that_does_not_list_a_format_skips_it_with_reason(both):
    loaded = open_best(both, device="rpi5")
    sb = next(c for c in loaded.plan.candidates if c.name == "sb-openvino-fp32")
    assert sb.status == SKIPPED and "not in profile rpi5's preferences" in sb.reason
    missing = [c for c in loaded.plan.candidates if c.bundle is None]
    assert any(c.precision == "int8" and "no tflite/int8 bundle" in c.reason for c in missing)
    assert loaded.session.describe()["threads"] == 4  # the profile's thread count


def test_named_gpu_delegate_that_does_not_exist_falls_back_with_reason(cpm_bundle, tmp_path):
    lib = tmp_path / "libtensorflowlite_gpu_delegate.so"
    loaded = open_best(cpm_bundle.path, device="jetson-orin-nano", delegate=str(lib), threads=1)
    gpu = [c for c in loaded.plan.candidates if c.accelerator in ("gpu", "delegate") and c.bundle is not None]
    assert gpu and all(c.status in (SKIPPED, FAILED) for c in gpu)
    assert any(str(lib) in c.reason and "not found" in c.reason for c in gpu)
    assert (loaded.chosen.backend, loaded.chosen.accelerator) == ("litert", "cpu")


def test_requesting_npu_without_one_falls_back_with_reason(simplebaseline_ov_bundle):
    import openvino as ov

    if "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    loaded = open_best(simplebaseline_ov_bundle.path, device="generic-x86-64", accelerator="NPU", threads=1)
    first = loaded.plan.candidates[0]
    assert first.accelerator == "NPU" and first.status == SKIPPED and "NPU not available" in first.reason
    assert loaded.chosen.accelerator == "CPU" and loaded.session.describe()["execution_devices"] == ["CPU"]


def test_core_ultra_profile_on_this_machine_falls_back_from_npu_and_gpu(simplebaseline_ov_bundle, tmp_path):
    import openvino as ov

    if {"NPU", "GPU"} & {d.split(".")[0] for d in ov.Core().available_devices}:
        pytest.skip("this machine has an NPU or GPU")
    # an int8-named copy so the NPU/GPU preferences have a bundle to try
    copy = Path(shutil.copytree(simplebaseline_ov_bundle.path, tmp_path / "sb-int8"))
    doc = json.loads((copy / "edge_pose.json").read_text())
    doc["precision"] = "int8"
    (copy / "edge_pose.json").write_text(json.dumps(doc))
    loaded = open_best(copy, device="core-ultra-lunar-lake", threads=1)
    tried = {c.accelerator: c for c in loaded.plan.candidates if c.bundle is not None}
    assert tried["NPU"].status == SKIPPED and "NPU not available" in tried["NPU"].reason
    assert tried["GPU"].status == SKIPPED and "GPU not available" in tried["GPU"].reason
    assert loaded.chosen.accelerator == "CPU"


def test_corrupt_bundle_alone_is_refused_and_beside_a_good_one_is_listed(cpm_bundle, simplebaseline_ov_bundle,
                                                                         tmp_path):
    bad = Path(shutil.copytree(cpm_bundle.path, tmp_path / "dir" / "bad"))
    (bad / "model.tflite").write_bytes(b"\0" * 64 + (bad / "model.tflite").read_bytes()[64:])
    with pytest.raises(BundleError, match="sha256"):
        open_best(bad)
    shutil.copytree(simplebaseline_ov_bundle.path, tmp_path / "dir" / "good")
    loaded = open_best(tmp_path / "dir", device="generic-x86-64", threads=1)
    assert loaded.chosen.name == "good"
    refused = [c for c in loaded.plan.candidates if c.name == "bad"]
    assert refused and "sha256" in refused[0].reason


def test_manifest_not_matching_model_is_refused_clearly(cpm_bundle, tmp_path):
    copy = Path(shutil.copytree(cpm_bundle.path, tmp_path / "wrong-size"))
    doc = json.loads((copy / "edge_pose.json").read_text())
    doc["input"]["height"] = doc["input"]["width"] = 256
    (copy / "edge_pose.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError) as e:
        open_best(copy, device="generic-x86-64")
    assert "model.tflite" in str(e.value) and "(1, 256, 256, 3)" in str(e.value) and "\n" not in str(e.value)


def test_unknown_device_profile_is_one_line(cpm_bundle):
    with pytest.raises(DeviceError, match="device profile 'toaster' not found"):
        open_best(cpm_bundle.path, device="toaster")


def test_device_can_be_a_profile_file(cpm_bundle, tmp_path):
    f = tmp_path / "board.toml"
    f.write_text('name = "board"\ndescription = "d"\n[[prefer]]\nformat = "tflite"\nprecision = "fp32"\n'
                 'backend = "litert"\naccelerator = "cpu"\nthreads = 1\n')
    loaded = open_best(cpm_bundle.path, device=str(f))
    assert loaded.plan.profile.name == "board" and loaded.session.describe()["threads"] == 1


def _cli(*args):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True, timeout=60)


def test_cli_explain_prints_plan_with_chosen_and_reasons(both):
    r = _cli("explain", str(both), "--device", "generic-x86-64", "--accelerator", "NPU")
    assert r.returncode == 0, r.stderr
    assert "device profile: generic-x86-64" in r.stdout
    assert "NPU not available" in r.stdout and "chosen" in r.stdout and "execution_devices=['CPU']" in r.stdout
    r = _cli("explain", str(both), "--json")
    doc = json.loads(r.stdout)
    assert [c["status"] for c in doc["candidates"]].count("chosen") == 1 and doc["runs"]["backend"]
    r = _cli("explain", str(both / "nope"))
    assert r.returncode == 2 and "no such bundle or directory" in r.stderr and "Traceback" not in r.stderr


def test_without_openvino_installed_the_plan_falls_back_to_litert_with_reason(both):
    """A device image without OpenVINO: an import blocker makes it absent in a fresh interpreter."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'openvino':\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edge_pose.select import open_best\n"
        f"loaded = open_best({str(both)!r}, device='generic-x86-64', threads=1)\n"
        "sb = [c for c in loaded.plan.candidates if c.name == 'sb-openvino-fp32']\n"
        "print(loaded.chosen.name, loaded.chosen.backend)\n"
        "print(sb[0].status, '|', sb[0].reason)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    chosen, skipped = r.stdout.strip().splitlines()[-2:]
    assert chosen == "cpm-tflite-fp32 litert"
    assert skipped == "skipped | openvino not installed (pip install openvino)"
