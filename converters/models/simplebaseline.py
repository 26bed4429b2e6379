"""SimpleBaseline (Xiao et al. 2018) as mmpose's td-hm_res{50,101,152} configs: ResNet + 3 deconvolutions of 256."""
from __future__ import annotations

import keras

from converters.models.heads import heatmap_head
from converters.models.layers import model_input
from converters.models.resnet import RESNET_STAGE_BLOCKS, resnet


def build_simplebaseline(depth: int, input_size=(256, 192), num_keypoints: int = 17) -> keras.Model:
    """(1, H, W, 3) normalised RGB -> (1, H/4, W/4, K) heatmaps."""
    if depth not in RESNET_STAGE_BLOCKS:
        raise ValueError(f"SimpleBaseline depth {depth} is not one of {sorted(RESNET_STAGE_BLOCKS)}")
    inputs = model_input(input_size)
    heatmaps = heatmap_head(resnet(inputs, depth), num_keypoints)
    return keras.Model(inputs, heatmaps, name=f"simplebaseline_r{depth}")
