"""Bring an ONNX model up to what today's converters expect, without changing what it computes.

Old exports (opset 8, IR 3, like the shared SimpleBaseline-family model) trip onnx2tf and friends: the legacy
BatchNormalization `spatial` attribute blocks the opset converter, weights listed as graph inputs look like
dynamic inputs, and missing intermediate shapes break ConvTranspose handling. We fix exactly those things.
"""
from __future__ import annotations

from typing import Sequence

import onnx
from onnx import shape_inference, version_converter

TARGET_OPSET = 13
MIN_IR = 7  # the IR version that goes with opset 13


def default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def prepare(model: onnx.ModelProto, input_shapes: dict[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """A prepared copy: no legacy BN attribute, opset >= 13, initializers out of the inputs, static input shapes
    (from `input_shapes` where the file leaves dims open), and shapes inferred for every tensor."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            keep = [a for a in node.attribute if a.name != "spatial"]
            del node.attribute[:]
            node.attribute.extend(keep)
    weights = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(real_inputs)
    if model.ir_version < MIN_IR:
        model.ir_version = MIN_IR
    if default_opset(model) < TARGET_OPSET:
        model = version_converter.convert_version(model, TARGET_OPSET)
        model.ir_version = max(model.ir_version, MIN_IR)
    for inp in model.graph.input:
        want = (input_shapes or {}).get(inp.name)
        if want is None:
            continue
        dims = inp.type.tensor_type.shape.dim
        for d, size in zip(dims, want):
            if not d.dim_value:
                d.ClearField("dim_param")
                d.dim_value = int(size)
    del model.graph.value_info[:]
    for out in model.graph.output:  # let inference recompute outputs from the fixed inputs
        for d in out.type.tensor_type.shape.dim:
            if not d.dim_value:
                d.ClearField("dim_param")
    model = shape_inference.infer_shapes(model, strict_mode=False)
    onnx.checker.check_model(model)
    return model


def dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """Shape as ints, None for unknown dims."""
    return [d.dim_value or None for d in value_info.type.tensor_type.shape.dim]
