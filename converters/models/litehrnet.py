"""Lite-HRNet-18/-30 + mmpose HeatmapHead as a Keras functional model that equals mmpose 1.3.2 numerically.

Layers are named by their mmpose module paths (backbone.stem.conv1.conv, backbone.stage0.0.fuse_layers.1.0.0.0,
head.final_layer, ...) so an mmpose state dict loads with converters.weights.load_state_dict.

Written for deployment: batch 1 and every spatial size static, so mmpose's run-time adaptive pooling becomes fixed
average pools, channel shuffle stays 4-D, and all resizes are single TFLite builtins.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from converters.errors import ConversionError
from converters.models.layers import batch_norm, conv2d, model_input
from converters.models.static_ops import (
    adaptive_average_pool,
    channel_shuffle,
    multiply_by_upsampled,
    resize_bilinear_align_corners,
    upsample_nearest,
)


@dataclass(frozen=True)
class LiteHRNetSpec:
    """The `extra` settings of mmpose's Lite-HRNet configs (td-hm_litehrnet-{18,30}_*_coco-*.py)."""

    num_modules: tuple[int, ...]
    stem_channels: int = 32
    num_branches: tuple[int, ...] = (2, 3, 4)
    num_blocks: tuple[int, ...] = (2, 2, 2)
    reduce_ratios: tuple[int, ...] = (8, 8, 8)
    num_channels: tuple[tuple[int, ...], ...] = ((40, 80), (40, 80, 160), (40, 80, 160, 320))


SPECS = {18: LiteHRNetSpec(num_modules=(2, 4, 2)), 30: LiteHRNetSpec(num_modules=(3, 8, 3))}


@dataclass(frozen=True)
class GraphForms:
    """How the static stand-ins are expressed (converters.models.static_ops); every choice is exact in float.

    The defaults are the forms fp32 XNNPACK runs fastest. int8 XNNPACK runs AVERAGE_POOL_2D and a standalone RELU
    (own output scale) only in float, which split the delegated graph into 25 partitions, and its int8 TRANSPOSE
    with an inner dimension of 2 (the channel shuffle) was a quarter of the model's time."""

    pool: str = "pool"  # adaptive average pooling: "pool" (AVERAGE_POOL_2D) or "depthwise" (1/n depthwise conv)
    shuffle: str = "transpose"  # channel shuffle: "transpose" (4-D reshape/transpose), "conv" (permutation 1x1)
    #                             or "gather" (constant channel indices)
    gate: str = "upsample"  # cross-resolution gate: "upsample" then multiply, or "broadcast" multiply
    relu0: str = "relu"  # output 0's ReLU (its pre-ReLU sum feeds the other outputs): "relu" (a RELU op) or
    #                      "depthwise" (fused into an identity 1x1 depthwise conv)
    upsample: str = "concat"  # nearest upsampling: "concat" (copies + reshapes) or "resize" (one resize op)
    split: str = "slice"  # channel halves and gate slices: "slice" (STRIDED_SLICE), "split" (one Split each) or
    #                       "halves" (Split for the halves, slices for the gates)


FORMS = {"tflite": GraphForms(),
         "tflite-int8": GraphForms(pool="depthwise", shuffle="conv", gate="broadcast", relu0="depthwise",
                                   split="halves")}
# OpenVINO's graph is another builder (litehrnet_openvino): no channel shuffle, split or concatenation of halves
# at all, where these forms only choose how to express them
GRAPHS = (*FORMS, "openvino")


def _act(x, act: str | None):
    if act == "relu":
        return keras.layers.ReLU()(x)
    if act == "sigmoid":
        return keras.layers.Activation("sigmoid")(x)
    return x


