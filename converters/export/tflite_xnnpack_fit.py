"""Fit an int8 TFLite model's elementwise ops into XNNPACK's requantisation ranges, and fold float islands that an
int8 kernel computes as well, so that the whole model runs inside one XNNPACK partition.

XNNPACK takes a quantised ADD only when each input scale / output scale lies in [2^-10, 2^8), and a quantised MUL only
when input1 scale x input2 scale / output scale lies in [2^-16, 2^8). An op outside those ranges runs on TFLite's own
kernel and cuts the delegated graph in two: measured on Lite-HRNet-30 int8 (seeded weights), 13 ADD and 7 MUL outside
the delegate, 11 partitions, and int8 no faster than fp32. The cause is always the same: a branch whose values are
tiny is added to (or, through a concatenation that shares one scale, written next to) a stream whose values are
huge, so the small input's whole int8 range is a fraction of one output step. Raising the small input's scale to the
smallest one XNNPACK accepts changes what the op computes by less than that one output step (the input contributed
less than a quarter of a step before and after), so the op's result is what it was, now inside the delegate.

A tensor's scale is shared with every tensor an int8 kernel passes through unchanged (RESHAPE, CONCATENATION,
SPLIT, STRIDED_SLICE, PAD, pools, ...: TFLite's int8 kernels for them copy or select bytes, so their inputs and
outputs carry equal quantisation): such a group is raised together, and only when every tensor in it is written by
an op that requantises its own output (a convolution, ADD, MUL, MEAN, QUANTIZE) or by a pass-through op inside the
group, none is a model input or output, and no other op reading or writing it would leave its XNNPACK range.

The TF quantiser also leaves some LOGISTICs in float, between a DEQUANTIZE and a QUANTIZE to LOGISTIC's own int8
output (scale 1/256, zero point -128). TFLite's int8 LOGISTIC computes exactly that from the int8 input: the pair is
folded away and the op reads and writes int8.
"""
from __future__ import annotations

import numpy as np

from converters.export.tflite_xnnpack import CONV_DATA_WEIGHTS, XNNPACK_MAX_REQUANT

ADD_RANGE = (2.0 ** -10, 2.0 ** 8)  # input scale / output scale
MUL_RANGE = (2.0 ** -16, 2.0 ** 8)  # input1 scale * input2 scale / output scale
_MARGIN = 1.0 + 1e-5  # float32 storage of the raised scale must land inside the range, not on its edge
# TFLite's int8 kernels of these copy or select bytes: their data inputs and outputs carry one quantisation
PASS_THROUGH = frozenset({"RESHAPE", "CONCATENATION", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SLICE", "PAD", "PADV2",
                          "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "GATHER", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                          "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "PACK",
                          "UNPACK", "TILE", "BROADCAST_TO"})
# ops whose int8 kernel requantises to whatever output scale the tensor names: a group may be raised only when every
# tensor in it is written by one of these or by a pass-through op inside the group
FREE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL", "MEAN",
                  "SUM", "QUANTIZE"})
_INT8 = 9  # TensorType.INT8


class _Graph:
    """The first subgraph of a model object, with who writes and who reads each tensor."""

    def __init__(self, model):
        from converters.export.tflite_inspect import opcode_names

        self.graph = model.subgraphs[0]
        self.codes = opcode_names(model)
        self.writer, self.readers = {}, {}
        for op in self.graph.operators:
            for t in op.outputs:
                self.writer[t] = op
            for t in op.inputs:
                if t >= 0:
                    self.readers.setdefault(t, []).append(op)

    def code(self, op) -> str:
        return self.codes[op.opcodeIndex]

    def scale(self, t: int) -> float | None:
        tensor = self.graph.tensors[t]
        q = tensor.quantization
        if tensor.type != _INT8 or q is None or q.scale is None or len(q.scale) != 1:
            return None
        return float(q.scale[0])

    def filter_scale(self, t: int) -> float | None:
        q = self.graph.tensors[t].quantization
        return None if q is None or q.scale is None or len(q.scale) == 0 else float(np.max(q.scale))

    def name(self, t: int) -> str:
        n = self.graph.tensors[t].name
        return (n.decode() if isinstance(n, bytes) else str(n)).split(";")[0]


def _data_inputs(g: _Graph, op) -> list[int]:
    """The inputs of a pass-through op that carry data (not its axis, shape, paddings or indices)."""
    code = g.code(op)
    if code in ("CONCATENATION", "PACK"):
        return [t for t in op.inputs if t >= 0]
    return [op.inputs[1]] if code == "SPLIT" else [op.inputs[0]]  # SPLIT: (axis, input)


def _group(g: _Graph, t: int) -> set[int]:
    """Tensors that must keep t's quantisation: joined through pass-through ops."""
    group, todo = set(), [t]
    while todo:
        x = todo.pop()
        if x in group:
            continue
        group.add(x)
        ops = list(g.readers.get(x, [])) + ([g.writer[x]] if x in g.writer else [])
        for op in ops:
            if g.code(op) not in PASS_THROUGH:
                continue
            for y in _data_inputs(g, op) + list(op.outputs):
                if y >= 0 and g.scale(y) is not None and g.scale(y) == g.scale(x):
                    todo.append(y)
    return group


