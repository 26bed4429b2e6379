"""Generated images: figures on textured backgrounds, for judging float conversions when the user gave no data.

fp32, fp16 and bf16 need no calibration, and their fidelity check compares the bundle with its source heatmap for
heatmap: any natural-looking input with a figure in it exercises every layer, so a few seeded pictures do. They are
no substitute for real people: int8 ranges set on them would not fit real frames, so int8 still needs --calib DATA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

GENERATED_NOTE = "generated images (no --calib given)"


def _background(rng, h: int, w: int) -> np.ndarray:
    """Noise at several scales (coarse shapes, fine texture) under a vertical light gradient."""
    import cv2

    img = np.zeros((h, w, 3), np.float32)
    for sigma, weight in ((40, 0.6), (10, 0.3), (2, 0.1)):
        noise = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), sigma)
        noise = (noise - noise.mean()) / (noise.std() + 1e-6)
        img += weight * noise
    base = rng.uniform(60, 190, 3).astype(np.float32)
    light = np.linspace(1.15, 0.8, h, dtype=np.float32)[:, None, None]
    return np.clip((base + 45 * img) * light, 0, 255)


def _figure(img: np.ndarray, rng) -> tuple[float, float, float, float]:
    """A standing figure (head, torso, arms, legs) drawn into img; returns its box x, y, w, h."""
    import cv2

    h, w = img.shape[:2]
    s = rng.uniform(0.5, 0.85) * h
    cx, top = rng.uniform(0.3, 0.7) * w, rng.uniform(0.05, 0.15) * h
    neck, hip = (cx, top + 0.17 * s), (cx + rng.uniform(-0.03, 0.03) * s, top + 0.52 * s)
    skin = tuple(float(c) for c in rng.uniform([60, 90, 140], [140, 170, 230]))
    shirt, trousers = (tuple(float(c) for c in rng.uniform(0, 255, 3)) for _ in range(2))
    limb = max(3, int(s / 22))
    points = [neck, hip]
    for side in (-1, 1):
        shoulder = (cx + side * 0.1 * s, neck[1] + 0.02 * s)
        elbow = (shoulder[0] + side * rng.uniform(0.05, 0.15) * s, shoulder[1] + rng.uniform(0.1, 0.17) * s)
        hand = (elbow[0] + side * rng.uniform(-0.05, 0.12) * s, elbow[1] + rng.uniform(0.05, 0.16) * s)
        knee = (hip[0] + side * rng.uniform(0.04, 0.1) * s, hip[1] + 0.24 * s)
        foot = (knee[0] + side * rng.uniform(-0.02, 0.06) * s, top + 0.98 * s)
        for a, b, colour in ((shoulder, elbow, shirt), (elbow, hand, skin), ((hip[0] + side * 0.05 * s, hip[1]),
                                                                              knee, trousers),
                             (knee, foot, trousers)):
            cv2.line(img, tuple(map(int, a)), tuple(map(int, b)), colour, limb, cv2.LINE_AA)
        points += [shoulder, elbow, hand, knee, foot]
    torso = np.array([(cx - 0.1 * s, neck[1]), (cx + 0.1 * s, neck[1]), (hip[0] + 0.08 * s, hip[1]),
                      (hip[0] - 0.08 * s, hip[1])], np.int32)
    cv2.fillConvexPoly(img, torso, shirt, cv2.LINE_AA)
    cv2.circle(img, (int(cx), int(top + 0.08 * s)), int(0.075 * s), skin, -1, cv2.LINE_AA)
    points.append((cx, top))
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    x0, y0 = max(0.0, xs.min() - limb), max(0.0, ys.min() - limb)
    x1, y1 = min(w - 1.0, xs.max() + limb), min(h - 1.0, ys.max() + limb)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def generated_images(count: int = 16, size: tuple[int, int] = (480, 640), seed: int = 0):
    """(BGR uint8 image, figure box x, y, w, h) pairs, seeded: the same pictures on every machine."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    for _ in range(count):
        img = _background(rng, h, w)
        box = _figure(img, rng)
        img = cv2.GaussianBlur(img, (0, 0), 0.8) + rng.normal(0, 3, img.shape)  # camera softness and grain
        yield np.clip(img, 0, 255).astype(np.uint8), box


def write_generated(out: Path, count: int = 24, size: tuple[int, int] = (480, 640), seed: int = 0) -> Path:
    """The generated images as JPEG files frame000.jpg ... in `out`."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    for i, (img, _) in enumerate(generated_images(count, size, seed)):
        cv2.imwrite(str(out / f"frame{i:03d}.jpg"), img)
    return out


def generated_crops(input_size, count: int = 16, seed: int = 0, padding: float = 1.25):
    """A CropSet of `count` generated figures, one crop per image around its figure, made by the runtime's own
    preprocessing like every other crop set."""
    from calibration.datasets import _Collector

    out = _Collector((int(input_size[0]), int(input_size[1])), padding)
    for i, (img, box) in enumerate(generated_images(count, seed=seed)):
        out.add(img, i, f"generated#{i}", [box])
    crop_set = out.build(GENERATED_NOTE, "generated", seed)
    crop_set.note = GENERATED_NOTE
    return crop_set
