"""The profiler reads what the runtimes really do: XNNPACK partitions and ops left outside them (real int8 models
converted here), isolated per-op times, OpenVINO performance counters; the converter's int8 checks act on it."""
from __future__ import annotations

import numpy as np
import pytest
from int8_models import int8_tflite as _int8_tflite


def _pool_model(form):
    import keras

    from converters.models.static_ops import adaptive_average_pool

    def body(x):
        x = keras.layers.Conv2D(8, 1)(x)
        x = adaptive_average_pool(x, (4, 4), form)
        return keras.layers.Conv2D(8, 1)(x)
    return body


def test_int8_average_pool_runs_outside_xnnpack_and_its_depthwise_form_inside(tmp_path):
    from converters.export.tflite_inspect import delegate_warnings
    from edge_pose.bench.profile import profile_bundle, render

    pooled = _int8_tflite(tmp_path, _pool_model("pool"), name="pool")
    (tmp_path / "pool.tflite").write_bytes(pooled)
    prof = profile_bundle(tmp_path / "pool.tflite", top=5, threads=1, runs=3)
    assert prof["outside_counts"] == {"AVERAGE_POOL_2D": 1}
    assert prof["delegate_partitions"] == 2  # the pool splits the convs into two partitions
    pool_ops = [r for r in prof["op_times"]["ops"] if r["op"] == "AVERAGE_POOL_2D"]
    assert pool_ops and not pool_ops[0]["xnnpack"] and pool_ops[0]["ms"] > 0
    assert "AVERAGE_POOL_2D x1" in render(prof)
    assert any("outside XNNPACK" in w and "AVERAGE_POOL_2D x1" in w for w in delegate_warnings(pooled))

    inside = _int8_tflite(tmp_path, _pool_model("depthwise"), name="dw")
    (tmp_path / "dw.tflite").write_bytes(inside)
    prof = profile_bundle(tmp_path / "dw.tflite", top=5, threads=1, runs=3, per_op=False)
    assert prof["outside_counts"] == {} and prof["delegate_partitions"] == 1
    assert prof["op_counts"].get("DEPTHWISE_CONV_2D") == 1
    assert delegate_warnings(inside) == []


def test_a_conv_whose_calibrated_outputs_are_all_zero_gets_a_scale_xnnpack_accepts(tmp_path):
    """All-zero calibration outputs collapse the int8 scale to ~1e-9; LiteRT 2.3 then aborts the process while
    setting up XNNPACK. The exporter raises the scale; the model loads in one partition and still outputs 0."""
    import keras

    from converters.export.tflite_scales import raise_collapsed_scales
    from edge_pose.bench.profile_litert import plan

    def body(x):
        dead = keras.layers.Conv2D(4, 1, kernel_initializer="ones", activation="relu",
                                   bias_initializer=keras.initializers.Constant(-100.0))(x)
        return keras.layers.Conv2D(4, 1, kernel_initializer="ones")(dead)

    data = _int8_tflite(tmp_path, body, positive=True)
    fixed, raised = raise_collapsed_scales(data)
    assert len(raised) == 1
    assert raise_collapsed_scales(fixed)[1] == []  # idempotent
    facts = plan(fixed, threads=1)
    assert facts["delegate_partitions"] == 1 and facts["outside_counts"] == {}


def test_openvino_profile_reads_per_layer_counters(tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    from edge_pose.bench.profile import profile_bundle, render

    x = ops.parameter([1, 8, 32, 32], np.float32, name="input")
    w = ops.constant(np.random.default_rng(0).normal(size=(8, 8, 3, 3)).astype(np.float32))
    y = ops.relu(ops.convolution(x, w, [1, 1], [1, 1], [1, 1], [1, 1]))
    y = ops.concat([y, ops.relu(ops.convolution(y, w, [1, 1], [1, 1], [1, 1], [1, 1]))], 1)
    ov.save_model(ov.Model([y], [x], "tiny"), str(tmp_path / "model.xml"))
    prof = profile_bundle(tmp_path / "model.xml", top=3, threads=1, runs=3,
                          config={"INFERENCE_PRECISION_HINT": "f32"})
    assert prof["inference_precision"] == "f32"
    assert prof["layers_executed"] >= 2 and len(prof["top"]) <= 3
    assert "Convolution" in {r["op"] for r in prof["by_type"]}
    assert prof["quantization"]["quantize_convert_layers"] == 0
    assert "slowest layers" in render(prof)


def test_profile_refuses_what_is_not_a_model(tmp_path):
    from edge_pose.bench.profile import profile_bundle
    from edge_pose.errors import EdgePoseError

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EdgePoseError, match="not a bundle directory"):
        profile_bundle(tmp_path / "notes.txt")
