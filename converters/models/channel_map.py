"""Keras layers whose channels are stored in another order than their weights': a channel permutation (and
passthrough channels) folded into the weights instead of moved in memory.

A tensor's `index` says which logical channel (the PyTorch module's channel number) each stored channel holds; -1
marks a stored channel the layer does not own (its logical model has fewer channels). Each layer keeps its weights
in the logical shape, so an mmpose state dict loads by name as for the plain Keras layer
(converters.weights.load_state_dict) and seeded weights are drawn alike, and gathers them into the stored order in
`call`: constants in the exported graph, folded into the convolution weights by the converter (no Gather runs).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def _index(values) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


def _gather(weights, index, axis: int, fill):
    """weights along `axis` in the stored order; -1 entries take `fill` (a slice of the weights' shape)."""
    if index is None:
        return weights
    padded = ops.concatenate([weights, ops.cast(fill, weights.dtype)], axis=axis)
    last = int(weights.shape[axis])
    return ops.take(padded, np.asarray([last if i < 0 else i for i in index], np.int32), axis=axis)


def _fill(shape, axis: int, value: float):
    shape = list(shape)
    shape[axis] = 1
    return np.full(shape, value, np.float32)


@keras.saving.register_keras_serializable(package="edge_pose")
class MappedConv2D(layers.Conv2D):
    """Conv2D reading stored channels `in_index` (-1: not an input of this conv, weight 0) and writing stored
    channels `out_index` (-1: an output of constant `out_fill`, weights 0 and bias out_fill). A 0 weight times a
    finite input adds an exact zero, so owned outputs are the logical conv's and unowned ones the constant."""

    def __init__(self, filters, kernel_size, in_index=None, out_index=None, out_fill: float = 0.0, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.in_index, self.out_index, self.out_fill = _index(in_index), _index(out_index), float(out_fill)
        if self.out_fill and not self.use_bias:
            raise ValueError(f"{self.name}: a constant output fill needs a bias")

    def build(self, input_shape):
        logical = tuple(input_shape[:-1]) + (self._logical_in(input_shape),)
        super().build(logical)
        self.input_spec = None

    def _logical_in(self, input_shape) -> int:
        return input_shape[-1] if self.in_index is None else max(self.in_index) + 1

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(tuple(input_shape[:-1]) + (self._logical_in(input_shape),))
        return tuple(shape[:-1]) + ((len(self.out_index) if self.out_index is not None else self.filters),)

    def call(self, inputs):
        kernel = _gather(self.kernel, self.in_index, 2, _fill(self.kernel.shape, 2, 0.0))
        kernel = _gather(kernel, self.out_index, 3, _fill(kernel.shape, 3, 0.0))
        outputs = self.convolution_op(inputs, kernel)
        if self.use_bias:
            outputs = ops.add(outputs, _gather(self.bias, self.out_index, 0, [self.out_fill]))
        return outputs

    def get_config(self):
        return {**super().get_config(), "in_index": self.in_index, "out_index": self.out_index,
                "out_fill": self.out_fill}


@keras.saving.register_keras_serializable(package="edge_pose")
class MappedDepthwiseConv2D(layers.DepthwiseConv2D):
    """DepthwiseConv2D over stored channels `index`; a -1 channel passes through unchanged (identity kernel:
    the centre tap 1, the rest 0, exact for finite inputs). No bias (followed by a MappedBatchNorm)."""

    def __init__(self, kernel_size, index=None, **kwargs):
        super().__init__(kernel_size, use_bias=False, **kwargs)
        self.index = _index(index)

    def build(self, input_shape):
        logical = input_shape[-1] if self.index is None else max(self.index) + 1
        super().build(tuple(input_shape[:-1]) + (logical,))
        self.input_spec = None

    def call(self, inputs):
        kh, kw = self.kernel_size
        identity = np.zeros((kh, kw, 1, 1), np.float32)
        identity[kh // 2, kw // 2] = 1.0
        kernel = _gather(self.kernel, self.index, 2, identity)
        return ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                                  dilation_rate=self.dilation_rate, data_format=self.data_format)

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="edge_pose")
class MappedBatchNorm(layers.BatchNormalization):
    """Inference BatchNorm over stored channels `index`: x * scale + shift with the logical channels' scale
    gamma / sqrt(var + eps) and shift beta - mean * scale; a -1 channel gets `fill` = (scale, shift), (1, 0)
    to pass it through, (0, c) to make it the constant c."""

    def __init__(self, index=None, fill=(1.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.index, self.fill = _index(index), (float(fill[0]), float(fill[1]))

    def build(self, input_shape):
        logical = input_shape[-1] if self.index is None else max(self.index) + 1
        super().build(tuple(input_shape[:-1]) + (logical,))
        self.input_spec = None

    def call(self, inputs, training=None, mask=None):
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        shift = self.beta - self.moving_mean * scale
        return inputs * _gather(scale, self.index, 0, [self.fill[0]]) + _gather(shift, self.index, 0,
                                                                                  [self.fill[1]])

    def get_config(self):
        return {**super().get_config(), "index": self.index, "fill": self.fill}
