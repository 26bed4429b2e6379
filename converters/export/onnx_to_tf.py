"""ONNX -> TensorFlow SavedModel through onnx2tf (a maintained converter), once per Source.

onnx2tf runs sample images through the model while converting and downloads them unless
`calibration_image_sample_data_20x128x128x3_float32.npy` is in the working directory; there is no network on the
build machines, so it runs in a private directory holding that file, made from the real calibration crops when the
caller has them. onnx2tf turns NCHW image tensors into NHWC; callers read the resulting layouts from the result.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.errors import ConversionError

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@dataclass
class TFModel:
    saved_model_dir: Path
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_layout: str
    output_layout: str
    seconds: float
    sample_note: str
    rewrites: int = 0  # depthwise transposed convs decomposed for TFLite


def _samples(source, calib_inputs) -> tuple[np.ndarray, str]:
    """20 RGB 0..1 images of 128x128 for onnx2tf's self-check: real crops un-normalised, or a smooth pattern."""
    import cv2

    if calib_inputs is not None and len(calib_inputs):
        x = np.asarray(calib_inputs, np.float32)
        if source.input.layout == "NCHW":
            x = x.transpose(0, 2, 3, 1)
        x = x * np.asarray(source.input.std, np.float32) + np.asarray(source.input.mean, np.float32)
        if source.input.color == "bgr":
            x = x[..., ::-1]
        x = np.clip(x / 255.0, 0, 1)
        note = f"onnx2tf self-check on {min(len(x), 20)} calibration crops"
    else:
        yy, xx = np.mgrid[0:128, 0:128].astype(np.float32) / 127.0
        x = np.stack([np.stack([yy, xx, (yy + xx) / 2], -1) * (0.5 + 0.5 * i / 19) for i in range(20)])
        note = "onnx2tf self-check on synthetic gradients (no calibration crops given)"
    x = np.stack([cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA) for img in x[:20]])
    reps = -(-20 // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:20], np.float32), note


@contextlib.contextmanager
def _onnx2tf_environment():
    """onnx2tf sets TF_USE_LEGACY_KERAS=1 (and silences TF logs) in os.environ when imported; left in place, that
    makes every later Keras user in the process (OpenVINO's Keras reader, TF's converters) see tf_keras. Give
    onnx2tf its setting while it runs and restore the caller's environment afterwards. It also raises Python's
    recursion limit to 2**31 - 1 at import, which disables every RecursionError guard in the process (a deeply nested
    file then overflows the C stack): the limit is restored too."""
    import sys

    keys = ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")
    saved = {k: os.environ.get(k) for k in keys}
    limit = sys.getrecursionlimit()
    try:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        yield
    finally:
        sys.setrecursionlimit(limit)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _layout(shape: tuple[int, ...], channels: int) -> str:
    return "NHWC" if shape[-1] == channels and shape[1] != channels else "NCHW"


def _tflite_friendly(source, work: Path) -> tuple[Path, int]:
    """The prepared ONNX with depthwise transposed convs decomposed (see onnx_deconv), checked with onnxruntime."""
    import onnx
    import onnxruntime as ort

    from converters.export.onnx_deconv import rewrite_depthwise_deconvs

    model = onnx.load(str(source.onnx_path))
    rewritten, count = rewrite_depthwise_deconvs(model)
    if not count:
        return source.onnx_path, 0
    x = np.random.default_rng(0).normal(size=source.input_shape).astype(np.float32)
    feeds = {source.input.name: x}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    if np.abs(got - want).max() > 1e-5 * max(float(np.abs(want).max()), 1e-6):
        return source.onnx_path, 0  # keep onnx2tf's own (slower) lowering rather than an unequal graph
    path = work / "tflite_friendly.onnx"
    onnx.save(rewritten, str(path))
    return path, count


def onnx_to_saved_model(source, calib_inputs=None) -> TFModel:
    """The source's prepared ONNX as a SavedModel with one batch-1 `serving_default` signature (cached)."""
    if "onnx2tf" in source.cache:
        return source.cache["onnx2tf"]
    import tensorflow as tf

    tf.keras.Model  # noqa: B018  (resolve tf.keras to Keras 3 before onnx2tf's environment is in force)

    work = source.workdir() / "onnx2tf"
    work.mkdir(exist_ok=True)
    samples, note = _samples(source, calib_inputs)
    np.save(work / SAMPLE_FILE, samples)
    start, cwd = time.time(), os.getcwd()
    onnx_file, rewrites = _tflite_friendly(source, work)
    log = io.StringIO()
    try:
        os.chdir(work)
        with _onnx2tf_environment(), contextlib.redirect_stdout(log):
            import onnx2tf
            import tf_keras

            model = onnx2tf.convert(input_onnx_file_path=str(onnx_file), output_folder_path=str(work / "out"),
                                    disable_model_save=True, non_verbose=True)
    except Exception as exc:  # onnx2tf raises anything; surface its last words on one line
        last = (str(exc).strip() or log.getvalue().strip() or type(exc).__name__).splitlines()[-1]
        raise ConversionError(f"{source.path}: onnx2tf could not convert the model ({last[:300]})") from None
    finally:
        os.chdir(cwd)
    if model is None or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(f"{source.path}: onnx2tf produced no single-input single-output model")
    in_shape = tuple(int(d) for d in model.inputs[0].shape)
    out_shape = tuple(int(d) for d in model.outputs[0].shape)
    out_dir = work / "saved_model"
    archive = tf_keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=lambda x: model(x),
                         input_signature=[tf.TensorSpec(in_shape, tf.float32, name=source.input.name)])
    with contextlib.redirect_stdout(log):
        archive.write_out(str(out_dir))
    result = TFModel(out_dir, in_shape, out_shape, _layout(in_shape, 3),
                     _layout(out_shape, len(source.keypoints.names)), time.time() - start, note, rewrites)
    source.cache["onnx2tf"] = result
    return result
