"""The model zoo: the six mmpose top-down models by name, built as Keras models, optionally from a checkpoint.

Untrained models get seeded weights (same seed, same weights) so conversions and benchmarks are reproducible
without a checkpoint; a checkpoint (mmpose 1.x or 0.x key names) is loaded strictly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edge_pose.errors import EdgePoseError

MMPOSE_MEAN_RGB = (123.675, 116.28, 103.53)
MMPOSE_STD_RGB = (58.395, 57.12, 57.375)
CHECKPOINT_LAYOUTS = ("mmpose-1.x", "mmpose-0.x")


class ZooError(EdgePoseError):
    """Unknown model name or an input size the model cannot take."""


@dataclass(frozen=True)
class ZooEntry:
    """What the runtime and the converters need to know about a zoo model without building it."""

    name: str
    family: str  # litehrnet | simplebaseline | cpm
    build: Callable  # (input_size, num_keypoints) -> keras.Model
    input_sizes: tuple[tuple[int, int], ...]  # (height, width) of mmpose's COCO configs, default first
    heatmap_stride: int
    size_multiple: int  # input height and width must be multiples of this (static shapes divide exactly)
    mmpose_configs: tuple[str, ...]
    keypoints: str = "coco17"
    decode: str = "msra"
    checkpoint_layouts: tuple[str, ...] = CHECKPOINT_LAYOUTS
    mean: tuple[float, float, float] = MMPOSE_MEAN_RGB
    std: tuple[float, float, float] = MMPOSE_STD_RGB
    notes: str = field(default="")
    # (format, precision, graph form): where a target runs fastest from another graph of the same function
    graph_forms: tuple[tuple[str, str, str], ...] = ()

    @property
    def default_input_size(self) -> tuple[int, int]:
        return self.input_sizes[0]

    def graph_form(self, fmt: str, precision: str) -> str | None:
        return next((form for f, p, form in self.graph_forms if (f, p) == (fmt, precision)), None)


def _litehrnet(depth: int):
    def build(input_size, num_keypoints, for_format=None):
        from converters.models.litehrnet import build_litehrnet  # TensorFlow comes with it: only when asked for

        return build_litehrnet(depth, input_size=input_size, num_keypoints=num_keypoints,
                               for_format=for_format or "tflite")
    return build


def _simplebaseline(depth: int):
    def build(input_size, num_keypoints):
        from converters.models.simplebaseline import build_simplebaseline

        return build_simplebaseline(depth, input_size=input_size, num_keypoints=num_keypoints)
    return build


def _cpm(input_size, num_keypoints):
    from converters.models.cpm import build_cpm

    return build_cpm(input_size, num_keypoints=num_keypoints)


_SIZES = ((256, 192), (384, 288))
# Lite-HRNet int8 on XNNPACK from the int8 form: one delegate partition instead of 25, 0.71x of fp32's p50 instead
# of 1.21x (Lite-HRNet-18; -30: 0.64x against 1.23x), benchmarks/litehrnet_int8.py. OpenVINO from its own graph,
# with no channel shuffle, split or concatenation of halves to copy (converters.models.litehrnet_openvino),
# benchmarks/openvino_vs_litert.py.
_LITEHRNET_FORMS = (("tflite", "int8", "tflite-int8"),
                    *(("openvino", p, "openvino") for p in ("fp32", "fp16", "bf16", "int8")))
ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("litehrnet-18", "litehrnet", _litehrnet(18), _SIZES, 4, 32,
             ("td-hm_litehrnet-18_8xb64-210e_coco-256x192", "td-hm_litehrnet-18_8xb32-210e_coco-384x288"),
             graph_forms=_LITEHRNET_FORMS),
    ZooEntry("litehrnet-30", "litehrnet", _litehrnet(30), _SIZES, 4, 32,
             ("td-hm_litehrnet-30_8xb64-210e_coco-256x192", "td-hm_litehrnet-30_8xb32-210e_coco-384x288"),
             graph_forms=_LITEHRNET_FORMS),
    ZooEntry("simplebaseline-r50", "simplebaseline", _simplebaseline(50), _SIZES, 4, 32,
             ("td-hm_res50_8xb64-210e_coco-256x192", "td-hm_res50_8xb64-210e_coco-384x288")),
    ZooEntry("simplebaseline-r101", "simplebaseline", _simplebaseline(101), _SIZES, 4, 32,
             ("td-hm_res101_8xb64-210e_coco-256x192", "td-hm_res101_8xb32-210e_coco-384x288")),
    ZooEntry("simplebaseline-r152", "simplebaseline", _simplebaseline(152), _SIZES, 4, 32,
             ("td-hm_res152_8xb32-210e_coco-256x192", "td-hm_res152_8xb32-210e_coco-384x288")),
    ZooEntry("cpm", "cpm", _cpm, _SIZES, 8, 8,
             ("td-hm_cpm_8xb64-210e_coco-256x192", "td-hm_cpm_8xb32-210e_coco-384x288"),
             notes="6 stages; the deployable output is the last stage"),
)}


def get_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo model '{name}' (known: {', '.join(ZOO)})") from None


def check_input_size(entry: ZooEntry, input_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ZooError(f"{entry.name}: input_size must be (height, width), got {input_size!r}") from None
    m = entry.size_multiple
    if h <= 0 or w <= 0 or h % m or w % m:
        raise ZooError(f"{entry.name}: input size {h}x{w} (HxW) must be positive multiples of {m}")
    return h, w


def checkpoint_layout(state: dict) -> str:
    """'mmpose-0.x' when the head is stored as `keypoint_head.*`, else 'mmpose-1.x'."""
    return "mmpose-0.x" if any(k.startswith("keypoint_head.") for k in state) else "mmpose-1.x"


# With unit BatchNorm gammas an untrained Lite-HRNet is chaotic: a 1e-6 relative change of its weights moves its
# heatmaps by 13%, so float rounding alone makes TFLite and Keras disagree by percents. At 0.5 the same change moves
# them by 1.4e-6 (gammas set after the statistics are calibrated), and converted models can be checked against their source as trained ones are.
SEED_BN_GAMMA = 0.5


def seed_weights(model, seed: int = 0) -> None:
    """Deterministic He-normal kernels, zero biases, BatchNorm statistics from one seeded image: a well-scaled
    untrained model."""
    from keras import layers as L

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape = tuple(int(d) for d in weight.shape)
            kind = weight.path.rsplit("/", 1)[-1]
            if kind in ("kernel", "depthwise_kernel") or (kind not in ("bias", "gamma", "beta", "moving_mean",
                                                                         "moving_variance") and len(shape) > 1):
                if isinstance(layer, L.Conv2DTranspose):
                    fan_in = shape[0] * shape[1] * shape[3] / float(np.prod(layer.strides))
                elif isinstance(layer, L.DepthwiseConv2D):
                    fan_in = shape[0] * shape[1]
                else:
                    fan_in = float(np.prod(shape[:-1]))
                values.append(rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
            elif kind in ("gamma", "moving_variance"):
                values.append(np.ones(shape, np.float32))
            else:
                values.append(np.zeros(shape, np.float32))
        if values:
            layer.set_weights(values)
    calibrate_batchnorm(model, seed)


def natural_images(shape, seed: int = 0, count: int = 4) -> np.ndarray:
    """Normalised images with the spatial statistics of photographs (noise blurred at several scales, 1/f-like),
    made without any image file: what an untrained model's BatchNorm should be calibrated on."""
    import cv2

    _, h, w, _ = shape
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        img = np.zeros((h, w, 3), np.float32)
        for sigma, weight in ((1.0, 0.15), (4.0, 0.35), (16.0, 0.5)):
            img += weight * cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), sigma) \
                * sigma ** 0.5
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6) * 255.0
        images.append((img - np.float32(MMPOSE_MEAN_RGB)) / np.float32(MMPOSE_STD_RGB))
    return np.stack(images).astype(np.float32)


