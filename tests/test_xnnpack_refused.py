"""A bring-your-own stacked hourglass (MobileNetV2 blocks, 14 joints, 192x192) with a dead layer: its plain TFLite
int8 conversion is a model XNNPACK refuses (a requantisation ratio >= 256 on the all-zero layer; LiteRT can even
abort on it). The exporter first raises such collapsed conv scales (converters/export/tflite_scales.py); what
XNNPACK still cannot requantise it keeps in float; and a refused interpreter is a failed rung of the guard's ladder,
never the end of `convert`. The tests of the later defences switch the scale fix off to reach them."""
from __future__ import annotations

import numpy as np
import pytest
from hourglass_graph import build_hourglass_pb
from shared import coco_mini

DEAD = "hg0/down/expand"


@pytest.fixture(scope="module")
def dead_source(tmp_path_factory):
    from converters.sources import load_source

    pb = build_hourglass_pb(tmp_path_factory.mktemp("hourglass") / "hourglass-mbv2.pb", dead=DEAD)
    return load_source(pb, color="bgr", mean=0, std=1, keypoints="aic14")


@pytest.fixture()
def no_scale_fix(monkeypatch):
    """Without the first defence, to exercise the ones behind it (a refusal the scale fix does not cover)."""
    from converters.export import tflite_scales

    monkeypatch.setattr(tflite_scales, "raise_collapsed_scales", lambda data: (data, []))


def test_int8_with_the_dead_layer_runs_on_xnnpack_after_its_scale_is_raised(dead_source, calib, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from converters.export.tflite import export_tflite

    result = export_tflite(dead_source, "int8", tmp_path / "model.tflite", calib_inputs=calib,
                           keep_refused_in_float=False)
    assert any("collapsed by calibration" in n for n in result.notes)
    interp = Interpreter(model_path=str(result.files["model.tflite"]))
    interp.allocate_tensors()
    assert any(op["op_name"] == "DELEGATE" for op in interp._get_ops_details())


@pytest.fixture(scope="module")
def calib(dead_source):
    from source_fixtures import crops_for

    return crops_for(dead_source, limit=8)


def test_fp32_is_exact(dead_source, calib, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from converters.export.tflite import export_tflite

    result = export_tflite(dead_source, "fp32", tmp_path / "model.tflite")
    interp = Interpreter(model_path=str(result.files["model.tflite"]))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], calib[:1])
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)  # NHWC -> NKHW
    ref = dead_source.run(calib[:1])
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_plain_int8_is_refused_with_readable_text(dead_source, calib, tmp_path, no_scale_fix):
    from converters.errors import RuntimeRefused
    from converters.export.tflite import export_tflite

    with pytest.raises(RuntimeRefused) as err:
        export_tflite(dead_source, "int8", tmp_path / "model.tflite", calib_inputs=calib, keep_refused_in_float=False)
    text = str(err.value)
    assert "failed to create XNNPACK runtime; Node number" in text and "failed to prepare" in text
    assert "\n" not in text


def test_int8_keeps_the_refused_ops_in_float_and_runs_on_xnnpack(dead_source, calib, tmp_path, no_scale_fix):
    from ai_edge_litert.interpreter import Interpreter

    from converters.export.tflite import export_tflite
    from converters.export.tflite_xnnpack import unrepresentable_ops

    result = export_tflite(dead_source, "int8", tmp_path / "model.tflite", calib_inputs=calib)
    data = result.files["model.tflite"].read_bytes()
    assert unrepresentable_ops(data) == []
    note = next(n for n in result.notes if "XNNPACK cannot requantise" in n)
    assert "1 op(s)" in note and "CONV_2D" in note
    interp = Interpreter(model_path=str(result.files["model.tflite"]))  # XNNPACK applied by default
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    assert any(op["op_name"] == "DELEGATE" for op in ops)


def test_convert_moves_past_a_refused_rung(dead_source, monkeypatch, tmp_path, no_scale_fix):
    """A refusal the exporter does not foresee (here: its XNNPACK check skipped on the first rung) on the plain
    rung: convert records it as a failed rung and goes on with the ladder."""
    from converters import guard
    from converters.convert import convert
    from converters.export import tflite

    real, calls = tflite._keep_xnnpack_refused_in_float, []

    def first_unchecked(road, data, *args):
        calls.append(1)
        return data if len(calls) == 1 else real(road, data, *args)

    monkeypatch.setattr(tflite, "_keep_xnnpack_refused_in_float", first_unchecked)
    monkeypatch.setattr(guard, "PLANS", {**guard.PLANS, "tflite": lambda source: [
        guard.DEFAULTS["tflite"], guard.Mitigation("head (last conv) in float", {"float_ops": ("last_conv",)})]})
    done = convert(dead_source.path, tmp_path / "out", formats=["tflite"], precisions=["int8"],
                   calib=coco_mini() / "test_coco.json", calib_size=8, facts={"color": "bgr", "mean": "0",
                   "std": "1", "keypoints": "aic14"}, allow_degraded=True, log=lambda m: None)
    attempts = done[0].outcome.attempts
    assert len(attempts) == 2
    assert "failed to create XNNPACK runtime; Node number" in attempts[0].error
    assert attempts[1].error is None and done[0].outcome.chosen is attempts[1]
    assert (done[0].bundle.path / "model.tflite").is_file()
    assert "XNNPACK" in done[0].bundle.manifest.fidelity["attempts"][0]["error"]


def test_litert_names_xnnpack_when_it_refuses_a_bundle(dead_source, calib, tmp_path):
    """The runtime's side: a bundle whose model XNNPACK refuses is a delegate failure with readable text."""
    import tensorflow as tf
    from source_fixtures import bundle_from_export

    from converters.export.tflite import configure, convert_bytes, export_tflite
    from edge_pose.backends.base import BackendUnavailable
    from edge_pose.backends.litert import LiteRTBackend

    result = export_tflite(dead_source, "int8", tmp_path / "export" / "model.tflite", calib_inputs=calib)
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(dead_source.pb_path), [dead_source.input.name], [dead_source.output.name],
        {dead_source.input.name: list(dead_source.input_shape)})
    configure(converter, "int8", "float32", calib)
    result.files["model.tflite"].write_bytes(convert_bytes(converter, "raw int8"))  # the model as TF makes it
    bundle = bundle_from_export(dead_source, result, tmp_path / "bundle")
    with pytest.raises(BackendUnavailable) as err:
        LiteRTBackend().load(bundle)
    assert "XNNPACK refused" in str(err.value) and "runtime; Node number" in str(err.value)
