"""Small Keras bodies converted to full-integer int8 TFLite the way the exporter's SavedModel road does it."""
from __future__ import annotations

import numpy as np


def saved_model(tmp_path, body, shape=(1, 16, 16, 8), name="m") -> str:
    import keras
    import tensorflow as tf
    from keras.export import ExportArchive

    inp = keras.Input(batch_shape=shape)
    model = keras.Model(inp, body(inp))
    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec(shape, tf.float32)])
    archive.write_out(str(tmp_path / f"{name}_sm"), verbose=False)
    return str(tmp_path / f"{name}_sm")


def calibration(shape=(1, 16, 16, 8), positive=False, count=8) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, *shape)).astype(np.float32)
    return np.abs(x) if positive else x


def int8_tflite(tmp_path, body, shape=(1, 16, 16, 8), name="m", positive=False) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model(tmp_path, body, shape, name))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = calibration(shape, positive)
    conv.representative_dataset = lambda: ([x] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def run_reference(model: bytes, x: np.ndarray) -> np.ndarray:
    """The model on TFLite's own kernels (no delegate): what the flatbuffer's quantisation says it computes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()
