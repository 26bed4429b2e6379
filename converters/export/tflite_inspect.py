"""Read a converted .tflite back: its operator list, I/O tensors and quantisation, and whether LiteRT loads it.

The exporter checks its own product with these facts (builtin ops only, batch 1, static shapes) instead of trusting
the converter's settings, and reports them in the ExportResult.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_pose.bundle import Quantization

from converters.errors import ConversionError, RuntimeRefused

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
QUANT_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    quantization: Quantization | None


@dataclass
class OpInfo:
    op: str  # builtin name, or "CUSTOM:<name>" for a custom op
    outputs: list[str]  # output tensor names
    out_dtype: str
    out_shape: tuple[int, ...] = ()


@dataclass
class TFLiteInfo:
    ops: list[OpInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    non_builtin: list[str] = field(default_factory=list)

    @property
    def op_names(self) -> list[str]:
        return [o.op for o in self.ops]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.ops:
            counts[o.op] = counts.get(o.op, 0) + 1
        return counts

    def float_compute_ops(self) -> list[OpInfo]:
        """Ops that compute in float32 inside a quantised model (quantise/dequantise boundaries excluded)."""
        return [o for o in self.ops if o.out_dtype == "float32" and o.op not in QUANT_BOUNDARY_OPS]


def _builtin_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def opcode_names(model) -> list[str | None]:
    """Builtin name of each entry of a model object's operator-code table (None for a code this TF does not know)."""
    names = _builtin_names()
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode)) for c in model.operatorCodes]


def _dtype_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_") and isinstance(v, int)}


def read_ops(model_bytes: bytes) -> tuple[list[OpInfo], list[str]]:
    """Operators of the main subgraph in execution order, and the names of any non-builtin (custom/flex) ops."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    names, dtypes = _builtin_names(), _dtype_names()
    codes = []
    for c in model.operatorCodes:
        code = max(c.builtinCode, c.deprecatedBuiltinCode)
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = c.customCode.decode() if isinstance(c.customCode, bytes) else str(c.customCode)
            name = f"CUSTOM:{custom}"
        codes.append(name)
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        outs = [graph.tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        ops.append(OpInfo(codes[op.opcodeIndex], [_name(t.name) for t in outs],
                          dtypes.get(outs[0].type, "?") if outs else "?",
                          tuple(int(d) for d in outs[0].shape) if outs and outs[0].shape is not None else ()))
    non_builtin = sorted({o.op.split(":", 1)[1] for o in ops if o.op.startswith("CUSTOM:")})
    return ops, non_builtin


def _name(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _tensor(detail: dict) -> TensorInfo:
    scale, zero = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    q = Quantization(float(scale), int(zero)) if dtype in ("int8", "uint8", "int16") and scale else None
    return TensorInfo(detail["name"], tuple(int(d) for d in detail["shape"]),
                      tuple(int(d) for d in detail.get("shape_signature", detail["shape"])), dtype, q)


def inspect_tflite(model_bytes: bytes, where: str) -> TFLiteInfo:
    """Op list and I/O of a converted model; refuses non-builtin ops and models LiteRT cannot load."""
    ops, non_builtin = read_ops(model_bytes)
    if non_builtin:
        raise ConversionError(f"{where}: the converted model needs non-builtin op(s) {', '.join(non_builtin)}; "
                              f"edge-pose bundles use builtin TFLite ops only")
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_content=model_bytes)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        from converters.export.tflite_xnnpack import split_runtime_message

        raise RuntimeRefused(f"{where}: LiteRT cannot load the converted model "
                              f"({split_runtime_message(exc) or type(exc).__name__})") from None
    info = TFLiteInfo(ops, [_tensor(d) for d in interp.get_input_details()],
                      [_tensor(d) for d in interp.get_output_details()])
    for t in info.inputs + info.outputs:
        if any(d <= 0 for d in t.shape_signature) or t.shape[0] != 1:
            raise ConversionError(f"{where}: tensor {t.name!r} has shape {list(t.shape_signature)}; bundles need "
                                  f"batch 1 and static shapes")
    return info


def delegate_warnings(model_bytes: bytes) -> list[str]:
    """Why an int8 model may run slower than it should on LiteRT's default XNNPACK delegate: ops it leaves to
    TFLite's own kernels (each one also splits the delegated graph) and float islands with their quantise /
    dequantise pairs. Empty when the whole model runs in one int8 XNNPACK partition."""
    from edge_pose.bench.profile_litert import plan

    facts = plan(model_bytes, threads=1)
    notes = []
    if facts["outside_counts"]:
        ops = ", ".join(f"{op} x{n}" for op, n in facts["outside_counts"].items())
        notes.append(f"warning: {sum(facts['outside_counts'].values())} op(s) run outside XNNPACK on TFLite's "
                     f"own kernels ({ops}), splitting the model into {facts['delegate_partitions']} delegate "
                     f"partitions: expect int8 to be slow on CPU")
    pairs = facts["quantization"].get("dequantize", 0)
    if pairs:
        notes.append(f"warning: {pairs} dequantize/quantize pair(s) inside the int8 model "
                     f"({facts['float_compute_ops']} op(s) compute in float between them)")
    return notes
