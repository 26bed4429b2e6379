"""Running a model (a Source's reference run or a bundle session's infer) over a crop set.

Each side builds its own input tensor from the same uint8 crops through its own InputSpec, so a bundle whose input
became int8 or NHWC is fed exactly what the device will feed it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from calibration.cropset import CropSet


def model_inputs(crops: CropSet | np.ndarray, input_spec) -> np.ndarray:
    """The model-input batch (N, ...) for these crops under `input_spec` (colour, mean/std, layout, dtype)."""
    from edge_pose.preprocess import to_model_input

    images = crops.crops if isinstance(crops, CropSet) else np.asarray(crops)
    return to_model_input(images, input_spec)


def heatmaps_on(run: Callable[[np.ndarray], np.ndarray], input_spec, crops: CropSet, batch: int = 1,
                desc: str | None = None) -> np.ndarray:
    """Heatmaps (N, K, H, W) float32 of `run` over every crop, `batch` crops at a time (bundles are batch 1)."""
    from edge_pose.progress import progress

    inputs = model_inputs(crops, input_spec)
    starts = range(0, len(inputs), batch)
    outs = [np.asarray(run(inputs[i:i + batch]), dtype=np.float32)
            for i in (starts if desc is None else progress(starts, desc, unit="batch"))]
    return np.concatenate(outs, axis=0)
