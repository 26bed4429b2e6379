"""Static-shape Keras equivalents of PyTorch ops that mmpose evaluates at run time, chosen to be TFLite builtins.

For a fixed input size: adaptive average pooling is a plain AveragePooling2D, channel shuffle is a reshape/transpose
kept within 4-D (a 5-D transpose breaks converters and GPU delegates), nearest upsampling by an integer factor is
concatenation + reshape (XNNPACK lacks RESIZE_NEAREST_NEIGHBOR, and each one would split the delegated graph),
and bilinear align_corners resizing is RESIZE_BILINEAR(align_corners=True) (Keras' resize cannot express it).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def channel_shuffle(x, groups: int = 2, form: str = "transpose", scale: float = 1.0):
    """mmpose channel_shuffle on NHWC: output channel c*g + k is input channel k*C/g + c.

    form "transpose": (1,H,W,C) -> (1,HW,g,C/g) -> swap the last two -> (1,H,W,C), 4-D ops with constant shapes
    (keras.layers.Reshape would read the batch size at run time and add SHAPE/PACK ops that split delegate
    partitions); OpenVINO turns it into its ShuffleChannels. form "conv": a 1x1 conv whose constant weights are the
    permutation matrix (each output is one input times 1.0 plus zeros: exact in float, and in int8 the output
    keeps the input's range). XNNPACK's TRANSPOSE with an inner dimension of 2 is its slowest op in Lite-HRNet
    (a quarter of the int8 model's time); the permutation conv is a small GEMM, measured ~2x faster in int8 and
    fp32 at (1, 64, 48, 40). `scale` (form "conv"): the permutation times a constant (2.0 is exact)."""
    batch, height, width, channels = x.shape
    if form == "conv":
        kernel = np.zeros((1, 1, channels, channels), np.float32)
        out = np.arange(channels)
        kernel[0, 0, (out % groups) * (channels // groups) + out // groups, out] = scale
        return keras.ops.conv(x, kernel)
    if scale != 1.0:
        raise ValueError("a scaled channel shuffle needs form 'conv'")
    if form == "gather":  # a constant channel permutation (OpenVINO Gather; no reshape to block layout passes)
        out = np.arange(channels)
        return keras.ops.take(x, (out % groups) * (channels // groups) + out // groups, axis=3)
    if form != "transpose":
        raise ValueError(f"channel shuffle form must be 'transpose', 'conv' or 'gather', got {form!r}")
    x = keras.ops.reshape(x, (batch, height * width, groups, channels // groups))
    x = keras.ops.transpose(x, (0, 1, 3, 2))
    return keras.ops.reshape(x, (batch, height, width, channels))


@keras.saving.register_keras_serializable(package="edge_pose")
class ResizeBilinearAlignCorners(keras.layers.Layer):
    """F.interpolate(x, size, mode="bilinear", align_corners=True) to a fixed (height, width).

    Keras' resize has no align_corners, so this calls the TF op, which converts to TFLite RESIZE_BILINEAR
    (align_corners=True), a builtin that XNNPACK, the GPU delegate and OpenVINO all run."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = (int(size[0]), int(size[1]))

    def call(self, x):
        return tf.raw_ops.ResizeBilinear(images=x, size=self.size, align_corners=True, half_pixel_centers=False)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def resize_bilinear_align_corners(x, size_hw):
    """F.interpolate(x, size=size_hw, mode="bilinear", align_corners=True)."""
    return ResizeBilinearAlignCorners(size_hw)(x)


@keras.saving.register_keras_serializable(package="edge_pose")
class ResizeNearest(keras.layers.Layer):
    """Nearest resize by an integer factor through the TF op (OpenVINO: one Interpolate): output pixel i reads
    input floor(i / factor), exactly nn.Upsample(scale_factor=factor, mode="nearest")."""

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        size = (x.shape[1] * self.factor, x.shape[2] * self.factor)
        return tf.raw_ops.ResizeNearestNeighbor(images=x, size=size, align_corners=False, half_pixel_centers=False)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] * self.factor, input_shape[2] * self.factor, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def upsample_nearest(x, factor: int, form: str = "concat"):
    """nn.Upsample(scale_factor=factor, mode="nearest") for an integer factor.

    form "concat": concatenations and reshapes. XNNPACK has no RESIZE_NEAREST_NEIGHBOR (each one would split the
    delegated graph), but it runs these: f copies side by side in channels, read as f times the width; then f
    copies of each row, read as f times the height. All tensors stay 4-D with constant shapes. form "resize": the
    resize op (OpenVINO's Interpolate; an NHWC reshape there costs a layout transpose each)."""
    if factor == 1:
        return x
    if form == "resize":
        return ResizeNearest(factor)(x)
    if form != "concat":
        raise ValueError(f"nearest upsampling form must be 'concat' or 'resize', got {form!r}")
    batch, height, width, channels = x.shape
    x = _copies(x, factor, axis=3)
    x = keras.ops.reshape(x, (batch, height, width * factor, channels))
    x = _copies(x, factor, axis=2)
    return keras.ops.reshape(x, (batch, height * factor, width * factor, channels))


def _copies(x, n: int, axis: int):
    """n copies of x concatenated along axis, at most 4 inputs per CONCATENATION (XNNPACK's limit is 5: a
    concatenation of 8 falls back to the reference kernel and splits the delegated graph)."""
    for group in (4, 3, 2):
        if n > 4 and n % group == 0:
            return _copies(_copies(x, n // group, axis), group, axis)
    return keras.ops.concatenate([x] * n, axis=axis) if n > 1 else x


def multiply_by_upsampled(x, gate, factor: int, activation=None):
    """x * upsample_nearest(activation(gate), factor) without making the upsampled gate: x (1, h*f, w*f, C) read
    as (h, f, w, f*C), the gate's channels copied f times side by side, (h, 1, w, f*C), broadcast over the f rows.

    Same products as the upsampled form (each x times its gate value), with one full-size tensor read instead of
    two written and two read. `activation` (elementwise) runs on the copied gate: nearest copies commute with it,
    and in int8 the copies then share the gate logits' scale (copies of a sigmoid's fixed output scale had to be
    requantised to the concatenation's)."""
    activation = activation or (lambda t: t)
    if factor == 1:
        return keras.layers.Multiply()([x, activation(gate)])
    _, height, width, channels = x.shape
    small = keras.ops.reshape(activation(_copies(gate, factor, axis=3)),
                              (height // factor, 1, width // factor, factor * channels))
    wide = keras.ops.reshape(x, (height // factor, factor, width // factor, factor * channels))
    return keras.ops.reshape(keras.ops.multiply(wide, small), (1, height, width, channels))


def adaptive_average_pool(x, size_hw, form: str = "pool"):
    """F.adaptive_avg_pool2d(x, size_hw) for a static input size that size_hw divides: one fixed-window average.

    form "pool": AveragePooling2D (AVERAGE_POOL_2D; OpenVINO's AvgPool). form "depthwise": a stride-k depthwise
    conv whose constant weights are 1/(kh*kw). XNNPACK runs AVERAGE_POOL_2D in float only, so in an int8 model
    every pool fell back to TFLite's own kernel and split the delegated graph (32 pools, 25 partitions in
    Lite-HRNet-18); the int8 depthwise conv stays inside. The windows here are powers of two (branches halve), so
    x * 1/n is exact and the result equals the pool's up to summation order."""
    _, height, width, channels = x.shape
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if (out_h, out_w) == (height, width):
        return x
    if height % out_h or width % out_w:
        raise ValueError(f"adaptive pooling {height}x{width} -> {out_h}x{out_w} is not a fixed-window pool")
    pool = (height // out_h, width // out_w)
    if form not in ("pool", "depthwise"):
        raise ValueError(f"average pool form must be 'pool' or 'depthwise', got {form!r}")
    if form == "pool" or pool[0] != pool[1]:  # TF's depthwise conv takes equal strides only
        return keras.layers.AveragePooling2D(pool, strides=pool, padding="valid")(x)
    kernel = np.full((*pool, channels, 1), 1.0 / (pool[0] * pool[1]), np.float32)
    return keras.ops.depthwise_conv(x, kernel, strides=pool, padding="valid")
