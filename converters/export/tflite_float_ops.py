"""Keep chosen layers of an int8 / 16x8 TFLite model in float: the fidelity guard's mitigation hook.

What the TF converter truly supports is *selective quantisation*: calibrate the whole model, then quantise it while
skipping a denylist of op types or of individual nodes (named by their output tensor), which stay float32 with
QUANTIZE/DEQUANTIZE around them. This is the mechanism behind tf.lite.experimental.QuantizationDebugger's
denylists (its get_nondebug_quantized_model); we call the same quantiser directly so int8/uint8 I/O stays available.
Per-op mixing of int8 and 16x8 is not something the converter offers, and its selective quantiser produces 16x8
models LiteRT refuses (non-zero int16 zero points), so float_ops applies to int8 only; a 16x8 model as a whole is
the other mitigation (export_tflite(..., "int16x8")), which keeps ops lacking 16x8 kernels in float automatically.

Names accepted in `float_ops`:
  - a builtin op type in capitals (LOGISTIC, CONV_2D, ...): every op of that type;
  - `first_conv` / `last_conv`: the first / last convolution in execution order (stem / heatmap head);
  - `refinement_stages`: in a multi-stage model (several convs producing the K heatmap channels), every op after
    the first stage's heatmap head; the backbone and the first stage stay int8;
  - any other text: every op whose output tensor name contains it (Keras layer names such as `head.final_layer`
    survive into TFLite tensor names).
"""
from __future__ import annotations

from typing import Sequence

from converters.errors import ConversionError
from converters.export.tflite_inspect import CONV_OPS, _builtin_names, read_ops

SPECIAL = ("first_conv", "last_conv", "refinement_stages")


def resolve(float_ops: Sequence[str], calibrated: bytes, where: str) -> tuple[list[str], list[str]]:
    """float_ops -> (denylisted op types, denylisted node names) in the calibrated model."""
    ops, _ = read_ops(calibrated)
    builtin = set(_builtin_names().values())
    op_types, nodes = [], []
    convs = [o for o in ops if o.op in CONV_OPS and o.outputs]
    for name in float_ops:
        if name in builtin:
            if not any(o.op == name for o in ops):
                raise ConversionError(f"{where}: float op type {name} does not occur in the model")
            op_types.append(name)
        elif name in SPECIAL:
            if not convs:
                raise ConversionError(f"{where}: the model has no convolution for {name}")
            if name == "refinement_stages":
                nodes += _after_first_head(ops, convs, where)
            else:
                nodes.append((convs[0] if name == "first_conv" else convs[-1]).outputs[0])
        else:
            hits = [o.outputs[0] for o in ops if o.outputs and name in o.outputs[0]]
            if not hits:
                sample = ", ".join(o.outputs[0] for o in convs[-3:])
                raise ConversionError(f"{where}: no op output named like {name!r} to keep in float "
                                      f"(e.g. {sample})")
            nodes += hits
    return op_types, list(dict.fromkeys(nodes))


def _after_first_head(ops, convs, where: str) -> list[str]:
    """Outputs of every op after the first of several heatmap heads (convs with the model's K output channels)."""
    k = convs[-1].out_shape[-1] if convs[-1].out_shape else None
    heads = [o for o in convs if o.out_shape and o.out_shape[-1] == k and o.op == "CONV_2D"]
    if k is None or len(heads) < 2:
        raise ConversionError(f"{where}: not a multi-stage model ({len(heads)} conv(s) produce the {k} heatmap "
                              f"channels); no refinement stages to keep in float")
    start = next(i for i, o in enumerate(ops) if o is heads[0]) + 1
    return [o.outputs[0] for o in ops[start:] if o.outputs and o.op not in ("QUANTIZE", "DEQUANTIZE")]


def convert_keeping_float(make_converter, precision: str, io_dtype: str, calib, float_ops: Sequence[str],
                          where: str) -> tuple[bytes, list[str]]:
    """Calibrate once, then quantise with the denylist; returns (model bytes, notes)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.python.convert import _types_pb2

    from converters.export.tflite import convert_bytes, representative

    converter = make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(calib)
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 (the debugger's own switch)
    calibrated = convert_bytes(converter, where)
    op_types, nodes = resolve(float_ops, calibrated, where)
    dtype = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_dtype]
    try:
        data = tfl_convert.mlir_quantize(
            calibrated, disable_per_channel=False, fully_quantize=io_dtype != "float32",
            inference_type=_types_pb2.QUANTIZED_INT16 if precision == "int16x8" else _types_pb2.QUANTIZED_INT8,
            input_data_type=dtype, output_data_type=dtype, denylisted_ops=op_types, denylisted_nodes=nodes)
    except Exception as exc:  # the quantiser raises RuntimeError/ValueError with long MLIR dumps
        raise ConversionError(f"{where}: selective quantisation failed ({type(exc).__name__}: "
                              f"{(str(exc).strip().splitlines() or [''])[0][:300]})") from None
    short = op_types + [n.split(";")[0][-60:] for n in nodes]  # fused ops carry every fused TF name; show one
    return data, [f"selective quantisation ({precision}): {', '.join(float_ops)} kept in float "
                  f"({len(op_types)} op type(s), {len(nodes)} node(s): {', '.join(short[:4])}"
                  f"{' ...' if len(short) > 4 else ''})"]
