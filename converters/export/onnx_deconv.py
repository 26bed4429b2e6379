"""Rewrite depthwise ConvTranspose (k4 s2 p1, groups == channels) as four depthwise convs + DepthToSpace.

TFLite has no depthwise transposed convolution, so onnx2tf splits such a layer into one TRANSPOSE_CONV per channel
(384 ops for the shared SimpleBaseline-family model): slow to convert, slow to run, and each op gets its own
quantisation. The same function is a sub-pixel decomposition: output pixel (2m+a, 2p+b) only sees input taps of
parity (a, b), i.e. a 3x3 depthwise conv per phase (unused taps zero, symmetric padding 1), and DepthToSpace (DCR)
interleaves the four phases. A BatchNormalization right after the layer is folded into the phase kernels: left
behind the DepthToSpace it would become a per-channel MUL on a per-tensor-quantised tensor, which int8 and 16x8
cannot represent well (its scales span ~100x here). Exact in real arithmetic; verified with onnxruntime.
"""
from __future__ import annotations

import numpy as np

# Kernel row (or column) taps of a k4 s2 p1 transposed conv, as a 3-tap correlation over x[m-1], x[m], x[m+1].
PHASE_TAPS = {0: (3, 1, None), 1: (None, 2, 0)}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_depthwise_k4s2p1(node, weights: dict) -> bool:
    if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in weights:
        return False
    a = _attrs(node)
    w = weights[node.input[1]]
    return (w.ndim == 4 and w.shape[1:] == (1, 4, 4) and a.get("group", 1) == w.shape[0] > 1
            and list(a.get("strides", [1, 1])) == [2, 2] and list(a.get("pads", [0] * 4)) == [1, 1, 1, 1]
            and list(a.get("dilations", [1, 1])) == [1, 1] and not any(a.get("output_padding", [0, 0]))
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and "output_shape" not in a)


def phase_kernels(w: np.ndarray) -> list[np.ndarray]:
    """(C,1,4,4) transposed-conv weights -> four (C,1,3,3) correlation kernels, phases (0,0), (0,1), (1,0), (1,1)."""
    out = []
    for a in (0, 1):
        for b in (0, 1):
            k = np.zeros((w.shape[0], 1, 3, 3), w.dtype)
            for r, kr in enumerate(PHASE_TAPS[a]):
                for c, kc in enumerate(PHASE_TAPS[b]):
                    if kr is not None and kc is not None:
                        k[:, :, r, c] = w[:, :, kr, kc]
            out.append(k)
    return out


def _following_bn(node, consumers, graph_outputs, weights):
    """The BatchNormalization (inference form, constant parameters) that alone consumes `node`'s output."""
    users = consumers.get(node.output[0], [])
    if len(users) != 1 or node.output[0] in graph_outputs:
        return None
    bn = users[0]
    if bn.op_type != "BatchNormalization" or len(bn.output) != 1 and any(bn.output[1:]):
        return None
    return bn if all(i in weights for i in bn.input[1:5]) else None


def _bn_affine(bn, weights) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (weights[i].astype(np.float64) for i in bn.input[1:5])
    eps = _attrs(bn).get("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + eps)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def rewrite_depthwise_deconvs(model):
    """A copy of `model` with every depthwise k4 s2 p1 ConvTranspose decomposed; returns (model, count)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    nodes, count, folded = [], 0, set()
    for node in graph.node:
        if id(node) in folded:
            continue
        if not _is_depthwise_k4s2p1(node, weights):
            nodes.append(node)
            continue
        count += 1
        w = weights[node.input[1]]
        c = w.shape[0]
        bias = weights.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        bias = np.zeros(c, w.dtype) if bias is None else bias.astype(w.dtype)
        scale, shift, outputs = np.ones(c, w.dtype), None, list(node.output)
        base = f"{node.name or node.output[0]}_subpixel"
        bn = _following_bn(node, consumers, graph_outputs, weights)
        if bn is not None:
            scale, shift = _bn_affine(bn, weights)
            bias = (bias * scale).astype(w.dtype)
            outputs = [f"{base}_unshifted"]
            folded.add(id(bn))
        graph.initializer.append(numpy_helper.from_array(bias, f"{base}_b"))
        phases = []
        for i, k in enumerate(phase_kernels(w)):
            wname = f"{base}_w{i}"
            graph.initializer.append(numpy_helper.from_array((k * scale[:, None, None, None]).astype(w.dtype), wname))
            conv_in = [node.input[0], wname, f"{base}_b"]
            phases.append(f"{base}_p{i}")
            nodes.append(helper.make_node("Conv", conv_in, [phases[-1]], name=phases[-1], group=c,
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]))
        nodes.append(helper.make_node("Concat", phases, [f"{base}_cat"], name=f"{base}_cat", axis=1))
        nodes.append(helper.make_node("DepthToSpace", [f"{base}_cat"], outputs, name=f"{base}_d2s",
                                      blocksize=2, mode="DCR"))
        if bn is not None:  # the BN shift stays a per-channel Add: as a conv bias it overflows 16x8 kernels
            graph.initializer.append(numpy_helper.from_array(shift.reshape(1, c, 1, 1).astype(w.dtype),
                                                             f"{base}_shift"))
            nodes.append(helper.make_node("Add", [outputs[0], f"{base}_shift"], list(bn.output[:1]),
                                          name=f"{base}_shift"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model, count
