"""The deployable zoo model (Lite-HRNet-18, seeded weights) converts to TFLite fp32 and full int8 with builtin ops
only, the whole graph in one XNNPACK partition, and fp32 equal to Keras on a real crop.

One conversion of each costs ~1 min on the 2-core CI machine; the other zoo models share every op type with
Lite-HRNet or SimpleBaseline (converted in test_export_tflite / test_export_openvino through the same code).
"""
import numpy as np
import pytest

from edge_pose.bundle import InputSpec
from edge_pose.preprocess import crop_people, to_model_input
from shared import coco_mini


@pytest.fixture(scope="module")
def litehrnet_source():
    from converters.sources import load_source

    return load_source("litehrnet-18")


@pytest.fixture(scope="module")
def real_crops():
    import cv2

    image = cv2.imread(str(coco_mini() / "000000000785.jpg"))
    crops = crop_people(image, np.array([[280.79, 44.73, 218.7, 346.68], [100, 50, 150, 300]]), (256, 192))
    return to_model_input(crops.images, InputSpec("input", 256, 192))


def _run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for row in x:
        q = row[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            q = np.clip(np.round(q / scale + zero), -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y[0])
    ops = [op["op_name"] for op in interp._get_ops_details()]
    return np.stack(results), ops


def test_litehrnet18_fp32_tflite_equals_keras_on_real_crops(litehrnet_source, real_crops, tmp_path):
    from converters.export.tflite import export_tflite

    result = export_tflite(litehrnet_source, "fp32", tmp_path / "m.tflite")
    ref = np.stack([litehrnet_source.keras_model(x[None], training=False).numpy()[0] for x in real_crops])
    out, ops = _run(result.files[result.model_file], real_crops)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert ops.count("DELEGATE") == 1  # XNNPACK takes the graph as one partition: nothing splits it
    assert not {"CUSTOM", "GATHER", "SHAPE", "PACK"} & set(ops)  # static batch-1 builtins only
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC", "AVERAGE_POOL_2D"} <= set(ops)


def test_litehrnet18_full_int8_converts_and_tracks_fp32(litehrnet_source, real_crops, tmp_path):
    from converters.export.tflite import export_tflite
    from converters.zoo import natural_images

    calib = np.concatenate([real_crops, natural_images((1, 256, 192, 3), seed=3, count=6)])
    result = export_tflite(litehrnet_source, "int8", tmp_path / "m8.tflite", calib_inputs=calib, io_dtype="int8")
    assert result.input_dtype == "int8" and result.input_quantization is not None
    out, ops = _run(result.files[result.model_file], real_crops)
    ref = np.stack([litehrnet_source.keras_model(x[None], training=False).numpy()[0] for x in real_crops])
    rel_l2 = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel_l2 < 0.2, rel_l2  # a quantised copy of the same function, not noise
    assert {"CONV_2D", "LOGISTIC"} <= set(ops)


def test_litehrnet18_onnx_fp32_equals_keras_and_fp16_int8_run(litehrnet_source, real_crops, tmp_path):
    """The zoo model reaches ONNX through tf2onnx (no hand-written graph code): fp32 equal to Keras on real crops,
    fp16 (float16 graph) and int8 (QDQ) build and run on ONNX Runtime with heatmaps of the same shape."""
    import onnxruntime as ort

    from converters.export.onnx import export_onnx

    ref = np.stack([litehrnet_source.keras_model(x[None], training=False).numpy()[0] for x in real_crops])
    outs = {}
    for precision in ("fp32", "fp16", "int8"):
        r = export_onnx(litehrnet_source, precision, tmp_path / precision,
                        calib_inputs=real_crops if precision == "int8" else None)
        assert r.input_shape == (1, 256, 192, 3) and r.output_shape == (1, 64, 48, 17)  # static, NHWC kept
        s = ort.InferenceSession(str(r.files["model.onnx"]), providers=["CPUExecutionProvider"])
        outs[precision] = np.concatenate([s.run(None, {r.input_name: x[None]})[0] for x in real_crops])
    assert np.abs(outs["fp32"] - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.abs(outs["fp16"] - ref).max() <= 2e-2 * np.abs(ref).max()
    assert outs["int8"].shape == ref.shape and np.isfinite(outs["int8"]).all()


def test_convert_builds_litehrnet_int8_from_its_int8_graph_form(tmp_path):
    """The zoo entry names Lite-HRNet's int8 graph form for TFLite int8: convert builds the model that way (the same
    function), and the bundle runs in one XNNPACK partition with no op left outside it."""
    from converters.convert import convert
    from edge_pose.backends.litert import LiteRTBackend

    lines = []
    done = convert("litehrnet-18", tmp_path / "out", formats=["tflite"], precisions=["int8"],
                   calib=coco_mini() / "test_coco.json", boxes=coco_mini() / "test_coco_det_AP_H_56.json",
                   calib_size=16, allow_degraded=True, log=lines.append)
    assert any("'tflite-int8' graph form" in line for line in lines), lines
    d = LiteRTBackend().load(done[0].bundle, "cpu", {"threads": 1}).describe()
    assert d["delegate_partitions"] == 1
    from edge_pose.bench.profile_litert import plan

    facts = plan(str(done[0].bundle.model_path), 1)
    assert facts["outside_delegate"] == []
    if done[0].bundle.manifest.fidelity.get("mitigation") == "per-channel int8 (default)":
        assert facts["float_compute_ops"] == 0  # the sigmoid gates the quantiser left in float are folded to int8
