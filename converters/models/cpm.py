"""Convolutional Pose Machines as mmpose's CPM backbone + CPMHead (td-hm_cpm configs; the head has no layers there).

Stage 1 (`backbone.stem`) predicts heatmaps from the image; each later stage refines them from the previous stage's
heatmaps concatenated with shared image features (`backbone.middle` -> `backbone.middle_conv.i`). Output stride 8.
"""
from __future__ import annotations

import keras
from keras import layers

from converters.models.layers import conv2d, conv_module, max_pool_nonneg, model_input

MIDDLE_CHANNELS = 32


def _conv_pool_tower(x, name: str):
    """Three 9x9 ConvModules of 128, each followed by a 3x3/2 max-pool (Sequential indices 0..5)."""
    for i in range(3):
        x = conv_module(x, 128, 9, padding=4, name=f"{name}.{2 * i}")
        x = max_pool_nonneg(x, 3, 2, 1, name=f"{name}.{2 * i + 1}")
    return x


def _stem(x, num_keypoints: int, name: str):
    x = _conv_pool_tower(x, name)
    x = conv_module(x, 32, 5, padding=2, name=f"{name}.6")
    x = conv_module(x, 512, 9, padding=4, name=f"{name}.7")
    x = conv_module(x, 512, 1, name=f"{name}.8")
    return conv2d(x, num_keypoints, 1, bias=True, name=f"{name}.9.conv")


def cpm_backbone(x, num_keypoints: int = 17, feat_channels: int = 128, num_stages: int = 6, *,
                 name: str = "backbone"):
    """Heatmaps of every stage, first to last."""
    outputs = [_stem(x, num_keypoints, f"{name}.stem")]
    middle = _conv_pool_tower(x, f"{name}.middle")
    for i in range(num_stages - 1):
        features = conv_module(middle, MIDDLE_CHANNELS, 5, padding=2, name=f"{name}.middle_conv.{i}.0")
        y = layers.Concatenate(name=f"{name}.stage{i + 1}_concat")([outputs[-1], features])
        for j in range(3):
            y = conv_module(y, feat_channels, 11, padding=5, name=f"{name}.cpm_stages.{i}.model.{j}")
        y = conv_module(y, feat_channels, 1, name=f"{name}.out_convs.{i}.0")
        outputs.append(conv2d(y, num_keypoints, 1, bias=True, name=f"{name}.out_convs.{i}.1.conv"))
    return outputs


def build_cpm(input_size=(256, 192), num_keypoints: int = 17, all_stages: bool = False, num_stages: int = 6
              ) -> keras.Model:
    """(1, H, W, 3) normalised RGB -> (1, H/8, W/8, K) heatmaps of the last stage (all stages if all_stages)."""
    inputs = model_input(input_size)
    outputs = cpm_backbone(inputs, num_keypoints, num_stages=num_stages)
    return keras.Model(inputs, outputs if all_stages else outputs[-1], name="cpm")