def _conv_module(x, filters: int, kernel_size: int, *, name: str, stride: int = 1, groups: int = 1,
                 norm: bool = True, act: str | None = "relu"):
    """mmcv ConvModule with padding k//2: `{name}.conv` (bias only without norm), `{name}.bn`, ReLU/Sigmoid/none."""
    x = conv2d(x, filters, kernel_size, stride, kernel_size // 2, groups, bias=not norm, name=f"{name}.conv")
    if norm:
        x = batch_norm(x, name=f"{name}.bn")
    return _act(x, act)


def _split(x, at: int, form: str = "slice"):
    """torch.chunk(2, dim=1) on NHWC: two slices, or one split op (forms "split", "halves"; equal halves become
    TFLite SPLIT, which XNNPACK runs in int8, unequal ones SPLIT_V, which it does not)."""
    if form in ("split", "halves"):
        return tuple(keras.ops.split(x, 2 if 2 * at == x.shape[-1] else [at], axis=3))
    return x[..., :at], x[..., at:]


def _dw_pw(x, out_channels: int, *, name: str, stride: int, relu: bool):
    """nn.Sequential(depthwise 3x3, BN, 1x1 conv, BN[, ReLU]) as used by transitions and fuse downsamples."""
    channels = x.shape[-1]
    x = conv2d(x, channels, 3, stride, 1, channels, bias=False, name=f"{name}.0")
    x = batch_norm(x, name=f"{name}.1")
    x = conv2d(x, out_channels, 1, bias=False, name=f"{name}.2")
    x = batch_norm(x, name=f"{name}.3")
    return _act(x, "relu" if relu else None)


def _stem(x, stem_channels: int, name: str, forms: "GraphForms"):
    """Stem: strided conv, then a ShuffleNetV2 downsampling unit (out_channels == stem_channels, expand_ratio 1)."""
    x = _conv_module(x, stem_channels, 3, name=f"{name}.conv1", stride=2)
    branch = stem_channels // 2
    x1, x2 = _split(x, branch, forms.split)
    x2 = _conv_module(x2, stem_channels, 1, name=f"{name}.expand_conv")
    x2 = _conv_module(x2, stem_channels, 3, name=f"{name}.depthwise_conv", stride=2, groups=stem_channels, act=None)
    x2 = _conv_module(x2, branch, 1, name=f"{name}.linear_conv")
    x1 = _conv_module(x1, branch, 3, name=f"{name}.branch1.0", stride=2, groups=branch, act=None)
    x1 = _conv_module(x1, stem_channels - branch, 1, name=f"{name}.branch1.1")
    return channel_shuffle(keras.layers.Concatenate()([x1, x2]), form=forms.shuffle)


def _cross_resolution_weighting(xs, ratio: int, name: str, forms: "GraphForms"):
    """Pool all branches to the smallest size, 1x1 convs over their concatenation, gate each branch (sigmoid)."""
    channels = [x.shape[-1] for x in xs]
    mini = tuple(xs[-1].shape[1:3])
    pooled = [adaptive_average_pool(x, mini, forms.pool) for x in xs]
    out = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    total = sum(channels)
    out = _conv_module(out, int(total / ratio), 1, name=f"{name}.conv1")
    out = _conv_module(out, total, 1, name=f"{name}.conv2", act=None)
    gated, start = [], 0
    if forms.split == "split" and len(xs) > 1:
        parts = keras.ops.split(out, list(np.cumsum(channels[:-1])), axis=3)
    for k, (x, c) in enumerate(zip(xs, channels)):
        # slice before the sigmoid: int8 LOGISTIC has a fixed output scale that a slice of it cannot keep, and
        # TFLite's quantizer refuses the model ("same scale constraint"); sigmoid per slice is the same function
        if len(xs) == 1:
            gate = out
        else:
            gate = parts[k] if forms.split == "split" else out[..., start:start + c]
        start += c
        factor = x.shape[1] // mini[0]
        if forms.gate == "broadcast":
            gated.append(multiply_by_upsampled(x, gate, factor, lambda t: _act(t, "sigmoid")))
        else:
            gated.append(keras.layers.Multiply()([x, upsample_nearest(_act(gate, "sigmoid"), factor,
                                                                      forms.upsample)]))
    return gated


def _spatial_weighting(x, name: str, ratio: int = 4):
    """Squeeze-excitation gate: global mean, 1x1 conv (bias) + ReLU, 1x1 conv (bias) + sigmoid, multiply."""
    channels = x.shape[-1]
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = _conv_module(gate, int(channels / ratio), 1, name=f"{name}.conv1", norm=False)
    gate = _conv_module(gate, channels, 1, name=f"{name}.conv2", norm=False, act="sigmoid")
    return keras.layers.Multiply()([x, gate])


def _conditional_channel_weighting(xs, ratio: int, name: str, forms: "GraphForms", last: bool = False):
    """One LITE block: half of each branch passes through, the other half is gated, depthwise-convolved, gated.

    With forms.relu0 "depthwise" the module's last block hands the fusion 2 x branch 0 (its permutation conv's
    weights are 2.0; exact), the `out[0] + out[0]` of mmpose's in-place sum: one int8 ADD less per module."""
    halves = [_split(x, x.shape[-1] // 2, forms.split) for x in xs]
    x2 = _cross_resolution_weighting([h[1] for h in halves], ratio, f"{name}.cross_resolution_weighting", forms)
    out = []
    for k, ((x1, _), y) in enumerate(zip(halves, x2)):
        y = _conv_module(y, y.shape[-1], 3, name=f"{name}.depthwise_convs.{k}", groups=y.shape[-1], act=None)
        y = _spatial_weighting(y, f"{name}.spatial_weighting.{k}")
        doubled = last and k == 0 and _doubled_first(forms)
        out.append(channel_shuffle(keras.layers.Concatenate()([x1, y]), form=forms.shuffle,
                                   scale=2.0 if doubled else 1.0))
    return out


def _doubled_first(forms: "GraphForms") -> bool:
    """The module's last block outputs 2 x branch 0 (see _conditional_channel_weighting)."""
    return forms.relu0 == "depthwise" and forms.shuffle == "conv"


def _fuse_path(x, i: int, j: int, channels, name: str, upsample: str = "concat"):
    """fuse_layers[i][j]: bring branch j to branch i's size and channel count."""
    if j > i:
        x = conv2d(x, channels[i], 1, bias=False, name=f"{name}.0")
        x = batch_norm(x, name=f"{name}.1")
        return upsample_nearest(x, 2 ** (j - i), upsample)
    for k in range(i - j):
        last = k == i - j - 1
        x = _dw_pw(x, channels[i] if last else channels[j], name=f"{name}.{k}", stride=2, relu=not last)
    return x


def _fuse(outs, name: str, forms: GraphForms):
    """Multi-resolution fusion, reproducing mmpose's in-place `y += ...` aliasing exactly.

    mmpose starts output 0 as `y = out[0]` and adds into it in place, so (a) output 0 counts out[0] twice and
    (b) later outputs see the modified pre-ReLU sum as out[0], through fuse_layers[i][0] applied twice.
    """
    channels = [x.shape[-1] for x in outs]
    n = len(outs)
    twice = [outs[0]] if _doubled_first(forms) else [outs[0], outs[0]]  # outs[0] arrives doubled, or is added twice
    first = twice + [_fuse_path(outs[j], 0, j, channels, f"{name}.0.{j}", forms.upsample) for j in range(1, n)]
    sum0 = keras.layers.Add()(first)
    if forms.relu0 == "depthwise":
        # relu(1.0 * sum0) per channel: one int8 op inside XNNPACK (a standalone int8 RELU is not; a second sum
        # 2 * out[0] + ... with the ReLU fused into its last addition took n ops and measured 3.5% slower); exact
        identity = np.ones((1, 1, channels[0], 1), np.float32)
        fused = [_act(keras.ops.depthwise_conv(sum0, identity, strides=1, padding="valid"), "relu")]
    else:
        fused = [_act(sum0, "relu")]
    for i in range(1, n):
        from0 = _fuse_path(sum0, i, 0, channels, f"{name}.{i}.0")
        terms = [from0, from0]
        for j in range(1, n):
            terms.append(outs[j] if j == i else _fuse_path(outs[j], i, j, channels, f"{name}.{i}.{j}",
                                                           forms.upsample))
        fused.append(_act(keras.layers.Add()(terms), "relu"))
    return fused


def _transition(ys, channels_pre, channels_cur, name: str):
    """Adapt the previous stage's branches to this stage: change channels, or add a new strided branch."""
    xs = []
    for i, out_channels in enumerate(channels_cur):
        if i < len(channels_pre):
            if out_channels == channels_pre[i]:
                xs.append(ys[i])
            else:
                xs.append(_dw_pw(ys[i], out_channels, name=f"{name}.{i}", stride=1, relu=True))
            continue
        x = ys[-1]
        steps = i + 1 - len(channels_pre)
        for j in range(steps):
            x = _dw_pw(x, out_channels if j == steps - 1 else x.shape[-1], name=f"{name}.{i}.{j}", stride=2,
                       relu=True)
        xs.append(x)
    return xs


def _iterative_head(ys, name: str):
    """Coarse-to-fine refinement: each branch adds the upsampled (bilinear, align_corners) coarser result, then a
    depthwise-separable conv maps it to the next finer branch's channels (the finest keeps its own)."""
    coarse_to_fine = list(reversed(ys))
    last = None
    for i, x in enumerate(coarse_to_fine):
        if last is not None:
            x = keras.layers.Add()([x, resize_bilinear_align_corners(last, x.shape[1:3])])
        channels = x.shape[-1]
        out_channels = coarse_to_fine[i + 1].shape[-1] if i + 1 < len(ys) else channels
        project = f"{name}.projects.{i}"
        x = _conv_module(x, channels, 3, name=f"{project}.depthwise_conv", groups=channels, act=None)
        last = _conv_module(x, out_channels, 1, name=f"{project}.pointwise_conv")
    return last


def walk_stages(ys, spec: LiteHRNetSpec, transition, block, fuse):
    """mmpose's stage / module / block order over `ys` (the stem's output), with one graph builder's layers:
    transition(ys, channels_pre, channels, name), block(ys, reduce_ratio, name, last) (`last`: the module's fusion
    reads this block's outputs), fuse(ys, name)."""
    channels_pre = [spec.stem_channels]
    for s, channels in enumerate(spec.num_channels):
        ys = transition(ys, channels_pre, channels, f"backbone.transition{s}")
        for m in range(spec.num_modules[s]):
            module = f"backbone.stage{s}.{m}"
            for b in range(spec.num_blocks[s]):
                ys = block(ys, spec.reduce_ratios[s], f"{module}.layers.{b}", b == spec.num_blocks[s] - 1)
            ys = fuse(ys, f"{module}.fuse_layers")
        channels_pre = list(channels)
    return ys


def _body(inputs, spec: LiteHRNetSpec, forms: GraphForms):
    """Backbone and IterativeHead: the finest branch's features."""
    ys = walk_stages([_stem(inputs, spec.stem_channels, "backbone.stem", forms)], spec, _transition,
                     lambda ys, ratio, name, last: _conditional_channel_weighting(ys, ratio, name, forms, last),
                     lambda ys, name: _fuse(ys, name, forms))
    return _iterative_head(ys, "backbone.head_layer")


def build_litehrnet(depth: int, input_size=(256, 192), num_keypoints: int = 17, for_format: str = "tflite"
                    ) -> keras.Model:
    """Lite-HRNet-{18,30} with IterativeHead and HeatmapHead (no deconv, 1x1 final layer): input "input"
    (1, H, W, 3) NHWC normalised RGB, output heatmaps (1, H/4, W/4, num_keypoints).

    for_format picks the graph forms of the static ops (FORMS): every form computes the same function, each is
    the one its runtime runs fastest. Weights and layer names are the same for all."""
    if depth not in SPECS:
        raise ConversionError(f"Lite-HRNet depth must be one of {sorted(SPECS)}, got {depth}")
    if for_format not in GRAPHS:
        raise ConversionError(f"Lite-HRNet graph form must be one of {sorted(GRAPHS)}, got {for_format!r}")
    spec = SPECS[depth]
    height, width = (int(s) for s in input_size)
    coarsest = 4 * 2 ** (max(spec.num_branches) - 1)
    if height % coarsest or width % coarsest:
        raise ConversionError(f"Lite-HRNet input size must be a multiple of {coarsest}, got {height}x{width}")
    inputs = model_input((height, width))
    if for_format == "openvino":
        from converters.models.litehrnet_openvino import build_body

        features = build_body(inputs, spec)
    else:
        features = _body(inputs, spec, FORMS[for_format])
    heatmaps = conv2d(features, num_keypoints, 1, name="head.final_layer")
    return keras.Model(inputs, heatmaps, name=f"litehrnet{depth}_{height}x{width}")
