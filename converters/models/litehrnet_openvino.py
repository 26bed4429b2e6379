"""Lite-HRNet for OpenVINO: the function of converters.models.litehrnet with no channel shuffle, split or
concatenation of channel halves left in the graph.

Every channel_shuffle of the network is a fixed permutation, and in OpenVINO's CPU plugin each one is a real
copy (ShuffleChannels, a Gather or a permutation 1x1 conv: measured 2.0-2.5 ms of 6.9 ms for Lite-HRNet-18 at
one thread), as are the Split of each block's input into halves and the Concat of the result. Here a branch
stays one tensor whose channels keep their place from the block that made them: each tensor carries `index`
(which logical channel each stored channel holds), the shuffle only relabels it, and the layers reading a tensor
gather their weights into its order (channel_map: constants, folded into the convolutions). A block processes
its half of the channels in place: its weights are zero over the passthrough half (1x1 convs), the identity there
(depthwise conv, BatchNorm) and the gates are 1.0 there (a constant logit of 100, whose sigmoid is 1.0 in float),
so the passthrough channels come out bit for bit. The price is the gates and depthwise convs running over all
channels instead of half of them.

Layers (names, weight shapes and creation order) are those of the default form, so mmpose state dicts and seeded
weights load alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from converters.models.channel_map import MappedBatchNorm, MappedConv2D, MappedDepthwiseConv2D
from converters.models.litehrnet import walk_stages
from converters.models.layers import batch_norm, conv2d
from converters.models.static_ops import adaptive_average_pool, resize_bilinear_align_corners, upsample_nearest

GATE_OPEN = 100.0  # a logit whose sigmoid is exactly 1.0 in float32: the gate of a passthrough channel


@dataclass(frozen=True)
class Mapped:
    """A tensor and, per stored channel, the logical channel it holds (a permutation of range(channels))."""

    t: object
    index: np.ndarray

    @staticmethod
    def plain(t) -> "Mapped":
        return Mapped(t, np.arange(t.shape[-1]))


def _shuffled(index: np.ndarray, groups: int = 2) -> np.ndarray:
    """mmpose channel_shuffle relabelled: input channel k * C/g + c becomes output channel c * g + k."""
    per = len(index) // groups
    return (index % per) * groups + index // per


def _padded(x, kernel_size: int, stride: int, name: str):
    """The padding conv2d (converters.models.layers) gives a conv with padding k // 2: "same" or explicit."""
    if stride == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x), "valid"


def _conv(x, filters, kernel_size, *, name, stride=1, bias=False, in_index=None, out_index=None, out_fill=0.0):
    x, mode = _padded(x, kernel_size, stride, name)
    return MappedConv2D(filters, kernel_size, in_index=in_index, out_index=out_index, out_fill=out_fill,
                        strides=stride, padding=mode, use_bias=bias, name=name)(x)


def _dw(x, kernel_size, *, name, stride=1, index=None):
    x, mode = _padded(x, kernel_size, stride, name)
    return MappedDepthwiseConv2D(kernel_size, index=index, strides=stride, padding=mode, name=name)(x)


def _bn(x, *, name, index=None, fill=(1.0, 0.0)):
    return MappedBatchNorm(index=index, fill=fill, epsilon=1e-5, momentum=0.9, name=name)(x)


def _relu(x):
    return keras.layers.ReLU()(x)


