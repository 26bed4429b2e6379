"""Parameters and multiply-accumulates of a Keras model, counted the way mmpose/mmcv report them.

Parameters: trainable weights only (BatchNorm running statistics are buffers in PyTorch, not parameters).
MACs: per output element of convolutions (grouped and depthwise included) and dense layers; transposed convolutions
per input element (each input pixel is scattered through the whole kernel). Bias adds, BN, activations, pooling and
element-wise ops are not counted, as in mmcv's counter for these layer types.
"""
from __future__ import annotations

import numpy as np


def count_parameters(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def _spatial(shape) -> int:
    return int(np.prod([int(d) for d in shape[1:-1]]))


def layer_macs(layer) -> int:
    from keras import layers as L

    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw, c, m = (int(d) for d in layer.kernel.shape)
        return _spatial(layer.output.shape) * kh * kw * c * m
    if isinstance(layer, L.Conv2DTranspose):
        kh, kw, out_c, in_c = (int(d) for d in layer.kernel.shape)
        return _spatial(layer.input.shape) * kh * kw * in_c * out_c
    if isinstance(layer, L.Conv2D):
        kh, kw, in_per_group, out_c = (int(d) for d in layer.kernel.shape)
        return _spatial(layer.output.shape) * kh * kw * in_per_group * out_c
    if isinstance(layer, L.Dense):
        in_c, out_c = (int(d) for d in layer.kernel.shape)
        return int(np.prod([int(d) for d in layer.output.shape[1:-1]] or [1])) * in_c * out_c
    return 0


def count_macs(model) -> int:
    """MACs of one batch-1 forward pass, walking nested models too."""
    total = 0
    for layer in model.layers:
        if getattr(layer, "layers", None) and hasattr(layer, "inputs"):
            total += count_macs(layer)
        else:
            total += layer_macs(layer)
    return total
