"""What a bundle is for. A pose bundle maps a person crop to heatmaps; a detect bundle maps a frame to person boxes
(its manifest carries a `detect` section: the head, preprocessing and NMS settings, anchors as a file)."""
from __future__ import annotations

TASKS = {
    "pose": "person crop -> keypoint heatmaps (N, K, H, W)",
    "detect": "frame -> person boxes (x, y, w, h, score) in frame pixels",
}
