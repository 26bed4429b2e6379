"""mmpose 1.x HeatmapHead: optional deconvolutions (ConvTranspose2d + BN + ReLU) and a final 1x1 conv.

Layer names follow the PyTorch Sequential indices: deconv i at `head.deconv_layers.{3i}`, its BN at `{3i+1}`
(the ReLU at `{3i+2}` has no weights), then `head.final_layer`.
"""
from __future__ import annotations

from converters.models.layers import batch_norm, conv2d, conv_transpose2d, relu

# kernel -> (padding, output_padding), as mmpose's heads choose them for stride-2 deconvolutions
DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


def heatmap_head(x, num_keypoints: int = 17, deconv_out_channels=(256, 256, 256), deconv_kernel_sizes=(4, 4, 4),
                 final_kernel: int = 1, *, name: str = "head"):
    """Upsample by 2 per deconvolution, then map to one heatmap per keypoint."""
    deconv_out_channels = tuple(deconv_out_channels or ())
    deconv_kernel_sizes = tuple(deconv_kernel_sizes or ())
    if len(deconv_out_channels) != len(deconv_kernel_sizes):
        raise ValueError("deconv_out_channels and deconv_kernel_sizes differ in length")
    for i, (channels, kernel) in enumerate(zip(deconv_out_channels, deconv_kernel_sizes)):
        if kernel not in DECONV_PADDING:
            raise ValueError(f"deconvolution kernel {kernel} not supported (use one of {sorted(DECONV_PADDING)})")
        padding, output_padding = DECONV_PADDING[kernel]
        x = conv_transpose2d(x, channels, kernel, 2, padding, output_padding, bias=False,
                             name=f"{name}.deconv_layers.{3 * i}")
        x = batch_norm(x, name=f"{name}.deconv_layers.{3 * i + 1}")
        x = relu(x, name=f"{name}.deconv_layers.{3 * i + 2}")
    return conv2d(x, num_keypoints, final_kernel, 1, (final_kernel - 1) // 2, bias=True, name=f"{name}.final_layer")
