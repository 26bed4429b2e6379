"""Person crops for calibration and fidelity checks, from the data users actually have.

DATA is a COCO keypoint JSON (images beside it or in `images_dir`; ground-truth boxes, or a COCO detection results
file through `boxes`), a folder of images or a video (every n-th frame), people found by OpenCV's HOG detector (the
default), a detect bundle, or taken as the whole frame. Crops are made by the runtime's own preprocessing
(edge_pose.preprocess.crop_people), so calibration sees exactly what the device will feed the model.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from calibration.cropset import CalibrationDataError, CropSet
from calibration.readers import (
    VIDEO_SUFFIXES, list_images, read_coco_detections, read_coco_keypoints, read_image, video_frames,
)


def _progress(items, desc: str, total: int | None = None):
    from edge_pose.progress import progress

    return progress(items, desc, total, unit="img")


class _Collector:
    """Accumulates crops image by image, then packs them into one CropSet."""

    def __init__(self, input_size: tuple[int, int], padding: float):
        self.input_size, self.padding = tuple(input_size), padding
        self.parts: list = []
        self.meta: dict[str, list] = {"image_ids": [], "image_paths": [], "ann_ids": [], "scores": [], "boxes": []}
        self.gt: list = []

    def add(self, image: np.ndarray, image_id, image_path: str, boxes_xywh, scores=None, ann_ids=None, gt=None):
        from edge_pose.preprocess import crop_people

        boxes = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return
        crops = crop_people(image, boxes, self.input_size, padding=self.padding)
        self.parts.append(crops)
        n = len(boxes)
        self.meta["image_ids"] += [image_id] * n
        self.meta["image_paths"] += [str(image_path)] * n
        self.meta["ann_ids"] += list(ann_ids) if ann_ids is not None else [None] * n
        self.meta["scores"] += list(scores) if scores is not None else [1.0] * n
        self.meta["boxes"].append(boxes)
        if gt is not None:
            self.gt.append(np.asarray(gt, dtype=np.float32))

    def build(self, source: str, kind: str, seed: int, coco_gt: dict | None = None) -> CropSet:
        if not self.parts:
            raise CalibrationDataError(f"{source}: no person boxes found, so no crops to use")
        h, w = self.input_size
        return CropSet(
            crops=np.concatenate([np.asarray(c.images, dtype=np.uint8).reshape(-1, h, w, 3) for c in self.parts]),
            image_ids=self.meta["image_ids"], image_paths=self.meta["image_paths"],
            boxes=np.concatenate(self.meta["boxes"]),
            centers=np.concatenate([np.asarray(c.centers, dtype=np.float32) for c in self.parts]),
            scales=np.concatenate([np.asarray(c.scales, dtype=np.float32) for c in self.parts]),
            box_scores=np.asarray(self.meta["scores"], dtype=np.float32), input_size=(h, w), source=source,
            kind=kind, ann_ids=self.meta["ann_ids"], seed=seed,
            gt_keypoints=np.concatenate(self.gt) if self.gt and kind == "coco-gt" else None, coco_gt=coco_gt,
        )


def _choose(items: list, limit: int | None, seed: int) -> list:
    """A seeded, order-preserving choice of `limit` items (all when limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:limit])
    return [items[i] for i in keep]


class _PersonFinder:
    """Person boxes for image folders and videos: 'whole' frame, OpenCV 'hog' (the default), or a detect bundle
    (or a directory holding one, from `edge-pose convert ... --task detect`); boxes below `min_score` are dropped."""

    def __init__(self, detector: str | None, min_score: float):
        from edge_pose.boxes import box_source
        from edge_pose.errors import EdgePoseError

        spec = detector or "hog"
        self.min_score, self.whole = min_score, spec == "whole"
        if spec in ("whole", "hog"):
            try:
                source = box_source(spec)
            except EdgePoseError as exc:
                raise CalibrationDataError(str(exc)) from None
            self._find = source.boxes
            self.label = "whole frame" if self.whole else ("OpenCV HOG" + ("" if detector else " (the default; "
                                                                           "--detector BUNDLE or whole)"))
            return
        path = Path(spec)
        if not path.exists():
            raise CalibrationDataError(f"{path}: --detector takes whole, hog or a detect bundle (or a folder holding "
                                       "one): no such file or folder")
        from edge_pose.detect.bundle import open_detector

        try:
            found = open_detector(path)
        except EdgePoseError as exc:
            raise CalibrationDataError(f"{path}: not a usable detect bundle ({exc})") from None
        self._find = found.detect
        self.label = f"detector {found.bundle.path.name}"

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.asarray(self._find(image), dtype=np.float32).reshape(-1, 5)
        if not self.whole:
            found = found[found[:, 4] >= self.min_score]
        found = found[(found[:, 2] > 1) & (found[:, 3] > 1)]
        return found[:, :4], found[:, 4]

    def say(self, source, crops: int, images: int) -> None:
        score = "" if self.whole else f", score >= {self.min_score:g}"
        print(f"{source}: {crops} person crop(s) from {images} image(s) (boxes: {self.label}{score})",
              file=sys.stderr, flush=True)
        if crops == 0:
            hint = "" if self.whole else ": try --detector BUNDLE, a lower --min-box-score, or --detector whole"
            raise CalibrationDataError(f"{source}: no person boxes found in {images} image(s) ({self.label}{score})"
                                       f"{hint}")


