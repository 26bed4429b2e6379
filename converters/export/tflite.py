"""Sources -> TFLite models (LiteRT): fp32, fp16, dynamic-range, full int8 and 16x8, batch 1, builtin ops only.

Each source kind reaches the TFLite converter by its safest road: Keras and SavedModels through a SavedModel with a
fixed batch-1 signature, ONNX through onnx2tf's SavedModel, TF1 frozen graphs through the v1 frozen-graph converter.
The exported model is read back (ops, I/O, quantisation) and refused when it is not what a bundle may contain.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from converters.errors import ConversionError
from converters.export.result import ExportResult
from converters.export.tflite_inspect import inspect_tflite
from registry import FORMATS

PRECISIONS = FORMATS["tflite"].precisions
IO_DTYPES = {"fp32": ("float32",), "fp16": ("float32",), "dynamic": ("float32",),
             "int8": ("float32", "int8", "uint8"), "int16x8": ("float32",)}
NEEDS_CALIBRATION = ("int8", "int16x8")


class _Road:
    """How one source reaches the converter: a converter factory, and the layouts the TFLite model will have."""

    def __init__(self, make, input_layout: str, output_layout: str, notes: Sequence[str] = ()):
        self.make = make
        self.input_layout = input_layout
        self.output_layout = output_layout
        self.notes = list(notes)


def _road(source, calib_inputs) -> _Road:
    import tensorflow as tf

    if source.kind in ("keras", "savedmodel"):
        path = str(source.saved_model_dir())
        return _Road(lambda: tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"]),
                     source.input.layout, source.output.layout,
                     ["via a SavedModel with a fixed batch-1 signature"])
    if source.kind == "onnx":
        from converters.export.onnx_to_tf import onnx_to_saved_model

        tfm = onnx_to_saved_model(source, calib_inputs)
        path = str(tfm.saved_model_dir)
        return _Road(lambda: tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"]),
                     tfm.input_layout, tfm.output_layout,
                     [f"via onnx2tf (SavedModel in {tfm.seconds:.1f} s; {tfm.sample_note}; {tfm.rewrites} depthwise "
                      f"transposed conv(s) decomposed into depthwise convs + DEPTH_TO_SPACE); layout "
                      f"{source.input.layout}->{tfm.input_layout} in, {source.output.layout}->{tfm.output_layout} out"])
    if source.kind == "frozen_graph":
        shape = list(source.input_shape)
        return _Road(lambda: tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(source.pb_path), [source.input.name], [source.output.name], {source.input.name: shape}),
            source.input.layout, source.output.layout, ["via the TF1 frozen-graph converter"])
    raise ConversionError(f"{source.model_name}: no TFLite road for source kind {source.kind!r}")


def _to_layout(batch: np.ndarray, src_layout: str, dst_layout: str) -> np.ndarray:
    if src_layout == dst_layout:
        return batch
    return batch.transpose(0, 2, 3, 1) if dst_layout == "NHWC" else batch.transpose(0, 3, 1, 2)


def representative(calib: np.ndarray):
    """The converter's calibration feed: one batch-1 sample at a time, in the exported model's layout."""
    def gen() -> Iterable[list[np.ndarray]]:
        for x in calib:
            yield [np.ascontiguousarray(x[None], np.float32)]
    return gen


def configure(converter, precision: str, io_dtype: str, calib: np.ndarray | None, builtins_fallback: bool = False):
    """Set the converter for one precision; returns notes describing the settings."""
    import tensorflow as tf

    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp32":
        return []
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return ["fp16 weights, float32 compute on CPU (dequantised at load)"]
    if precision == "dynamic":
        return ["dynamic-range: int8 weights, activations quantised on the fly"]
    converter.representative_dataset = representative(calib)
    if precision == "int8":
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + ([tf.lite.OpsSet.TFLITE_BUILTINS] if builtins_fallback else [])
        converter.target_spec.supported_ops = ops
        dtype = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
        return [f"full integer int8, per-channel weights, {len(calib)} calibration inputs, {io_dtype} I/O"]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8] + (
        [tf.lite.OpsSet.TFLITE_BUILTINS] if builtins_fallback else [])
    return [f"16x8: int16 activations, int8 weights, {len(calib)} calibration inputs; no XNNPACK kernels"]


def _unsupported_16x8(message: str) -> list[str]:
    return sorted(set(re.findall(r"not yet supported for op: '([A-Z0-9_]+)'", message))) or ["(unnamed)"]


def _tf_ops_in(message: str) -> list[str]:
    return sorted(set(re.findall(r"\btf\.([A-Z][A-Za-z0-9_]*)", message)))


def convert_bytes(converter, where: str) -> bytes:
    """converter.convert() with one-line errors naming ops TFLite builtins cannot express."""
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        text = str(exc)
        ops = _tf_ops_in(text)
        if ops:
            raise ConversionError(f"{where}: not expressible with builtin TFLite ops: {', '.join(ops)}") from None
        first = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()), text.strip()[:200])
        err = ConversionError(f"{where}: TFLite conversion failed ({type(exc).__name__}: {first[:300]})")
        err.detail = text  # the converter's full message, for callers that act on it
        raise err from None


def check_calibration(calib_inputs, input_shape, where: str, missing: str) -> np.ndarray:
    """Calibration inputs as float32 of the model's input shape (any N), or one line saying what is wrong."""
    if calib_inputs is None or len(calib_inputs) == 0:
        raise ConversionError(f"{where}: {missing}")
    calib = np.asarray(calib_inputs, np.float32)
    if tuple(calib.shape[1:]) != tuple(input_shape[1:]):
        raise ConversionError(f"{where}: calibration inputs have shape {list(calib.shape)}, the model takes "
                              f"(N, {', '.join(map(str, input_shape[1:]))})")
    return calib