def _raisable(g: _Graph, group: set[int], boundary: set[int]) -> bool:
    """Every tensor written by an op that requantises, or by a pass-through op whose data inputs are all in the
    group; none a model input or output."""
    for x in group:
        if x in boundary or x not in g.writer:
            return False
        writer = g.writer[x]
        code = g.code(writer)
        if code in PASS_THROUGH:
            if not all(i in group for i in _data_inputs(g, writer)):
                return False
        elif code not in FREE:
            return False
    return True


def _in_range(g: _Graph, op, scale_of) -> bool:
    """Does `op` stay inside XNNPACK's range when tensors take the scales `scale_of` gives?"""
    code = g.code(op)
    if code == "ADD":
        out = scale_of(op.outputs[0])
        return all(ADD_RANGE[0] <= scale_of(i) / out < ADD_RANGE[1] for i in op.inputs[:2])
    if code == "MUL":
        return MUL_RANGE[0] <= scale_of(op.inputs[0]) * scale_of(op.inputs[1]) / scale_of(op.outputs[0]) < MUL_RANGE[1]
    if code in CONV_DATA_WEIGHTS:
        data, weights = CONV_DATA_WEIGHTS[code]
        w = g.filter_scale(op.inputs[weights])
        return w is None or scale_of(op.inputs[data]) * w / scale_of(op.outputs[0]) < XNNPACK_MAX_REQUANT
    return True


def _needed(g: _Graph, op) -> list[tuple[int, float]]:
    """For an ADD or MUL below its XNNPACK range: (tensor, smallest scale that brings op into range) for each input
    whose raise would, the smaller scale first; [] when op is in range."""
    code = g.code(op)
    ins, out = op.inputs[:2], op.outputs[0]
    scales = [g.scale(t) for t in (*ins, out)]
    if any(s is None for s in scales) or len(ins) != 2:
        return []
    if code == "ADD":
        return [(t, scales[2] * ADD_RANGE[0] * _MARGIN) for t, s in zip(ins, scales[:2])
                if s / scales[2] < ADD_RANGE[0]]
    if code == "MUL" and scales[0] * scales[1] / scales[2] < MUL_RANGE[0]:
        # either input may rise, not a LOGISTIC's fixed output scale
        return [(t, scales[2] * MUL_RANGE[0] / other * _MARGIN)
                for s, t, other in sorted([(scales[0], ins[0], scales[1]), (scales[1], ins[1], scales[0])])
                if not (t in g.writer and g.code(g.writer[t]) == "LOGISTIC")]
    return []


def fit_elementwise_scales(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """(model, names of the tensors whose scale was raised); the bytes are unchanged when none was."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    g = _Graph(model)
    fixed: dict[int, None] = {}
    boundary = set(g.graph.inputs) | set(g.graph.outputs)
    for _ in range(4):  # a raised scale can push another op below its range; a few rounds settle it
        changed = False
        for op in g.graph.operators:
            code = g.code(op)
            if code not in ("ADD", "MUL"):
                continue
            for t, scale in _needed(g, op):
                group = _group(g, t)
                if not _raisable(g, group, boundary):
                    continue
                new = {x: scale for x in group}

                def scale_of(x, new=new):
                    return new.get(x, g.scale(x))

                touched = {id(o): o for x in group for o in g.readers.get(x, []) + [g.writer[x]]}
                if not all(_in_range(g, o, scale_of) for o in touched.values()
                           if o is not op and _in_range(g, o, g.scale)):
                    continue  # would push a neighbour out of its range
                for x in group:
                    g.graph.tensors[x].quantization.scale = np.array([scale], np.float32)
                    fixed[x] = None
                changed = True
                if code == "MUL" or _needed(g, op) == []:
                    break  # one raised MUL input suffices; an ADD may need both
        if not changed:
            break
    if not fixed:
        return model_bytes, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), [g.name(t) for t in fixed]


def fold_float_logistics(model_bytes: bytes) -> tuple[bytes, int]:
    """(model, how many DEQUANTIZE -> float LOGISTIC -> QUANTIZE chains became one int8 LOGISTIC)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    g = _Graph(model)
    drop, folded = set(), 0
    for op in g.graph.operators:
        if g.code(op) != "LOGISTIC" or g.graph.tensors[op.inputs[0]].type == _INT8:
            continue
        deq = g.writer.get(op.inputs[0])
        readers = g.readers.get(op.outputs[0], [])
        if deq is None or g.code(deq) != "DEQUANTIZE" or len(g.readers.get(op.inputs[0], [])) != 1 \
                or len(readers) != 1 or g.code(readers[0]) != "QUANTIZE" or op.outputs[0] in g.graph.outputs:
            continue
        source, target = deq.inputs[0], readers[0].outputs[0]
        q = g.graph.tensors[target].quantization
        if g.scale(source) is None or g.scale(target) != 1.0 / 256 or int(q.zeroPoint[0]) != -128:
            continue
        op.inputs[0], op.outputs[0] = source, target
        drop.update((id(deq), id(readers[0])))
        folded += 1
    if not folded:
        return model_bytes, 0
    g.graph.operators = [o for o in g.graph.operators if id(o) not in drop]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), folded
