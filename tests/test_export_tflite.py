"""TFLite export of the real shared models and a zoo model: fidelity, precisions, I/O quantisation, op checks."""
from __future__ import annotations

import numpy as np
import pytest

from converters.errors import ConversionError
from converters.export.tflite import export_tflite
from converters.export.tflite_inspect import read_ops

CALIB = slice(0, 16)  # crops used for calibration
EVAL = slice(16, 24)  # crops never seen by calibration


def run_tflite(result, batch: np.ndarray, source_layout: str) -> np.ndarray:
    """Run an exported model in LiteRT on source-form inputs, one at a time -> NCHW float32 heatmaps."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(result.files[result.model_file]))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for x in batch:
        x = x[None]
        if source_layout != result.input_layout:
            x = x.transpose(0, 2, 3, 1) if result.input_layout == "NHWC" else x.transpose(0, 3, 1, 2)
        q = result.input_quantization
        if q is not None:
            info = np.iinfo(result.input_dtype)
            x = np.clip(np.round(x / q.scale + q.zero_point), info.min, info.max)
        interp.set_tensor(inp["index"], x.astype(result.input_dtype))
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        if result.output_quantization is not None:
            y = (y - result.output_quantization.zero_point) * result.output_quantization.scale
        outs.append(y.transpose(0, 3, 1, 2) if result.output_layout == "NHWC" else y)
    return np.concatenate(outs)


def rel_max(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def rel_l2(got, want) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def confident_peaks_within_1px(got, want) -> float:
    """Share of the reference's confident keypoints (peak >= half the batch maximum) whose peak moved <= 1 px."""
    def peaks(h):
        flat = h.reshape(*h.shape[:2], -1)
        i = flat.argmax(-1)
        return np.stack([i // h.shape[3], i % h.shape[3]], -1), flat.max(-1)

    (pg, _), (pw, conf) = peaks(got), peaks(want)
    moved = np.linalg.norm((pg - pw).astype(np.float64), axis=-1)
    keep = conf >= 0.5 * conf.max()
    return float((moved[keep] <= 1).mean())


@pytest.fixture(scope="session")
def sb_exports(onnx_source, onnx_crops, tmp_path_factory):
    """The shared ONNX model exported once per precision (onnx2tf runs once; its SavedModel is cached)."""
    out = tmp_path_factory.mktemp("sb-tflite")
    calib = onnx_crops[CALIB]
    return {
        "fp32": export_tflite(onnx_source, "fp32", out / "fp32.tflite", calib_inputs=calib),
        "fp16": export_tflite(onnx_source, "fp16", out / "fp16.tflite"),
        "dynamic": export_tflite(onnx_source, "dynamic", out / "dynamic.tflite"),
        "int8": export_tflite(onnx_source, "int8", out / "int8.tflite", calib_inputs=calib, io_dtype="int8"),
        "int16x8": export_tflite(onnx_source, "int16x8", out / "int16x8.tflite", calib_inputs=calib),
    }


@pytest.fixture(scope="session")
def sb_reference(onnx_source, onnx_crops):
    return onnx_source.run(onnx_crops[EVAL])


def test_onnx_fp32_equals_onnxruntime(sb_exports, sb_reference, onnx_crops):
    r = sb_exports["fp32"]
    got = run_tflite(r, onnx_crops[EVAL], "NCHW")
    assert rel_max(got, sb_reference) <= 1e-4
    # onnx2tf turned the NCHW model into NHWC; the result says so, for the manifest.
    assert (r.input_layout, r.output_layout, r.input_shape, r.output_shape) == ("NHWC", "NHWC", (1, 256, 192, 3),
                                                                                (1, 64, 48, 17))
    # Depthwise transposed convs became depthwise convs + DEPTH_TO_SPACE instead of 384 per-channel TRANSPOSE_CONVs.
    assert "TRANSPOSE_CONV" not in r.ops and r.ops.count("DEPTH_TO_SPACE") == 3
    assert r.files["fp32.tflite"].is_file() and r.format == "tflite" and r.precision == "fp32"


@pytest.mark.parametrize("precision, bound", [("fp16", 0.01), ("dynamic", 0.2), ("int16x8", 0.2)])
def test_other_float_io_precisions_load_and_stay_close(sb_exports, sb_reference, onnx_crops, precision, bound):
    r = sb_exports[precision]
    got = run_tflite(r, onnx_crops[EVAL], "NCHW")
    assert got.shape == sb_reference.shape and np.isfinite(got).all()
    assert rel_l2(got, sb_reference) <= bound
    assert (r.input_dtype, r.output_dtype, r.input_quantization) == ("float32", "float32", None)
    assert r.files[f"{precision}.tflite"].stat().st_size < 0.7 * sb_exports["fp32"].files["fp32.tflite"].stat().st_size


def test_int8_full_integer_with_int8_io(sb_exports, sb_reference, onnx_crops):
    from ai_edge_litert.interpreter import Interpreter

    r = sb_exports["int8"]
    assert (r.input_dtype, r.output_dtype) == ("int8", "int8")
    interp = Interpreter(model_path=str(r.files["int8.tflite"]))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert (r.input_quantization.scale, r.input_quantization.zero_point) == pytest.approx(inp["quantization"])
    assert (r.output_quantization.scale, r.output_quantization.zero_point) == pytest.approx(out["quantization"])
    ops, _ = read_ops(r.files["int8.tflite"].read_bytes())
    assert all(o.out_dtype == "int8" for o in ops), "full integer: every op computes in int8"
    got = run_tflite(r, onnx_crops[EVAL], "NCHW")
    assert rel_l2(got, sb_reference) <= 0.2
    assert confident_peaks_within_1px(got, sb_reference) >= 0.9  # measured 0.965 (16 calibration crops)
    assert any("per-channel" in n for n in r.notes)


def test_int8_keeps_named_ops_in_float(onnx_source, onnx_crops, sb_exports, tmp_path):
    r = export_tflite(onnx_source, "int8", tmp_path / "m.tflite", calib_inputs=onnx_crops[CALIB], io_dtype="int8",
                      float_ops=("last_conv",))
    ops, _ = read_ops(r.files["m.tflite"].read_bytes())
    floats = [o.op for o in ops if o.out_dtype == "float32" and o.op not in ("QUANTIZE", "DEQUANTIZE")]
    assert floats == ["CONV_2D"] and r.input_dtype == "int8" and r.output_quantization is not None
    assert any("selective quantisation" in n for n in r.notes)
    with pytest.raises(ConversionError, match="no op output named like"):
        export_tflite(onnx_source, "int8", tmp_path / "x.tflite", calib_inputs=onnx_crops[CALIB],
                      float_ops=("no-such-layer",))
    assert not (tmp_path / "x.tflite").exists()


def test_frozen_graph_fp32_equals_tf_and_int8_uint8_io(pb_source, pb_crops, tmp_path):
    ref = pb_source.run(pb_crops[EVAL][:4])
    fp32 = export_tflite(pb_source, "fp32", tmp_path / "fp32.tflite")
    assert rel_max(run_tflite(fp32, pb_crops[EVAL][:4], "NHWC"), ref) <= 1e-4
    assert (fp32.input_name, fp32.input_layout, fp32.output_shape) == ("image", "NHWC", (1, 96, 96, 14))
    assert set(fp32.ops) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "RESIZE_BILINEAR",
                             "MAX_POOL_2D", "RELU", "RELU6", "PAD"}
    q = export_tflite(pb_source, "int8", tmp_path / "int8.tflite", calib_inputs=pb_crops[CALIB], io_dtype="uint8")
    assert q.input_dtype == "uint8" and 0 <= q.input_quantization.zero_point <= 255
    got = run_tflite(q, pb_crops[EVAL][:4], "NHWC")
    # This CPM is quantisation-sensitive (weights alone cost ~0.35 relative L2); the guard's mitigations act on
    # that. Here: int8 with uint8 I/O runs and its peaks mostly stay put (measured 0.76 on 8 crops).
    assert np.isfinite(got).all() and confident_peaks_within_1px(got, ref) >= 0.5


def test_zoo_model_fp32_equals_keras(tmp_path):
    from converters.sources import load_source

    src = load_source("cpm", input_size=(128, 96))
    assert src.untrained and src.family == "cpm" and src.input.mean == (123.675, 116.28, 103.53)
    x = np.random.default_rng(0).normal(size=(2, 128, 96, 3)).astype(np.float32)
    r = export_tflite(src, "fp32", tmp_path / "cpm.tflite")
    assert r.input_shape == (1, 128, 96, 3) and r.output_shape == (1, 16, 12, 17)
    assert rel_max(run_tflite(r, x, "NHWC"), src.run(x)) <= 1e-4


def test_bad_requests_fail_before_converting(onnx_source, tmp_path):
    cases = [(dict(precision="int4"), "unknown precision"),
             (dict(precision="int8"), "needs calibration inputs"),
             (dict(precision="fp16", io_dtype="uint8"), "not offered"),
             (dict(precision="fp16", float_ops=("last_conv",)), "int8 only"),
             (dict(precision="int8", calib_inputs=np.zeros((2, 256, 192, 3), np.float32)), "calibration inputs have")]
    for kwargs, message in cases:
        with pytest.raises(ConversionError, match=message) as err:
            export_tflite(onnx_source, out_file=tmp_path / "m.tflite", **kwargs)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "m.tflite").exists()


def test_non_builtin_op_is_named(tmp_path):
    import json

    import tensorflow as tf

    from converters.sources import load_source

    class Patches(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 3), tf.float32, name="image")])
        def serve(self, x):
            y = tf.image.extract_patches(x, sizes=[1, 2, 2, 1], strides=[1, 2, 2, 1], rates=[1, 1, 1, 1],
                                         padding="VALID")
            return {"heatmaps": y[..., :5]}

    module = Patches()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    (tmp_path / "kp.json").write_text(json.dumps({"names": list("abcde")}))
    src = load_source(tmp_path / "sm", color="rgb", mean=0, std=1, keypoints=tmp_path / "kp.json")
    with pytest.raises(ConversionError, match="builtin TFLite ops: ExtractImagePatches$") as err:
        export_tflite(src, "fp32", tmp_path / "m.tflite")
    assert "\n" not in str(err.value) and not (tmp_path / "m.tflite").exists()
