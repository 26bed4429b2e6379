"""ONNX export: FP32, FP16 (weights and arithmetic, float32 I/O) or INT8 (QDQ, per-channel weights, calibrated on
the same real crops), static batch-1 shapes, for ONNX Runtime (CPU, CUDA, TensorRT).

Sources reach ONNX through maintained converters, never hand-written graph code: a bring-your-own ONNX is the
source's prepared copy (opset >= 13, shapes inferred; made once when the source is loaded), Keras models go through
tf2onnx's Keras path, SavedModels and frozen graphs through tf2onnx's graph path. FP16 uses onnxruntime's float16
converter (keep_io_types) and INT8 onnxruntime's static QDQ quantiser; both ship inside the onnxruntime wheel.
The model keeps the source's layout (tf2onnx keeps NHWC at the I/O of TF models).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConversionError
from converters.export.result import ExportResult
from registry import FORMATS

PRECISIONS = FORMATS["onnx"].precisions
OPSET = 17


def _tf_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _float_model(source: Any, work: Path):
    """The source as an fp32 ONNX ModelProto with a static batch-1 input (cached per source)."""
    import onnx

    cached = source.cache.get("onnx_fp32")
    if cached is not None:
        return onnx.load(str(cached))
    out = work / "fp32.onnx"
    kind = source.kind
    if kind == "onnx":
        model = onnx.load(str(source.onnx_path))
    elif kind == "keras":
        import tensorflow as tf
        import tf2onnx

        spec = [tf.TensorSpec(source.input_shape, tf.float32, name=source.input.name)]
        model, _ = tf2onnx.convert.from_keras(source.keras_model, input_signature=spec, opset=OPSET)
        model = _keep_output(model, source.output.name)
    elif kind in ("frozen_graph", "savedmodel"):
        import tf2onnx
        from tf2onnx import tf_loader

        if kind == "frozen_graph":
            graph_def = getattr(source, "graph_def", None)
            if graph_def is None:
                graph_def = tf_loader.from_graphdef(str(source.pb_path), [_tf_name(source.input.name)],
                                                    [_tf_name(source.output.name)])[0]
            inputs, outputs = [_tf_name(source.input.name)], [_tf_name(source.output.name)]
        else:
            graph_def, inputs, outputs = tf_loader.from_saved_model(str(source.saved_model_dir()), None, None)[:3]
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=OPSET,
                                                  shape_override={inputs[0]: list(source.input_shape)})
        if kind == "savedmodel":
            model = _keep_output(model, source.output.name)
    else:
        raise ConversionError(f"{source.model_name}: source kind {kind!r} cannot be exported to ONNX")
    model = _static_batch1(model, source)
    onnx.save(model, str(out))
    source.cache["onnx_fp32"] = out
    return model


def _keep_output(model, wanted: str):
    """A Keras/SavedModel graph may expose several outputs; keep the heatmap one the source names."""
    outs = [o for o in model.graph.output]
    if len(outs) <= 1:
        return model
    keep = [o for o in outs if o.name == wanted or o.name.split(":")[0].endswith(wanted)]
    if len(keep) != 1:
        raise ConversionError(f"cannot tell the heatmap output {wanted!r} among {[o.name for o in outs]}")
    for o in outs:
        if o is not keep[0]:
            model.graph.output.remove(o)
    return model


def _static_batch1(model, source):
    import onnx

    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, size in zip(dims, source.input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(size)
    return onnx.shape_inference.infer_shapes(model)


class _Reader:
    """onnxruntime's calibration data reader over real crops in the source's input form."""

    def __init__(self, name: str, inputs: np.ndarray):
        self.name, self.inputs, self.i = name, inputs, 0

    def get_next(self):
        if self.i >= len(self.inputs):
            return None
        self.i += 1
        return {self.name: self.inputs[self.i - 1:self.i].astype(np.float32)}

    def rewind(self):
        self.i = 0


def float_node_names(model, wanted) -> list[str]:
    """Node names for the int8 float scopes: "first_conv" (the conv nearest the input), "last_conv" (the conv
    producing the heatmaps), or literal node names; a scope the model lacks is refused in one line."""
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    names = {n.name for n in model.graph.node}
    out = []
    for w in wanted:
        if w == "first_conv" and convs:
            out.append(convs[0].name)
        elif w == "last_conv" and convs:
            out.append(convs[-1].name)
        elif w in names:
            out.append(w)
        else:
            raise ConversionError(f"ONNX int8: no node {w!r} to keep in float")
    return out


def export_onnx(source: Any, precision: str, out_dir, calib_inputs=None, blob_device=None,
                float_nodes=(), calibrate: str = "minmax") -> ExportResult:
    """Write model.onnx into out_dir. calib_inputs (the source's input form, float32) are needed for int8;
    float_nodes keeps those nodes in float (see float_node_names); calibrate: minmax | percentile | entropy."""
    import onnx
    import onnxruntime

    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ConversionError(f"ONNX precision {precision!r} unsupported (use {', '.join(PRECISIONS)})")
    if precision == "int8" and (calib_inputs is None or not len(calib_inputs)):
        raise ConversionError(f"{source.model_name} -> ONNX int8: needs calibration crops")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(source.workdir()) / "onnx"
    work.mkdir(exist_ok=True)
    model = _float_model(source, work)
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    path = out_dir / "model.onnx"
    notes = [f"ONNX opset {max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))} from the "
             f"{source.kind} source; static input shape {list(source.input_shape)} ({source.input.layout})"]
    tools = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    if source.kind != "onnx":
        import tf2onnx

        tools["tf2onnx"] = tf2onnx.__version__
    if precision == "fp32":
        onnx.save(model, str(path))
    elif precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(model, keep_io_types=True), str(path))
        notes.append("weights and arithmetic in float16, inputs and outputs float32 (onnxruntime float16 converter)")
    else:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        fp32, pre = work / "int8-src.onnx", work / "int8-pre.onnx"
        onnx.save(model, str(fp32))
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        nodes_to_exclude = float_node_names(onnx.load(str(pre)), float_nodes)  # names after pre-processing
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[calibrate]
        quantize_static(str(pre), str(path), _Reader(in_name, np.asarray(calib_inputs)),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=list(nodes_to_exclude))
        notes.append(f"INT8 QDQ by onnxruntime static quantisation: per-channel int8 weights, int8 activations, "
                     f"{calibrate} ranges from {len(calib_inputs)} calibration inputs"
                     + (f", kept in float: {', '.join(nodes_to_exclude)}" if nodes_to_exclude else ""))
    saved = onnx.load(str(path))
    ops = sorted({n.op_type for n in saved.graph.node})
    shape = lambda v: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)  # noqa: E731
    return ExportResult(
        format="onnx", precision=precision, files={"model.onnx": path}, model_file="model.onnx",
        input_name=saved.graph.input[0].name, output_name=saved.graph.output[0].name,
        input_layout=source.input.layout, output_layout=source.output.layout,
        input_shape=shape(saved.graph.input[0]), output_shape=shape(saved.graph.output[0]),
        ops=ops, tools=tools, seconds=time.perf_counter() - start, notes=notes,
        extra={"source_output": out_name})
