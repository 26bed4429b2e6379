"""What a bundle is for. A pose bundle maps a person crop to heatmaps; a detect bundle maps a frame to boxes."""
from __future__ import annotations

TASKS = {
    "pose": "person crop -> keypoint heatmaps (N, K, H, W)",
}