def write_atomic(data: bytes, out_file: Path) -> None:
    """Write bytes so that a failure never leaves a half-written model file."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_file.name}.", dir=out_file.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tools() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("tensorflow-cpu", "tensorflow", "ai-edge-litert", "onnx2tf", "onnx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _keep_xnnpack_refused_in_float(road, data: bytes, io_dtype, calib, float_ops, where, notes) -> bytes:
    """An int8 model with ops XNNPACK cannot requantise, rebuilt with those ops in float (LiteRT with XNNPACK, the
    default on every device, would refuse the whole model); the note names them."""
    from converters.export.tflite_float_ops import convert_keeping_float
    from converters.export.tflite_xnnpack import unrepresentable_ops

    refused = unrepresentable_ops(data)
    if not refused:
        return data
    names = [name for _, name, _, _ in refused]
    data, more = convert_keeping_float(road.make, "int8", io_dtype, calib, list(float_ops) + names, where)
    notes.append(f"{len(refused)} op(s) kept in float because XNNPACK cannot requantise them (input x weight / "
                 f"output scale >= 256: activations all but zero on the calibration crops, output scale "
                 f"{min(s for *_, s in refused):.1e}): "
                 + ", ".join(f"{op} {name.split(';')[0]}" for op, name, _, _ in refused[:4])
                 + (" ..." if len(refused) > 4 else ""))
    return data


def _fit_xnnpack(data: bytes, notes: list[str], fold_logistics: bool) -> bytes:
    """Elementwise ops brought into XNNPACK's ranges and float LOGISTIC islands folded (tflite_xnnpack_fit); not
    those that float_ops asked for (a guard mitigation keeps sigmoid gates in float on purpose)."""
    from converters.export.tflite_xnnpack_fit import fit_elementwise_scales, fold_float_logistics
    from edge_pose.bench.profile_litert import plan

    fitted, raised = fit_elementwise_scales(data)
    if raised:  # kept only if XNNPACK really takes more of the model (its own partitioning decides, not our table)
        before, after = (sum(plan(d, threads=1)["outside_counts"].values()) for d in (data, fitted))
        if after < before:
            data = fitted
            notes.append(f"{len(raised)} int8 scale(s) raised so that ADD/MUL stay inside XNNPACK (a tiny branch "
                         f"meets a large one: the op's result moves by at most one output step): "
                         + ", ".join(n[-50:] for n in raised[:3]) + (" ..." if len(raised) > 3 else ""))
        else:
            notes.append(f"{len(raised)} int8 scale(s) could be raised for XNNPACK but it would take no more ops "
                         f"({before} outside before, {after} after): left as calibrated")
    data, folded = fold_float_logistics(data) if fold_logistics else (data, 0)
    if folded:
        notes.append(f"{folded} float LOGISTIC(s) between DEQUANTIZE and QUANTIZE folded into int8 LOGISTIC")
    return data


def export_tflite_target(source, precision: str, out_dir, calib_inputs=None, blob_device=None, **options
                         ) -> ExportResult:
    """The registry's exporter signature: model.tflite in `out_dir` (TFLite has no device blobs)."""
    return export_tflite(source, precision, Path(out_dir) / "model.tflite", calib_inputs=calib_inputs, **options)


