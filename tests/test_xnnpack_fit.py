"""int8 ADD/MUL whose scales XNNPACK refuses (a tiny branch meeting a huge one) are brought into its ranges, and
float LOGISTIC islands are folded to int8: real models converted here, run by LiteRT with and without XNNPACK."""
from __future__ import annotations

import numpy as np
import pytest
from int8_models import calibration, int8_tflite, run_reference, saved_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _huge_and_tiny(x):
    """A stream with values ~1e3 meets a branch with values ~1e-2: an ADD directly, and a gated MUL whose output
    shares the huge stream's scale through a concatenation (and a reshape pair on the way)."""
    import keras

    big = keras.layers.Conv2D(8, 1, kernel_initializer=keras.initializers.RandomNormal(0, 300.0, seed=1))(x)
    tiny = keras.layers.Conv2D(8, 1, kernel_initializer=keras.initializers.RandomNormal(0, 0.003, seed=2))(x)
    tiny = keras.layers.Reshape((8, 32, 8))(tiny)
    tiny = keras.layers.Reshape((16, 16, 8))(tiny)
    added = keras.layers.Add()([big, tiny])
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(tiny)
    gate = keras.layers.Conv2D(8, 1, activation="sigmoid")(gate)
    gated = keras.layers.Multiply()([tiny, gate])
    return keras.layers.Concatenate()([added, gated])


def _outside(model: bytes):
    from edge_pose.bench.profile_litert import plan

    facts = plan(model, threads=1)
    return facts["delegate_partitions"], facts["outside_counts"]


def _output_step(model: bytes) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    out = interp.get_output_details()[0]["index"]
    prod = next(op for op in interp._get_ops_details() if out in op["outputs"])  # noqa: SLF001
    return float(interp.get_tensor_details()[prod["inputs"][0]]["quantization_parameters"]["scales"][0])


def test_add_and_mul_outside_xnnpack_ranges_are_fitted_without_changing_the_result(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from converters.export.tflite import _fit_xnnpack
    from converters.export.tflite_xnnpack_fit import fit_elementwise_scales

    data = int8_tflite(tmp_path, _huge_and_tiny)
    partitions, outside = _outside(data)
    assert outside == {"ADD": 1, "MUL": 1} and partitions >= 2  # what the converter alone gives

    fitted, raised = fit_elementwise_scales(data)
    assert raised and fit_elementwise_scales(fitted)[1] == []  # idempotent
    assert _outside(fitted) == (1, {})

    x = calibration()[0]
    before, after = run_reference(data, x), run_reference(fitted, x)
    step = _output_step(data)  # the dequantised output's step (DEQUANTIZE reads the concatenation's scale)
    assert np.max(np.abs(after - before)) <= step * 1.001  # at most one output step, anywhere
    notes = []  # the exporter's step keeps the fit because XNNPACK then takes the whole model, and says so
    assert _fit_xnnpack(data, notes, fold_logistics=True) == fitted
    assert len(notes) == 1 and "raised so that ADD/MUL stay inside XNNPACK" in notes[0]
    interp = Interpreter(model_content=fitted, num_threads=1)  # and XNNPACK computes the fitted model as TFLite does
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    assert np.max(np.abs(interp.get_tensor(interp.get_output_details()[0]["index"]) - after)) <= step * 1.001


def test_a_tiny_input_whose_scale_is_fixed_is_left_to_tflite(tmp_path):
    """A sigmoid's int8 output scale is fixed at 1/256: an ADD of it to a huge stream cannot be fitted, and the model
    is left as it was (the ADD runs on TFLite's kernel) rather than changed into something else."""
    import keras

    from converters.export.tflite_xnnpack_fit import fit_elementwise_scales

    def body(x):
        big = keras.layers.Conv2D(8, 1, kernel_initializer=keras.initializers.RandomNormal(0, 300.0, seed=1))(x)
        gate = keras.layers.Activation("sigmoid")(keras.layers.Conv2D(8, 1)(x))
        return keras.layers.Add()([big, gate])

    data = int8_tflite(tmp_path, body)
    assert _outside(data)[1] == {"ADD": 1}
    assert fit_elementwise_scales(data) == (data, [])


def test_a_well_scaled_model_is_left_byte_for_byte(tmp_path):
    import keras

    from converters.export.tflite_xnnpack_fit import fit_elementwise_scales, fold_float_logistics

    def body(x):
        a = keras.layers.Conv2D(8, 1)(x)
        return keras.layers.Multiply()([keras.layers.Add()([a, x]), keras.layers.Activation("sigmoid")(a)])

    data = int8_tflite(tmp_path, body)
    assert fit_elementwise_scales(data) == (data, [])
    assert fold_float_logistics(data) == (data, 0)


def test_a_float_logistic_between_dequantize_and_quantize_becomes_int8(tmp_path):
    import keras
    import tensorflow as tf

    from converters.export.tflite_float_ops import convert_keeping_float
    from converters.export.tflite_inspect import read_ops
    from converters.export.tflite_xnnpack_fit import fold_float_logistics

    def body(x):
        a = keras.layers.Conv2D(8, 1)(x)
        return keras.layers.Multiply()([keras.layers.Conv2D(8, 1)(x), keras.layers.Activation("sigmoid")(a)])

    path = saved_model(tmp_path, body)
    floating, _ = convert_keeping_float(lambda: tf.lite.TFLiteConverter.from_saved_model(path), "int8", "float32",
                                        calibration()[:, 0], ["LOGISTIC"], "test")
    assert _outside(floating)[1] == {} and "DEQUANTIZE" in [o.op for o in read_ops(floating)[0]]
    folded, count = fold_float_logistics(floating)
    assert count == 1
    ops = read_ops(folded)[0]
    logistic = next(o for o in ops if o.op == "LOGISTIC")
    assert logistic.out_dtype == "int8"
    assert [o.op for o in ops].count("DEQUANTIZE") == 1  # the model output's only
    x = calibration()[0]
    # int8 LOGISTIC rounds once where the float island rounded at its QUANTIZE: the products differ by steps
    assert np.max(np.abs(run_reference(folded, x) - run_reference(floating, x))) <= 2.01 * _output_step(folded)
