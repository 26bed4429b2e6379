"""Static-shape Keras equivalents of PyTorch ops that mmpose evaluates at run time, chosen to be TFLite builtins.

For a fixed input size: adaptive average pooling is a plain AveragePooling2D, channel shuffle is a reshape/transpose
kept within 4-D (a 5-D transpose breaks converters and GPU delegates), nearest upsampling by an integer factor is
concatenation + reshape (XNNPACK lacks RESIZE_NEAREST_NEIGHBOR, and each one would split the delegated graph),
and bilinear align_corners resizing is RESIZE_BILINEAR(align_corners=True) (Keras' resize cannot express it).
"""
from __future__ import annotations

import keras
import tensorflow as tf


def channel_shuffle(x, groups: int = 2):
    """mmpose channel_shuffle on NHWC: output channel c*g + k is input channel k*C/g + c.

    (1,H,W,C) -> (1,HW,g,C/g) -> swap the last two -> (1,H,W,C): 4-D ops with constant shapes (keras.layers.Reshape
    would read the batch size at run time and add SHAPE/PACK ops that split delegate partitions)."""
    batch, height, width, channels = x.shape
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


def upsample_nearest(x, factor: int):
    """nn.Upsample(scale_factor=factor, mode="nearest") for an integer factor, as concatenations and reshapes.

    XNNPACK has no RESIZE_NEAREST_NEIGHBOR (each one would split the delegated graph), but it runs these:
    f copies side by side in channels, read as f times the width; then f copies of each row, read as f times the
    height. All tensors stay 4-D with constant shapes."""
    if factor == 1:
        return x
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


def adaptive_average_pool(x, size_hw):
    """F.adaptive_avg_pool2d(x, size_hw) for a static input size that size_hw divides: one fixed average pool."""
    _, height, width, _ = x.shape
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if (out_h, out_w) == (height, width):
        return x
    if height % out_h or width % out_w:
        raise ValueError(f"adaptive pooling {height}x{width} -> {out_h}x{out_w} is not a fixed-window pool")
    pool = (height // out_h, width // out_w)
    return keras.layers.AveragePooling2D(pool, strides=pool, padding="valid")(x)