def _from_coco(path: Path, input_size, images_dir, boxes, limit, seed, padding, min_box_score) -> CropSet:
    data = read_coco_keypoints(path)
    root = Path(images_dir) if images_dir else path.parent
    if images_dir and not root.is_dir():
        raise CalibrationDataError(f"{root}: images folder not found")
    images = {img["id"]: img for img in data["images"]}
    if not any((root / img["file_name"]).is_file() for img in images.values()):
        raise CalibrationDataError(f"{path}: none of its {len(images)} images found in {root} (use --images DIR)")
    persons = [a for a in data["annotations"] if a.get("category_id", 1) == 1]
    if boxes is not None:
        dets = [d for d in read_coco_detections(boxes) if d.get("score", 1.0) >= min_box_score]
        unknown = {d["image_id"] for d in dets} - set(images)
        if unknown:
            raise CalibrationDataError(f"{boxes}: detections for image ids not in {path.name} ({sorted(unknown)[:3]})")
        entries = [(d["image_id"], d["bbox"], d.get("score", 1.0), None, None) for d in dets]
        kind, coco_gt = "coco-det", None
    else:
        persons = [a for a in persons if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]
        entries = [(a["image_id"], a["bbox"], 1.0, a["id"], a["keypoints"]) for a in persons]
        kind = "coco-gt"
        coco_gt = {"images": data["images"], "annotations": persons,
                   "categories": data.get("categories") or [{"id": 1, "name": "person"}]}
    entries = [e for e in entries if e[1][2] > 1 and e[1][3] > 1]
    entries = _choose(entries, limit, seed)
    if not entries:
        raise CalibrationDataError(f"{boxes or path}: no usable person boxes")
    by_image: dict[Any, list] = {}
    for e in entries:
        by_image.setdefault(e[0], []).append(e)
    out = _Collector(input_size, padding)
    for image_id, group in _progress(by_image.items(), f"crops from {path.name}", len(by_image)):
        file = root / images[image_id]["file_name"]
        gt = None
        if kind == "coco-gt":
            gt = [np.asarray(g[4], dtype=np.float32).reshape(-1, 3) for g in group]
        out.add(read_image(file), image_id, str(file), [g[1] for g in group], [g[2] for g in group],
                [g[3] for g in group], gt)
    crop_set = out.build(str(path), kind, seed, coco_gt)
    crop_set.boxes_file = str(boxes) if boxes is not None else ""
    return crop_set


def _from_folder(folder: Path, input_size, limit, seed, padding, finder: _PersonFinder) -> CropSet:
    files = _choose(list_images(folder), limit, seed)
    out = _Collector(input_size, padding)
    for file in _progress(files, f"crops from {folder.name}/"):
        image = read_image(file)
        out.add(image, file.name, str(file), *finder(image))
    finder.say(f"{folder}/", len(out.meta["image_ids"]), len(files))
    return out.build(str(folder), "folder", seed)


def _from_video(path: Path, input_size, every_n, limit, padding, finder: _PersonFinder, seed) -> CropSet:
    out = _Collector(input_size, padding)
    frames = 0
    for index, frame in _progress(video_frames(path, every_n), f"crops from {path.name}"):
        frames += 1
        out.add(frame, index, f"{path}#{index}", *finder(frame))
        if limit is not None and len(out.meta["image_ids"]) >= limit:
            break
    finder.say(path, len(out.meta["image_ids"]), frames)
    return out.build(str(path), "video", seed)


def load_crops(data, input_size, images_dir=None, boxes=None, every_n: int = 10, limit: int | None = None,
               seed: int = 0, padding: float = 1.25, detector: str | None = None, min_box_score: float = 0.0
               ) -> CropSet:
    """Crops (uint8 BGR, `input_size` (h, w)) from a COCO keypoint JSON, an image folder or a video.

    `limit` caps the number of boxes (COCO), images (folder) or sampled frames (video), chosen with `seed`;
    `detector` finds people in folders and videos: 'whole' frame, 'hog' (None: the default) or a detect bundle path;
    its boxes below `min_box_score` are left out (as are --boxes detections of a COCO JSON).
    """
    path = Path(data)
    if not path.exists():
        raise CalibrationDataError(f"{path}: no such file or folder")
    input_size = (int(input_size[0]), int(input_size[1]))
    if path.is_dir():
        return _from_folder(path, input_size, limit, seed, padding, _PersonFinder(detector, min_box_score))
    if path.suffix.lower() == ".json":
        return _from_coco(path, input_size, images_dir, boxes, limit, seed, padding, min_box_score)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _from_video(path, input_size, every_n, limit, padding, _PersonFinder(detector, min_box_score), seed)
    raise CalibrationDataError(f"{path}: not a COCO keypoint JSON, an image folder or a video "
                               f"({', '.join(VIDEO_SUFFIXES)})")