def _owned(index: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The stored channels' index into the logical range [start, stop), -1 for the others."""
    return np.where((index >= start) & (index < stop), index - start, -1)


def _stem(x, stem_channels: int, name: str) -> Mapped:
    """As the default form's stem without its split: both branches read the whole strided conv output (the
    depthwise conv passes the other half through, the 1x1 convs weigh it 0; the split's copy was 0.12 ms at
    128x96), and the final shuffle only relabels the concatenation."""
    x = _relu(batch_norm(conv2d(x, stem_channels, 3, 2, 1, bias=False, name=f"{name}.conv1.conv"),
                         name=f"{name}.conv1.bn"))
    branch = stem_channels // 2
    first = _owned(np.arange(stem_channels), 0, branch)
    second = _owned(np.arange(stem_channels), branch, stem_channels)
    x2 = _relu(batch_norm(_conv(x, stem_channels, 1, name=f"{name}.expand_conv.conv", in_index=second),
                          name=f"{name}.expand_conv.bn"))
    x2 = batch_norm(conv2d(x2, stem_channels, 3, 2, 1, stem_channels, bias=False,
                           name=f"{name}.depthwise_conv.conv"), name=f"{name}.depthwise_conv.bn")
    x2 = _relu(batch_norm(conv2d(x2, branch, 1, bias=False, name=f"{name}.linear_conv.conv"),
                          name=f"{name}.linear_conv.bn"))
    x1 = _bn(_dw(x, 3, name=f"{name}.branch1.0.conv", stride=2, index=first), name=f"{name}.branch1.0.bn",
             index=first)
    x1 = _relu(batch_norm(_conv(x1, stem_channels - branch, 1, name=f"{name}.branch1.1.conv", in_index=first),
                          name=f"{name}.branch1.1.bn"))
    return Mapped(keras.layers.Concatenate()([x1, x2]), _shuffled(np.arange(stem_channels)))


def _cross_resolution_weighting(xs: list[Mapped], ratio: int, name: str) -> list:
    """Gates for the second half of each branch (logical channels C/2..C), 1.0 over the first half."""
    channels = [len(x.index) for x in xs]
    halves = [c // 2 for c in channels]
    mini = tuple(xs[-1].t.shape[1:3])
    pooled = [adaptive_average_pool(x.t, mini, "pool") for x in xs]
    out = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    offsets = np.cumsum([0] + halves)
    owned = np.concatenate([np.where(o >= 0, o + off, -1) for o, off in
                            zip((_owned(x.index, h, 2 * h) for x, h in zip(xs, halves)), offsets)])
    total = int(offsets[-1])
    out = _relu(batch_norm(_conv(out, int(total / ratio), 1, name=f"{name}.conv1.conv", in_index=owned),
                           name=f"{name}.conv1.bn"))
    out = _conv(out, total, 1, name=f"{name}.conv2.conv", out_index=owned)
    out = _bn(out, name=f"{name}.conv2.bn", index=owned, fill=(0.0, GATE_OPEN))
    parts = keras.ops.split(out, list(np.cumsum(channels[:-1])), axis=3) if len(xs) > 1 else [out]
    gated = []
    for x, gate in zip(xs, parts):
        factor = x.t.shape[1] // mini[0]
        gate = upsample_nearest(keras.layers.Activation("sigmoid")(gate), factor, "resize")
        gated.append(Mapped(keras.layers.Multiply()([x.t, gate]), x.index))
    return gated


def _spatial_weighting(x: Mapped, owned: np.ndarray, name: str, ratio: int = 4):
    half = int(owned.max()) + 1
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(x.t)
    gate = _relu(_conv(gate, int(half / ratio), 1, name=f"{name}.conv1.conv", bias=True, in_index=owned))
    gate = _conv(gate, half, 1, name=f"{name}.conv2.conv", bias=True, out_index=owned, out_fill=GATE_OPEN)
    return keras.layers.Multiply()([x.t, keras.layers.Activation("sigmoid")(gate)])


def _conditional_channel_weighting(xs: list[Mapped], ratio: int, name: str, last: bool = False) -> list[Mapped]:
    """One LITE block on whole branches: the second half of the logical channels is gated, depthwise-convolved,
    gated again; the first half passes through; the shuffle relabels."""
    gated = _cross_resolution_weighting(xs, ratio, f"{name}.cross_resolution_weighting")
    out = []
    for k, x in enumerate(gated):
        half = len(x.index) // 2
        owned = _owned(x.index, half, 2 * half)
        y = _dw(x.t, 3, name=f"{name}.depthwise_convs.{k}.conv", index=owned)
        y = _bn(y, name=f"{name}.depthwise_convs.{k}.bn", index=owned)
        y = _spatial_weighting(Mapped(y, x.index), owned, f"{name}.spatial_weighting.{k}")
        out.append(Mapped(y, _shuffled(x.index)))
    return out


def _dw_pw(x: Mapped, out_channels: int, *, name: str, stride: int, relu: bool, out_index=None):
    """depthwise 3x3, BN, 1x1 conv, BN[, ReLU] reading x in its order and writing `out_index` (None: logical)."""
    y = _bn(_dw(x.t, 3, name=f"{name}.0", stride=stride, index=x.index), name=f"{name}.1", index=x.index)
    y = _conv(y, out_channels, 1, name=f"{name}.2", in_index=x.index, out_index=out_index)
    y = _bn(y, name=f"{name}.3", index=out_index)
    y = _relu(y) if relu else y
    return Mapped(y, np.arange(out_channels) if out_index is None else np.asarray(out_index))


def _fuse_path(x: Mapped, i: int, j: int, channels, target: np.ndarray, name: str):
    """fuse_layers[i][j], writing branch i's stored order `target`."""
    if j > i:
        y = _conv(x.t, channels[i], 1, name=f"{name}.0", in_index=x.index, out_index=target)
        return upsample_nearest(_bn(y, name=f"{name}.1", index=target), 2 ** (j - i), "resize")
    for k in range(i - j):
        last = k == i - j - 1
        x = _dw_pw(x, channels[i] if last else channels[j], name=f"{name}.{k}", stride=2, relu=not last,
                   out_index=target if last else None)
    return x.t


def _fuse(outs: list[Mapped], name: str) -> list[Mapped]:
    """The default form's fusion (mmpose's in-place aliasing included), each output in its branch's order."""
    channels = [len(x.index) for x in outs]
    n = len(outs)
    first = [outs[0].t, outs[0].t] + [_fuse_path(outs[j], 0, j, channels, outs[0].index, f"{name}.0.{j}")
                                      for j in range(1, n)]
    sum0 = Mapped(keras.layers.Add()(first), outs[0].index)
    fused = [Mapped(_relu(sum0.t), outs[0].index)]
    for i in range(1, n):
        from0 = _fuse_path(sum0, i, 0, channels, outs[i].index, f"{name}.{i}.0")
        terms = [from0, from0]
        for j in range(1, n):
            terms.append(outs[j].t if j == i else _fuse_path(outs[j], i, j, channels, outs[i].index,
                                                             f"{name}.{i}.{j}"))
        fused.append(Mapped(_relu(keras.layers.Add()(terms)), outs[i].index))
    return fused


def _transition(ys: list[Mapped], channels_pre, channels_cur, name: str) -> list[Mapped]:
    xs = []
    for i, out_channels in enumerate(channels_cur):
        if i < len(channels_pre):
            xs.append(ys[i] if out_channels == channels_pre[i] else
                      _dw_pw(ys[i], out_channels, name=f"{name}.{i}", stride=1, relu=True))
            continue
        x = ys[-1]
        steps = i + 1 - len(channels_pre)
        for j in range(steps):
            x = _dw_pw(x, out_channels if j == steps - 1 else len(x.index), name=f"{name}.{i}.{j}", stride=2,
                       relu=True)
        xs.append(x)
    return xs


def _iterative_head(ys: list[Mapped], name: str):
    """As the default form's; each projection writes the next finer branch's order, the last one logical."""
    coarse_to_fine = list(reversed(ys))
    last = None
    for i, x in enumerate(coarse_to_fine):
        t = x.t if last is None else keras.layers.Add()([x.t, resize_bilinear_align_corners(last, x.t.shape[1:3])])
        channels = len(x.index)
        finer = coarse_to_fine[i + 1] if i + 1 < len(ys) else None
        out_channels = len(finer.index) if finer is not None else channels
        project = f"{name}.projects.{i}"
        t = _bn(_dw(t, 3, name=f"{project}.depthwise_conv.conv", index=x.index),
                name=f"{project}.depthwise_conv.bn", index=x.index)
        out_index = finer.index if finer is not None else None
        t = _conv(t, out_channels, 1, name=f"{project}.pointwise_conv.conv", in_index=x.index, out_index=out_index)
        last = _relu(_bn(t, name=f"{project}.pointwise_conv.bn", index=out_index))
    return last


def build_body(inputs, spec):
    """Backbone and IterativeHead of Lite-HRNet `spec` on `inputs`: the finest branch's features, logical order."""
    ys = walk_stages([_stem(inputs, spec.stem_channels, "backbone.stem")], spec, _transition,
                     _conditional_channel_weighting, _fuse)
    return _iterative_head(ys, "backbone.head_layer")
