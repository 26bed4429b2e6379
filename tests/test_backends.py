"""LiteRT and OpenVINO adapters on real bundles with the real runtimes: shapes, equality with the raw runtime,
what describe() reports, and refusal of corrupt or mismatched bundles."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pose.backends.base import BackendUnavailable
from edge_pose.backends.litert import LiteRTBackend
from edge_pose.backends.openvino import OpenVINOBackend, resolve_device
from edge_pose.bundle import MANIFEST, BundleError, load_bundle

ROOT = Path(__file__).resolve().parents[1]


def _rand(shape, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(np.float32)


def test_litert_infers_batch_equal_to_raw_interpreter(cpm_bundle):
    from ai_edge_litert.interpreter import Interpreter

    session = LiteRTBackend().load(cpm_bundle, "cpu", {"threads": 2})
    x = _rand((3, 192, 192, 3)) * 100 + 128
    out = session.infer(x)
    assert out.shape == (3, 14, 96, 96) and out.dtype == np.float32
    raw = Interpreter(model_path=str(cpm_bundle.model_path), num_threads=2)
    raw.allocate_tensors()
    i, o = raw.get_input_details()[0]["index"], raw.get_output_details()[0]["index"]
    for n in range(3):
        raw.set_tensor(i, x[n:n + 1])
        raw.invoke()
        np.testing.assert_allclose(out[n], raw.get_tensor(o)[0].transpose(2, 0, 1), rtol=1e-5, atol=1e-5)
    d = session.describe()
    assert d["backend"] == "litert" and d["runtime"].startswith("ai_edge_litert") and d["threads"] == 2
    assert d["delegate_applied"] is True and d["delegate_partitions"] >= 1  # XNNPACK, as the interpreter reports


def test_litert_without_xnnpack_reports_no_delegate(cpm_bundle):
    d = LiteRTBackend().load(cpm_bundle, "cpu", {"threads": 1, "xnnpack": False}).describe()
    assert d["delegate_applied"] is False and d["delegate"] is None


def test_openvino_infers_batch_equal_to_raw_runtime(simplebaseline_ov_bundle):
    import openvino as ov

    session = OpenVINOBackend().load(simplebaseline_ov_bundle, "CPU", {"threads": 1})
    x = _rand((2, 3, 256, 192), seed=1)
    out = session.infer(x)
    assert out.shape == (2, 17, 64, 48) and out.dtype == np.float32
    # the raw runtime at the bundle's validated precision (its own default is bf16 on CPUs with native bf16)
    raw = ov.Core().compile_model(str(simplebaseline_ov_bundle.model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for n in range(2):
        np.testing.assert_allclose(out[n], raw(x[n:n + 1])[0][0], rtol=1e-4, atol=1e-5)
    d = session.describe()
    assert d["execution_devices"] == ["CPU"] and d["threads"] == 1
    assert d["execution_precision"] == d["validated_precision"] == "f32"  # read back from the compiled model
    assert d["performance_hint"] == "LATENCY" and d["cache_dir"]


def test_openvino_auto_leaves_npu_out_unless_named():
    assert resolve_device("AUTO", ["CPU", "GPU", "NPU"]) == "AUTO:GPU,CPU"
    assert resolve_device("AUTO:NPU,GPU,CPU", ["CPU", "GPU.0", "NPU"]) == "AUTO:NPU,GPU,CPU"
    assert resolve_device("AUTO:NPU,CPU", ["CPU"]) == "AUTO:CPU"
    with pytest.raises(BackendUnavailable, match="NPU not available"):
        resolve_device("NPU", ["CPU"])


def test_openvino_npu_absent_here_is_unavailable_in_one_line(simplebaseline_ov_bundle):
    import openvino as ov

    if "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    with pytest.raises(BackendUnavailable) as e:
        OpenVINOBackend().load(simplebaseline_ov_bundle, "NPU", {})
    assert "NPU not available" in str(e.value) and "\n" not in str(e.value)


def test_missing_delegate_library_is_unavailable_in_one_line(cpm_bundle, tmp_path):
    with pytest.raises(BackendUnavailable) as e:
        LiteRTBackend().load(cpm_bundle, "delegate", {"delegate": str(tmp_path / "libnope_delegate.so")})
    assert "libnope_delegate.so" in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "libbroken_delegate.so"
    bad.write_bytes(b"not a shared object")
    with pytest.raises(BackendUnavailable, match="failed to load"):
        LiteRTBackend().load(cpm_bundle, "delegate", {"delegate": str(bad)})
    # a real shared library that loads but is no delegate (libm is on every Linux)
    with pytest.raises(BackendUnavailable, match="is not a LiteRT delegate"):
        LiteRTBackend().load(cpm_bundle, "delegate", {"delegate": "libm.so.6"})


def test_corrupt_model_file_is_refused_by_sha256(cpm_bundle, tmp_path):
    copy = Path(shutil.copytree(cpm_bundle.path, tmp_path / "corrupt"))
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        load_bundle(copy)
    assert "sha256" in str(e.value) and "model.tflite" in str(e.value) and "\n" not in str(e.value)


def _edit_manifest(bundle, dest: Path, **changes) -> Path:
    copy = Path(shutil.copytree(bundle.path, dest))
    doc = json.loads((copy / MANIFEST).read_text())
    for dotted, value in changes.items():
        part, key = dotted.split("__")
        doc[part][key] = value
    (copy / MANIFEST).write_text(json.dumps(doc))
    return copy


@pytest.mark.parametrize("change, words", [({"input__height": 256}, "input has shape (1, 192, 192, 3)"),
                                           ({"output__heatmap_width": 48}, "output has shape"),
                                           ({"input__dtype": "uint8"}, "dtype float32")])
def test_manifest_not_matching_litert_model_is_refused(cpm_bundle, tmp_path, change, words):
    bundle = load_bundle(_edit_manifest(cpm_bundle, tmp_path / "edited", **change))
    with pytest.raises(BundleError) as e:
        LiteRTBackend().load(bundle, "cpu", {})
    msg = str(e.value)
    assert words in msg and "model.tflite" in msg and "\n" not in msg


def test_manifest_not_matching_openvino_model_is_refused(simplebaseline_ov_bundle, tmp_path):
    bundle = load_bundle(_edit_manifest(simplebaseline_ov_bundle, tmp_path / "edited", input__width=256))
    with pytest.raises(BundleError, match=r"model.xml: model input has shape \(1, 3, 256, 192\)"):
        OpenVINOBackend().load(bundle, "CPU", {"cache_dir": False})


def test_wrong_batch_shape_is_a_clear_error(cpm_bundle):
    session = LiteRTBackend().load(cpm_bundle, "cpu", {"threads": 1})
    with pytest.raises(BundleError, match="takes"):
        session.infer(np.zeros((1, 3, 192, 192), np.float32))
    assert session.infer(np.zeros((0, 192, 192, 3), np.float32)).shape == (0, 14, 96, 96)


def test_import_edge_pose_stays_light():
    code = ("import sys, edge_pose, edge_pose.select, edge_pose.backends.registry, edge_pose.cli.explain, "
            "edge_pose.cli.devices, devices.detect\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'openvino', 'ai_edge_litert', 'tflite_runtime', 'nncf', "
            "'onnx', 'converters', 'calibration') if m in sys.modules]\nprint(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _variant(bundle, dest: Path, extra_files: dict[str, Path], **manifest_changes):
    """A copy of `bundle` written through write_bundle (so hashes are right) with extra files and changes."""
    import copy

    from edge_pose.bundle import write_bundle

    m = copy.deepcopy(bundle.manifest)
    for k, v in manifest_changes.items():
        setattr(m, k, v)
    files = {name: bundle.path / name for name in bundle.manifest.files}
    files.update(extra_files)
    return write_bundle(dest, m, files)


def test_openvino_imports_precompiled_blob_and_falls_back_from_a_stale_one(simplebaseline_ov_bundle, tmp_path):
    import openvino as ov

    blob = tmp_path / "model.CPU.blob"
    blob.write_bytes(ov.Core().compile_model(str(simplebaseline_ov_bundle.model_path), "CPU")
                     .export_model().getvalue())
    good = _variant(simplebaseline_ov_bundle, tmp_path / "with-blob", {"model.CPU.blob": blob},
                    blobs={"CPU": "model.CPU.blob"})
    x = _rand((1, 3, 256, 192), seed=2)
    ref = OpenVINOBackend().load(simplebaseline_ov_bundle, "CPU", {"cache_dir": False}).infer(x)
    s = OpenVINOBackend().load(good, "CPU", {"cache_dir": False})
    assert s.describe()["source"] == "blob model.CPU.blob"
    np.testing.assert_allclose(s.infer(x), ref, rtol=1e-5, atol=1e-6)
    stale = tmp_path / "stale.blob"
    stale.write_bytes(b"a blob from another driver" * 8)
    bad = _variant(simplebaseline_ov_bundle, tmp_path / "stale-blob", {"model.CPU.blob": stale},
                   blobs={"CPU": "model.CPU.blob"})
    s = OpenVINOBackend().load(bad, "CPU", {"cache_dir": False})
    assert "not importable" in s.describe()["source"] and s.describe()["source"].startswith("IR model.xml")
    np.testing.assert_allclose(s.infer(x), ref, rtol=1e-5, atol=1e-6)


def test_openvino_reshapes_dynamic_model_to_static_batch_1(simplebaseline_ov_bundle, tmp_path):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(simplebaseline_ov_bundle.model_path))
    model.reshape([-1, 3, 256, 192])
    ov.save_model(model, str(tmp_path / "model.xml"), compress_to_fp16=False)
    dyn = _variant(simplebaseline_ov_bundle, tmp_path / "dynamic",
                   {"model.xml": tmp_path / "model.xml", "model.bin": tmp_path / "model.bin"})
    s = OpenVINOBackend().load(dyn, "CPU", {"cache_dir": tmp_path / "cache"})
    assert list(s.compiled.inputs[0].get_shape()) == [1, 3, 256, 192]
    assert any((tmp_path / "cache").iterdir())  # CACHE_DIR was used
    assert s.infer(_rand((2, 3, 256, 192))).shape == (2, 17, 64, 48)


def test_integer_outputs_are_dequantised_with_manifest_quantization(cpm_bundle):
    import copy

    from edge_pose.backends.tensors import to_heatmaps
    from edge_pose.bundle import Quantization

    m = copy.deepcopy(cpm_bundle.manifest)
    m.output.dtype, m.output.quantization = "int8", Quantization(scale=0.5, zero_point=-3)
    raw = np.array([-3, -1, 5, 127], np.int8).reshape(1, 1, 1, 4)  # NHWC with 4 "keypoints"
    out = to_heatmaps(raw, m)
    assert out.dtype == np.float32 and out.shape == (1, 4, 1, 1)
    np.testing.assert_array_equal(out.ravel(), [0.0, 1.0, 4.0, 65.0])


def test_litert_falls_back_to_tf_lite_when_ai_edge_litert_is_missing(cpm_bundle):
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('ai_edge_litert', 'tflite_runtime'):\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from edge_pose.bundle import load_bundle\n"
        "from edge_pose.backends.litert import LiteRTBackend\n"
        f"s = LiteRTBackend().load(load_bundle({str(cpm_bundle.path)!r}), 'cpu', {{'threads': 1}})\n"
        "print(s.describe()['runtime'], s.infer(np.zeros((1, 192, 192, 3), np.float32)).shape)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith("tf.lite ") and "(1, 14, 96, 96)" in r.stdout
