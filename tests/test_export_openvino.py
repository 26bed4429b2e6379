"""OpenVINO IR export of the shared real models (ONNX, frozen graph) and a Keras model, checked against their source.

Real parts only: OpenVINO CPU, NNCF, onnxruntime/TF as the references, real COCO crops for calibration.
"""
from __future__ import annotations

import numpy as np
import pytest
from shared import coco_mini

from source_fixtures import IMAGENET_MEAN, IMAGENET_STD


def rel_max(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def argmax_xy(heatmaps_nchw: np.ndarray) -> np.ndarray:
    """(N, K, H, W) -> (N, K, 2) integer argmax positions (x, y) in heatmap px."""
    n, k, _, w = heatmaps_nchw.shape
    flat = heatmaps_nchw.reshape(n, k, -1).argmax(-1)
    return np.stack([flat % w, flat // w], axis=-1).astype(np.float32)


def run_ir(result, batch: np.ndarray, nhwc_out: bool | None = None) -> np.ndarray:
    """Run the exported IR on CPU one crop at a time at the precision the runtime compiles it with; NCHW heatmaps."""
    import openvino as ov

    from registry import PRECISIONS

    hint = PRECISIONS[result.precision].execution  # the CPU plugin's own default is bf16 where the CPU has it
    compiled = ov.Core().compile_model(str(result.files["model.xml"]), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == hint
    out = np.concatenate([compiled({result.input_name: x[None]})[result.output_name] for x in batch])
    return out.transpose(0, 3, 1, 2) if result.output_layout == "NHWC" else out


def model_input(crops, source) -> np.ndarray:
    from edge_pose.preprocess import to_model_input

    return to_model_input(crops, source.input)


@pytest.fixture(scope="session")
def coco_crops():
    """Ground-truth person crops (evaluation) and detector crops (calibration) at 256x192, from coco-mini."""
    from calibration.datasets import load_crops

    data = coco_mini() / "test_coco.json"
    gt = load_crops(data, (256, 192))
    det = load_crops(data, (256, 192), boxes=coco_mini() / "test_coco_det_AP_H_56.json", min_box_score=0.05,
                     limit=32, seed=0)
    return gt.crops, det.crops


@pytest.fixture(scope="session")
def sb_fp32(onnx_source, tmp_path_factory):
    from converters.export.openvino import export_openvino

    return export_openvino(onnx_source, "fp32", tmp_path_factory.mktemp("ov") / "sb-fp32", blob_device="CPU")


@pytest.fixture(scope="session")
def sb_eval(onnx_source, sb_fp32, coco_crops):
    """(model input, FP32 IR heatmaps) on the ground-truth crops."""
    x = model_input(coco_crops[0], onnx_source)
    return x, run_ir(sb_fp32, x)


def test_onnx_fp32_ir_equals_onnxruntime(onnx_source, sb_fp32, sb_eval):
    x, got = sb_eval
    ref = onnx_source.run(x)
    assert rel_max(got, ref) < 1e-4
    assert sb_fp32.input_name == "data" and sb_fp32.output_name == "hybridsequential0_conv7_fwd"
    assert (sb_fp32.input_layout, sb_fp32.output_layout) == ("NCHW", "NCHW")
    assert sb_fp32.input_shape == (1, 3, 256, 192) and sb_fp32.output_shape == (1, 17, 64, 48)
    assert set(sb_fp32.files) == {"model.xml", "model.bin", "model.cpu.blob"}
    assert "openvino" in sb_fp32.tools and "FakeQuantize" not in sb_fp32.ops


def test_frozen_graph_fp32_ir_equals_tensorflow(pb_source, tmp_path):
    from converters.export.openvino import export_openvino

    res = export_openvino(pb_source, "fp32", tmp_path)
    assert res.input_name == "image" and res.output_name == "Convolutional_Pose_Machine/stage_5_out"
    assert (res.input_layout, res.output_layout, res.input_shape) == ("NHWC", "NHWC", (1, 192, 192, 3))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 192, 192, 3)).astype(np.float32)
    assert rel_max(run_ir(res, x), pb_source.run(x)) < 1e-4


def test_repeated_reads_of_a_source_are_independent_copies(pb_source):
    """The guard reads one source up to ~20 times; later reads are clones of the first, and what a caller does to
    its copy (NNCF rewrites some models in place) never reaches the next one."""
    from converters.export.openvino_read import read_static_model

    first = read_static_model(pb_source)
    names = [op.get_friendly_name() for op in first.get_ordered_ops()]
    first.get_ordered_ops()[5].set_friendly_name("changed by a caller")
    second = read_static_model(pb_source)
    assert second is not first and [op.get_friendly_name() for op in second.get_ordered_ops()] == names
    assert "image" in second.inputs[0].get_names() and str(second.inputs[0].get_node().get_layout()) == "[N,H,W,C]"


def test_fp16_ir_runs_close_to_fp32(onnx_source, sb_fp32, sb_eval, tmp_path):
    from converters.export.openvino import export_openvino

    res = export_openvino(onnx_source, "fp16", tmp_path)
    x, ref = sb_eval
    got = run_ir(res, x)
    assert res.files["model.bin"].stat().st_size < 0.6 * sb_fp32.files["model.bin"].stat().st_size
    assert rel_max(got, ref) < 5e-3
    err = np.linalg.norm(argmax_xy(got) - argmax_xy(ref), axis=-1)
    assert err.mean() <= 0.05


def test_int8_nncf_keeps_keypoints_close(onnx_source, sb_eval, coco_crops, tmp_path):
    from converters.export.openvino import export_openvino

    calib = model_input(coco_crops[1], onnx_source)
    res = export_openvino(onnx_source, "int8", tmp_path, calib_inputs=calib)
    x, ref = sb_eval
    err = np.linalg.norm(argmax_xy(run_ir(res, x)) - argmax_xy(ref), axis=-1)
    print(f"INT8 mean keypoint error {err.mean():.3f} heatmap px, within 1 px {np.mean(err <= 1):.3f}, "
          f"quantised in {res.extra['quantize_seconds']} s")
    assert "FakeQuantize" in res.ops and res.extra["calibration_size"] == len(calib)
    assert err.mean() < 1.0 and np.mean(err <= 1) > 0.8
    assert "nncf" in res.tools and "performance" in res.notes[-1]


def test_int8_named_float_scope_keeps_last_conv_float(onnx_source, coco_crops, tmp_path):
    import openvino as ov

    from converters.errors import ConversionError
    from converters.export.openvino import export_openvino, openvino_float_scopes

    scopes = openvino_float_scopes(onnx_source)
    # no sigmoid gates, no multi-stage heatmap path; its MobileNetV2 backbone has 17 depthwise convs
    assert set(scopes) == {"first_conv", "last_conv", "depthwise_convs"} and len(scopes["depthwise_convs"]) == 17
    calib = model_input(coco_crops[1][:8], onnx_source)
    res = export_openvino(onnx_source, "int8", tmp_path, calib_inputs=calib, ignored_scope="last_conv", preset="mixed")
    last = scopes["last_conv"][0]
    model = ov.Core().read_model(str(res.files["model.xml"]))
    node = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == last)
    feeds = {node.input_value(i).get_node().get_type_name() for i in range(node.get_input_size())}
    assert "FakeQuantize" not in feeds and res.extra["fake_quantize_ops"] > 0
    assert res.extra["preset"] == "mixed" and res.extra["ignored_nodes"] == [last]
    with pytest.raises(ConversionError, match="sigmoid_gates does not apply to this model"):
        export_openvino(onnx_source, "int8", tmp_path / "x", calib_inputs=calib, ignored_scope="sigmoid_gates")


def test_float_scopes_find_the_cpm_heatmap_path(pb_source):
    from converters.export.openvino import openvino_float_scopes

    scopes = openvino_float_scopes(pb_source)
    path = scopes["heatmap_path"]
    # 6 stage heads (14 channels), the final resize, 5 stage concats and the 5 convs that read them
    assert len(path) == 17 and "Convolutional_Pose_Machine/stage_5_out" in path
    assert scopes["last_conv"][0] in path


def test_keras_fp32_ir_equals_keras(tmp_path):
    import keras

    from converters.export.openvino import export_openvino, openvino_float_scopes
    from converters.sources import load_source

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((64, 48, 3), name="input")
    x = L.Conv2D(8, 3, strides=2, name="conv1")(L.ZeroPadding2D(1)(inp))
    x = L.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = L.ReLU()(L.BatchNormalization(epsilon=1e-5, name="bn1")(x))
    gate = L.Conv2D(8, 1, activation="sigmoid", name="gate")(L.GlobalAveragePooling2D(keepdims=True)(x))
    x = L.Multiply()([x, gate])
    x = L.ReLU()(L.Conv2DTranspose(8, 4, strides=2, padding="same", use_bias=False, name="deconv")(x))
    out = L.Conv2D(17, 1, name="final_layer")(x)
    path = tmp_path / "tiny.keras"
    keras.Model(inp, out).save(path)
    src = load_source(path, color="rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD, keypoints="coco17")
    res = export_openvino(src, "fp32", tmp_path / "ir")
    x = np.random.default_rng(1).normal(size=(2, 64, 48, 3)).astype(np.float32)
    assert res.input_shape == (1, 64, 48, 3) and res.output_shape == (1, 32, 24, 17)
    assert rel_max(run_ir(res, x), src.run(x)) < 1e-4
    assert len(openvino_float_scopes(src)["sigmoid_gates"]) == 1  # the Multiply the gate feeds


def test_zoo_cpm_fp32_ir_equals_keras(tmp_path):
    """The cheapest zoo model. Its seeded (untrained) 6-stage body amplifies float32 rounding: perturbing its
    weights by 1e-6 relative moves Keras' own output by 1.9e-4 (measured), so agreement to ~2e-4 is the noise floor
    (Lite-HRNet-18, 20x slower to convert, agrees to 9e-6)."""
    from converters.export.openvino import export_openvino
    from converters.sources import load_source

    src = load_source("cpm", input_size=(128, 96))  # a quarter of the default size keeps the test cheap
    res = export_openvino(src, "fp32", tmp_path)
    assert (res.input_name, res.input_layout, res.input_shape) == ("input", "NHWC", (1, 128, 96, 3))
    assert res.output_shape == (1, 16, 12, 17) and res.output_name == src.output.name
    x = np.random.default_rng(0).normal(size=(1, 128, 96, 3)).astype(np.float32)
    got, ref = run_ir(res, x), src.run(x)
    assert rel_max(got, ref) < 1e-3 and np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-4


def test_cpu_blob_imports_and_equals_ir(sb_fp32, sb_eval):
    import openvino as ov

    assert sb_fp32.blobs == {"CPU": "model.cpu.blob"}
    # the inference precision is a property of the import, not of the blob: the runtime passes it every time
    compiled = ov.Core().import_model(sb_fp32.files["model.cpu.blob"].read_bytes(), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    x, ref = sb_eval
    got = np.concatenate([compiled(xi[None])[0] for xi in x[:4]])
    assert rel_max(got, ref[:4]) < 1e-6


def test_absent_device_blob_is_a_note_not_a_failure(pb_source, tmp_path):
    import openvino as ov

    from converters.export.openvino import export_openvino

    if any(d.startswith("NPU") for d in ov.Core().available_devices):
        pytest.skip("an NPU is present here")
    res = export_openvino(pb_source, "fp16", tmp_path, blob_device="npu")
    assert res.blobs == {} and not list(tmp_path.glob("*.blob"))
    assert any(n.startswith("no NPU blob") and "not present" in n for n in res.notes)


def test_unreadable_model_is_one_clear_line(onnx_source, tmp_path):
    from converters.errors import ConversionError
    from converters.export.openvino import export_openvino
    from converters.sources.onnx_source import OnnxSource

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x03this is not a protobuf model" * 10)
    src = OnnxSource(onnx_path=bad, path=bad, model_name="broken", input=onnx_source.input, output=onnx_source.output,
                     keypoints=onnx_source.keypoints, sha256=None)
    with pytest.raises(ConversionError) as err:
        export_openvino(src, "fp32", tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "broken.onnx" in msg and "OpenVINO cannot read" in msg
    with pytest.raises(ConversionError, match="INT8 needs calibration inputs"):
        export_openvino(onnx_source, "int8", tmp_path / "out")
    with pytest.raises(ConversionError, match="precision 'int4' unsupported"):
        export_openvino(onnx_source, "int4", tmp_path / "out")


def test_litehrnet_openvino_graph_compiles_without_shuffles_or_layout_copies():
    """OpenVINO's Lite-HRNet graph (the zoo's form for every OpenVINO precision) reaches the CPU plugin with a
    static shape and no channel shuffle in any form, and compiles with no Transpose or Reorder between layers and
    one Split and one Concat per block (the cross-resolution gates' small pooled tensors; and the stem's Concat),
    where the default graph compiles with 214 Transposes, 114 Reorders and a Split, a Concat and a shuffle per
    branch and block."""
    from collections import Counter

    import openvino as ov

    from converters.export.openvino_read import read_static_model
    from converters.models.litehrnet import SPECS
    from converters.sources import load_source
    from converters.zoo import ZOO

    assert {ZOO["litehrnet-18"].graph_form("openvino", p) for p in ("fp32", "fp16", "bf16", "int8")} == {"openvino"}
    source = load_source("litehrnet-18", for_format="openvino")
    model = read_static_model(source)
    shape = model.inputs[0].get_partial_shape()
    assert shape.is_static and list(shape.to_shape()) == [1, 256, 192, 3]
    assert not {"Gather", "ShuffleChannels", "Reshape", "StridedSlice"} & {op.get_type_name()
                                                                          for op in model.get_ordered_ops()}
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    layers = Counter(op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops())
    assert layers["Transpose"] == layers["Gather"] == layers["ShuffleChannels"] == 0
    assert layers["Reorder"] <= 2  # the NHWC input and output only
    spec = SPECS[18]
    blocks = sum(m * b for m, b in zip(spec.num_modules, spec.num_blocks))
    assert layers["Split"] == blocks and layers["Concatenation"] == blocks + 1  # + the stem's
    x = np.random.default_rng(0).normal(size=(1, 256, 192, 3)).astype(np.float32)
    assert rel_max(compiled(x)[0].transpose(0, 3, 1, 2), source.run(x)) < 1e-5  # source.run: NCHW heatmaps
