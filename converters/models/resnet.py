"""mmpose's ResNet backbone (style 'pytorch': the stride sits on the 3x3 conv of a bottleneck), as Keras layers
named like the PyTorch modules (`backbone.conv1`, `backbone.layer2.0.downsample.0`, ...)."""
from __future__ import annotations

from keras import layers

from converters.models.layers import batch_norm, conv2d, max_pool_nonneg, relu

BOTTLENECK_EXPANSION = 4
RESNET_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def bottleneck(x, planes: int, stride: int, *, name: str):
    """conv1 1x1 -> conv2 3x3 (stride) -> conv3 1x1 (x4 channels), each with BN; identity or 1x1 downsample."""
    out_channels = planes * BOTTLENECK_EXPANSION
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != out_channels:
        shortcut = conv2d(x, out_channels, 1, stride, bias=False, name=f"{name}.downsample.0")
        shortcut = batch_norm(shortcut, name=f"{name}.downsample.1")
    y = relu(batch_norm(conv2d(x, planes, 1, bias=False, name=f"{name}.conv1"), name=f"{name}.bn1"),
             name=f"{name}.relu1")
    y = relu(batch_norm(conv2d(y, planes, 3, stride, 1, bias=False, name=f"{name}.conv2"), name=f"{name}.bn2"),
             name=f"{name}.relu2")
    y = batch_norm(conv2d(y, out_channels, 1, bias=False, name=f"{name}.conv3"), name=f"{name}.bn3")
    y = layers.Add(name=f"{name}.add")([y, shortcut])
    return relu(y, name=f"{name}.relu")


def resnet(x, depth: int, *, name: str = "backbone"):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and four bottleneck stages; returns layer4's output (stride 32)."""
    if depth not in RESNET_STAGE_BLOCKS:
        raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_STAGE_BLOCKS)}")
    x = conv2d(x, 64, 7, 2, 3, bias=False, name=f"{name}.conv1")
    x = relu(batch_norm(x, name=f"{name}.bn1"), name=f"{name}.relu")
    x = max_pool_nonneg(x, 3, 2, 1, name=f"{name}.maxpool")
    for stage, blocks in enumerate(RESNET_STAGE_BLOCKS[depth]):
        planes = 64 * 2 ** stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = bottleneck(x, planes, stride, name=f"{name}.layer{stage + 1}.{block}")
    return x
