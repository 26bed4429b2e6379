"""Repair int8 output scales that calibration collapsed to ~0 before XNNPACK sees them.

A convolution whose outputs were all zero on every calibration crop (a dead ReLU channel group, e.g. a
squeeze-excitation conv of a checkpoint with random or pruned weights) gets an output scale of ~1e-9. XNNPACK
accepts such a conv at partitioning time, then fails to create it (its requantisation scale input*filter/output
must stay below 256) and LiteRT 2.3 aborts the whole process with "double free or corruption" while cleaning up:
measured on the mmpose Lite-HRNet-18 fixture checkpoint. Raising the output scale to the smallest one XNNPACK
accepts changes nothing that calibration saw (zero stays the zero point) and lets the model load.
"""
from __future__ import annotations

import numpy as np

MAX_REQUANT = 255.0  # XNNPACK: input_scale * filter_scale / output_scale < 256


def raise_collapsed_scales(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """(model, names of the conv outputs whose scale was raised); the bytes are unchanged when none was."""
    from tensorflow.lite.tools import flatbuffer_utils

    from converters.export.tflite_inspect import opcode_names
    from converters.export.tflite_xnnpack import CONV_DATA_WEIGHTS

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    codes = opcode_names(model)
    fixed = []
    for graph in model.subgraphs:
        for op in graph.operators:
            if codes[op.opcodeIndex] not in CONV_DATA_WEIGHTS:
                continue
            data, weights = CONV_DATA_WEIGHTS[codes[op.opcodeIndex]]
            x, w, out = (graph.tensors[op.inputs[data]], graph.tensors[op.inputs[weights]],
                         graph.tensors[op.outputs[0]])
            if not all(_scales(t) is not None for t in (x, w, out)) or len(_scales(out)) != 1:
                continue
            floor = float(_scales(x)[0]) * float(np.max(_scales(w))) / MAX_REQUANT
            if float(_scales(out)[0]) < floor * (1 - 1e-6):  # float32 storage rounds: keep it idempotent
                out.quantization.scale = np.array([floor], np.float32)
                fixed.append(out.name.decode() if isinstance(out.name, bytes) else str(out.name))
    if not fixed:
        return model_bytes, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), fixed


def _scales(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0 or tensor.type not in (9, 3):  # INT8, UINT8
        return None
    return np.asarray(q.scale)
