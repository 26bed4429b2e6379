"""Keras building blocks that compute exactly what the PyTorch modules of mmpose compute.

Each weight-carrying layer is named by its PyTorch module path (e.g. `backbone.layer1.0.conv1`) so that
`converters.weights.load_state_dict` can fill it; weightless helpers get derived names (`<path>_pad`, `<path>_relu`).
PyTorch pads symmetrically; Keras `padding="same"` pads bottom/right first when the total is odd, so convolutions with
stride > 1 get an explicit ZeroPadding2D + "valid". BatchNorm uses PyTorch's epsilon 1e-5.
"""
from __future__ import annotations

import keras
from keras import layers

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1 expressed the Keras way (only matters when training)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x, filters: int, kernel_size, stride=1, padding=0, groups: int = 1, bias: bool = True, *, name: str):
    """torch.nn.Conv2d(in, filters, kernel_size, stride, padding, groups=groups, bias=bias) named `name`.

    groups == in_channels == filters becomes DepthwiseConv2D (TFLite has no grouped-conv builtin for that case).
    Stride-1 convs with odd kernels padded by (k-1)/2 use "same", identical to PyTorch there and one op fewer.
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    in_channels = int(x.shape[-1])
    same = (sh, sw) == (1, 1) and kh % 2 == 1 and kw % 2 == 1 and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2)
    if not same and (ph or pw):
        x = layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=f"{name}_pad")(x)
    mode = "same" if same else "valid"
    if groups > 1 and groups == in_channels == filters:
        return layers.DepthwiseConv2D((kh, kw), strides=(sh, sw), padding=mode, use_bias=bias, name=name)(x)
    return layers.Conv2D(filters, (kh, kw), strides=(sh, sw), padding=mode, groups=groups, use_bias=bias,
                         name=name)(x)


def batch_norm(x, *, name: str):
    """torch.nn.BatchNorm2d in eval mode (running statistics), epsilon 1e-5."""
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def relu(x, *, name: str):
    return layers.ReLU(name=name)(x)


def conv_module(x, filters: int, kernel_size, stride=1, padding=0, groups: int = 1, act: bool = True, *,
                name: str):
    """mmcv ConvModule(conv + BN [+ ReLU]): weights at `<name>.conv` and `<name>.bn`; the conv has no bias."""
    x = conv2d(x, filters, kernel_size, stride, padding, groups, bias=False, name=f"{name}.conv")
    x = batch_norm(x, name=f"{name}.bn")
    return relu(x, name=f"{name}_relu") if act else x


def conv_transpose2d(x, filters: int, kernel_size=4, stride=2, padding=1, output_padding=0, bias: bool = False, *,
                     name: str):
    """torch.nn.ConvTranspose2d. When kernel - stride == 2 * padding (e.g. k4 s2 p1) Keras "same" crops exactly
    `padding` on each side, as PyTorch does; otherwise the full output is cropped explicitly."""
    k, s, p, op = int(kernel_size), int(stride), int(padding), int(output_padding)
    if op == 0 and k - s == 2 * p:
        return layers.Conv2DTranspose(filters, k, strides=s, padding="same", use_bias=bias, name=name)(x)
    x = layers.Conv2DTranspose(filters, k, strides=s, padding="valid", use_bias=bias, name=name)(x)
    if p or op:
        if op > p:
            raise ValueError(f"{name}: output_padding {op} > padding {p} is not supported")
        x = layers.Cropping2D(((p, p - op), (p, p - op)), name=f"{name}_crop")(x)
    return x


def max_pool_nonneg(x, pool_size: int, stride: int, padding: int, *, name: str):
    """torch.nn.MaxPool2d(k, s, p) for non-negative inputs (after ReLU): zero padding then equals PyTorch's -inf."""
    if padding:
        x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=stride, padding="valid", name=name)(x)


def model_input(input_size, name: str = "input"):
    """The model input: batch 1, (H, W, 3) NHWC float32, RGB normalised with mmpose's mean/std."""
    h, w = _pair(input_size)
    return keras.Input(shape=(h, w, 3), batch_size=1, dtype="float32", name=name)
