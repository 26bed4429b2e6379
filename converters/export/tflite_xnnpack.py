"""Quantised ops XNNPACK cannot run, found before LiteRT refuses the whole model.

XNNPACK requantises a quantised convolution's accumulator with input scale x weight scale / output scale and refuses
to create the operator when that ratio is 256 or more (per output channel). The TFLite delegate only finds out when
it builds its runtime, and then the interpreter as a whole fails ("failed to create XNNPACK runtime", "Node number N
(TfLiteXNNPackDelegate) failed to prepare"). The ratio explodes where a layer's activations are all (nearly) zero on
the calibration crops: a dead ReLU6 layer, as pruning or a collapsed batch norm leaves behind, gets an output scale
near 1e-8. Those ops are kept in float (selective quantisation); the rest of the model stays int8.
"""
from __future__ import annotations

import re

import numpy as np

XNNPACK_MAX_REQUANT = 256.0  # XNNPACK's limit for qs8 convolutions (requantization scale must be below it)
# the ops XNNPACK requantises with input x weight / output scale: (data input index, weights input index)
CONV_DATA_WEIGHTS = {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1),
                     "TRANSPOSE_CONV": (2, 1)}


def split_runtime_message(text: str) -> str:
    """LiteRT joins its error reporter's messages without a separator ("...XNNPACK runtimeNode number 52 ..."):
    one readable line, messages separated by '; '."""
    text = " ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())
    return re.sub(r"(?<=[a-z0-9.)])(?=(Node number \d+|Failed to|failed to|Restored original))", "; ", text)


def unrepresentable_ops(model_bytes: bytes) -> list[tuple[str, str, float, float]]:
    """(op type, output tensor name, requantisation ratio, output scale) of every quantised op whose ratio XNNPACK
    refuses, read from the model's tensors (no delegate applied, so it loads)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model_bytes,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}

    def scales(index: int) -> np.ndarray:
        return np.asarray(tensors[index]["quantization_parameters"]["scales"], np.float64) if index >= 0 else \
            np.zeros(0)

    found = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the runtime's only view of the node list
        if op["op_name"] not in CONV_DATA_WEIGHTS:
            continue
        ins = list(op["inputs"])
        data, weights = (ins[i] for i in CONV_DATA_WEIGHTS[op["op_name"]])
        s_in, s_w, s_out = scales(data), scales(weights), scales(op["outputs"][0])
        if not (len(s_in) and len(s_w) and len(s_out)) or s_out[0] <= 0:
            continue
        ratio = float(s_in[0] * s_w.max() / s_out[0])
        if ratio >= XNNPACK_MAX_REQUANT:
            found.append((op["op_name"], tensors[op["outputs"][0]]["name"], ratio, float(s_out[0])))
    return found