def export_tflite(source, precision: str, out_file, calib_inputs=None, io_dtype: str = "float32",
                  float_ops: Sequence[str] = (), keep_refused_in_float: bool = True) -> ExportResult:
    """Write `out_file` (.tflite) for `source` at `precision`.

    calib_inputs: real calibration crops in the SOURCE's model-input form (its layout, normalised float32); needed
    for int8 and int16x8. io_dtype: float32, or int8/uint8 for int8 models (their scale/zero point are recorded).
    float_ops: for int8, layers kept in float (see converters.export.tflite_float_ops for the names it takes).
    keep_refused_in_float: for int8, ops XNNPACK cannot requantise are kept in float (converters.export.tflite_xnnpack);
    False leaves them int8, and LiteRT with XNNPACK then refuses the model.
    """
    out_file = Path(out_file)
    where = f"{source.model_name} -> TFLite {precision}"
    if precision not in PRECISIONS:
        raise ConversionError(f"{where}: unknown precision; choose one of {', '.join(PRECISIONS)}")
    if io_dtype not in IO_DTYPES[precision]:
        raise ConversionError(f"{where}: I/O type {io_dtype!r} not offered; choose {', '.join(IO_DTYPES[precision])}")
    if float_ops and precision != "int8":
        raise ConversionError(f"{where}: float_ops (selective quantisation) applies to int8 only")
    calib = None
    if precision in NEEDS_CALIBRATION:
        calib = check_calibration(calib_inputs, source.input_shape, where,
                                  "needs calibration inputs (real crops, e.g. --calib DATA)")
    start = time.time()
    road = _road(source, calib)
    if calib is not None:
        calib = _to_layout(calib, source.input.layout, road.input_layout)
    notes = list(road.notes)
    if float_ops:
        from converters.export.tflite_float_ops import convert_keeping_float

        data, more = convert_keeping_float(road.make, precision, io_dtype, calib, float_ops, where)
        notes += more
    else:
        converter = road.make()
        notes += configure(converter, precision, io_dtype, calib)
        try:
            data = convert_bytes(converter, where)
        except ConversionError as exc:
            # 16x8 lacks kernels for some ops (e.g. DEPTH_TO_SPACE); TFLite's documented remedy keeps them in float.
            detail = getattr(exc, "detail", str(exc))
            if precision != "int16x8" or "not yet supported for op" not in detail:
                raise
            converter = road.make()
            configure(converter, precision, io_dtype, calib, builtins_fallback=True)
            notes.append("ops without 16x8 kernels kept in float: " + ", ".join(_unsupported_16x8(detail)))
            data = convert_bytes(converter, where)
    if precision == "int8":  # before anything loads it: a collapsed scale aborts LiteRT's XNNPACK set-up
        from converters.export.tflite_scales import raise_collapsed_scales

        data, raised = raise_collapsed_scales(data)
        if raised:
            notes.append(f"{len(raised)} conv output scale(s) collapsed by calibration (all-zero outputs) raised "
                         f"to XNNPACK's minimum: {', '.join(n.split(';')[0][-50:] for n in raised[:3])}")
    if precision == "int8" and keep_refused_in_float:  # what XNNPACK still cannot requantise stays float
        data = _keep_xnnpack_refused_in_float(road, data, io_dtype, calib, float_ops, where, notes)
    if precision == "int8":
        data = _fit_xnnpack(data, notes, fold_logistics=not float_ops)
    info = inspect_tflite(data, where)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ConversionError(f"{where}: converted model has {len(info.inputs)} inputs and {len(info.outputs)} "
                              f"outputs; expected one of each")
    if precision in NEEDS_CALIBRATION:
        floats = info.float_compute_ops()
        if floats:
            notes.append(f"{len(floats)} op(s) compute in float: "
                         f"{', '.join(sorted({o.op for o in floats}))}")
    if precision == "int8":
        from converters.export.tflite_inspect import delegate_warnings

        notes += delegate_warnings(data)
    write_atomic(data, out_file)
    inp, out = info.inputs[0], info.outputs[0]
    return ExportResult(
        format="tflite", precision=precision, files={out_file.name: out_file}, model_file=out_file.name,
        input_name=inp.name, output_name=out.name, input_layout=road.input_layout, output_layout=road.output_layout,
        input_dtype=inp.dtype, output_dtype=out.dtype, input_quantization=inp.quantization,
        output_quantization=out.quantization, input_shape=inp.shape, output_shape=out.shape, ops=info.op_names,
        tools=_tools(), seconds=time.time() - start, notes=notes,
        extra={"op_counts": info.op_counts(), "bytes": len(data), "float_ops": list(float_ops)})