def calibrate_batchnorm(model, seed: int = 0) -> None:
    """Give every BatchNorm the statistics of its own input on seeded natural-looking images, as training would.

    With identity statistics an untrained deep model's activations grow layer after layer (Lite-HRNet-18 reaches
    ~1e7; calibrated on white noise, still ~1e3 on real crops), and at that scale float rounding alone makes two
    correct runtimes disagree by percents. Forward passes in training mode store each layer's statistics
    (momentum 0 on the first image, then a running average), so the model stays well-scaled in eval mode on real
    crops: the same untrained model, numerically usable for conversion and fidelity checks. Variances are floored
    at a tenth of their layer's mean so that a channel that happened to be dead here cannot blow up there.
    """
    from keras import layers as L

    norms = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    images = natural_images(tuple(int(d) for d in model.inputs[0].shape), seed)
    try:
        for i, x in enumerate(images):
            for layer in norms:
                layer.momentum = i / (i + 1.0)  # 0 first, then the running mean over images
            model(x[None], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    for layer in norms:  # channels dead on the calibration images must not be amplified x300 on real ones
        var = np.asarray(layer.moving_variance)
        layer.moving_variance.assign(np.maximum(var, max(0.1 * float(var.mean()), 1e-2)).astype(np.float32))
        layer.gamma.assign(np.full(layer.gamma.shape, SEED_BN_GAMMA, np.float32))  # after: so nothing renormalises


def build_model(name: str, input_size=(256, 192), checkpoint=None, seed: int = 0, num_keypoints: int = 17,
                for_format: str | None = None):
    """A zoo model as a Keras functional model: input "input" (1, H, W, 3) normalised RGB, NHWC heatmaps out.

    `checkpoint`: path of an mmpose `.pth` (1.x or 0.x key names) or an already read state dict; None gives
    seeded weights. `for_format`: the graph variant a family offers per target (Lite-HRNet: "tflite",
    "tflite-int8", "openvino"; the same function and weights); None is the family's default.
    """
    entry = get_entry(name)
    size = check_input_size(entry, input_size)
    state = source = None
    if checkpoint is not None:  # read first: a bad checkpoint fails in a second, before TensorFlow loads
        from converters.checkpoints import read_checkpoint

        if isinstance(checkpoint, dict):
            state, source = checkpoint, "state dict"
        else:
            state, source = read_checkpoint(checkpoint), str(Path(checkpoint))
    try:
        model = entry.build(size, num_keypoints, **({"for_format": for_format} if for_format else {}))
    except ImportError as exc:
        raise ZooError(f"{name}: cannot build ({exc}); install edge-pose[convert]") from None
    if state is None:
        if for_format:  # seeded draws follow the layer order, which differs between graph forms: the default's
            default = entry.build(size, num_keypoints)
            seed_weights(default, seed)
            for layer in default.layers:
                if layer.weights:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
        else:
            seed_weights(model, seed)
        return model
    from converters.weights import load_state_dict

    load_state_dict(model, state, source=source)
    return model
