"""Which frames calibrate an int8 detector and which judge it: never the same ones.

A recipe (one ladder rung) is judged on detections the int8 model made on frames it was not calibrated on:

- cross-calibration (`--calib COCO.json` alone): the annotated images are split into k folds by image; each fold's
  images are detected by an int8 model calibrated on the other folds' images (and their mirrors). The person box AP
  over all images, from those out-of-fold detections, judges the recipe. The bundle written is then calibrated on
  every image by the same recipe, so it is not the model that was judged: it is the recipe's estimate, as
  cross-validation gives it, and the manifest says so (the folds and their image ids are recorded).
- separate frames (`--calib FRAMES --eval COCO.json`): a folder or video of the user's own frames (no annotations
  needed) calibrates; the COCO file's images only judge. One fold; the bundle written is the judged model. Frames
  equal to a judged image (or to its mirror image) are left out of calibration.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from converters.errors import ConversionError

DEFAULT_FOLDS = 4


@dataclass(frozen=True)
class Fold:
    calibrated_on: tuple  # COCO image ids (cross-calibration) or frame names (separate frames)
    judged: tuple[int, ...]  # COCO image ids this fold's int8 model is run on

    def record(self) -> dict:
        return {"calibrated_on": list(self.calibrated_on), "judged": list(self.judged)}


def cross_folds(image_ids: Sequence[int], k: int = DEFAULT_FOLDS) -> list[Fold]:
    """k folds by image (round robin over the sorted ids); each judges its own images, calibrates on the rest."""
    ids = sorted(int(i) for i in image_ids)
    if len(ids) < 2:
        raise ConversionError(f"cross-calibration needs at least 2 annotated images (the COCO file has {len(ids)}); "
                              "give real frames to calibrate on with --calib FRAMES and the COCO file with --eval")
    if int(k) < 2:
        raise ConversionError(f"--folds {k}: cross-calibration needs at least 2 folds (each image is judged by a model "
                              "calibrated on the others)")
    k = min(int(k), len(ids))  # more folds than images: leave one image out
    groups = [tuple(ids[i::k]) for i in range(k)]
    folds = [Fold(tuple(i for i in ids if i not in g), g) for g in groups]
    check_disjoint(folds, ids)
    return folds


def check_disjoint(folds: Sequence[Fold], judged_ids: Sequence[int]) -> None:
    """No fold calibrates on an image it judges, and every judged image is judged exactly once."""
    seen: list[int] = []
    for n, f in enumerate(folds):
        both = set(f.calibrated_on) & set(f.judged)
        if both:
            raise ConversionError(f"fold {n} would judge image(s) {sorted(both)} it was calibrated on")
        seen += f.judged
    if sorted(seen) != sorted(int(i) for i in judged_ids):
        raise ConversionError("the folds do not judge every image exactly once")


def _digest(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes() + str(img.shape).encode()).hexdigest()


def read_calib_frames(path, limit: int = 64, every_n: int = 10) -> list[tuple[str, np.ndarray]]:
    """(name, BGR frame) from an image folder or a video (every n-th frame), at most `limit`; one line if none."""
    from calibration.cropset import CalibrationDataError
    from calibration.readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_images, read_image, video_frames

    path = Path(path)
    try:
        if path.suffix.lower() == ".json":  # another COCO file's images: calibration needs no annotations
            from calibration.detect_fidelity import load_gt

            out = [(Path(im["file_name"]).name, read_image(path.parent / Path(im["file_name"]).name))
                   for im in spread(load_gt(path)["images"], limit)]
            if not out:
                raise ConversionError(f"{path}: no images to calibrate on")
            return out
        if path.is_dir():
            return [(p.name, read_image(p)) for p in spread(list_images(path), limit)]
        if path.suffix.lower() in VIDEO_SUFFIXES:
            out = []
            for index, frame in video_frames(path, every_n):
                out.append((f"{path.name}#{index}", frame))
                if len(out) >= limit:
                    break
            if not out:
                raise ConversionError(f"{path}: no frames could be read from this video")
            return out
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return [(path.name, read_image(path))]
    except CalibrationDataError as exc:
        raise ConversionError(str(exc)) from None
    if not path.exists():
        raise ConversionError(f"{path}: calibration frames not found (an image folder or a video)")
    raise ConversionError(f"{path}: not an image folder, an image or a video ({', '.join(VIDEO_SUFFIXES)})")


def separate_fold(frames: list[tuple[str, np.ndarray]], judged: dict[int, np.ndarray],
                  log=print) -> tuple[Fold, list[np.ndarray]]:
    """One fold calibrated on the user's frames, judged on every annotated image; frames equal to a judged image or
    its mirror image are dropped (saying so), and no frame left is one line."""
    judged_digests = {_digest(img) for img in judged.values()} | {
        _digest(np.ascontiguousarray(img[:, ::-1])) for img in judged.values()}
    kept = [(n, f) for n, f in frames if _digest(f) not in judged_digests]
    if len(kept) < len(frames):
        log(f"  {len(frames) - len(kept)} calibration frame(s) are judged images: left out of calibration")
    if not kept:
        raise ConversionError("every calibration frame is also a judged image: give frames the COCO file does not "
                              "hold (or --calib COCO.json alone for cross-calibration)")
    return Fold(tuple(n for n, _ in kept), tuple(sorted(judged))), [f for _, f in kept]


@dataclass
class Judging:
    """The judged images (with ground truth), the folds, and each fold's calibration frames (BGR)."""
    scheme: str  # "cross-calibration" or "separate frames"
    gt: dict | None  # None: frames without annotations, judged by agreement with the source
    image_dir: Path
    frames: dict[int, np.ndarray]  # judged image id -> BGR
    folds: list[Fold]
    fold_frames: list[list[np.ndarray]]  # calibration frames of each fold, before mirroring
    bundle_frames: list[np.ndarray]  # what the written bundle is calibrated on
    bundle_ids: tuple  # their image ids (or frame names)
    calib_source: str
    gt_source: str

    @property
    def bundle_is_judged(self) -> bool:
        """True when the bundle written is the model that was judged (one fold calibrated on the whole set)."""
        return len(self.folds) == 1 and self.folds[0].calibrated_on == self.bundle_ids

    def describe(self) -> str:
        text = (f"judged on {len(self.frames)} annotated image(s) of {self.gt_source}" if self.gt is not None else
                f"judged on {len(self.frames)} frame(s) of {self.gt_source} by agreement with the source (no ground "
                "truth)")
        if not self.folds:
            return text
        folds = "; ".join(f"fold {n + 1} calibrated on {list(f.calibrated_on)[:6]}"
                          f"{' ...' if len(f.calibrated_on) > 6 else ''}, judges {list(f.judged)}"
                          for n, f in enumerate(self.folds))
        return f"{text}; int8 by {self.scheme}: {folds} (and mirror images)"

    def record(self) -> dict:
        out = {"scheme": self.scheme, "calibration_source": self.calib_source, "source": self.gt_source,
               "judged_images": sorted(self.frames),
               "folds": [f.record() for f in self.folds], "mirrors": True}
        if not self.bundle_is_judged:
            out["bundle_calibrated_on"] = list(self.bundle_ids)
            out["note"] = ("figures are out-of-fold: each image was detected by an int8 model calibrated without it; "
                           "the bundle is calibrated on every image by the same recipe (an estimate of it, as "
                           "cross-validation gives)")
        return out


def spread(items: Sequence, n: int) -> list:
    """At most n of items, evenly spaced and in order (deterministic: no seed to record)."""
    items = list(items)
    if len(items) <= n:
        return items
    if n <= 1:
        return items[:max(n, 0)]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def judging(calib, eval_data=None, images=None, folds: int = DEFAULT_FOLDS, limit: int = 64, log=print,
            calibrate: bool = True, eval_limit: int = 200) -> Judging:
    """The frames to calibrate on and to judge on, from --calib / --eval / --images (see the module docstring);
    without calibrate (no int8 target) only the frames to judge on. At most `eval_limit` images judge and at most
    `limit` frames (before mirroring) calibrate each model, evenly spread, so a large COCO file stays bounded."""
    from calibration.cropset import CalibrationDataError
    from calibration.detect_fidelity import load_gt
    from calibration.readers import read_image

    if calib is None:
        raise ConversionError("--task detect needs --calib COCO.json (person boxes: frames to calibrate and judge on), "
                              "--calib FRAMES --eval COCO.json, or --calib FRAMES alone (judged by agreement)")
    coco = eval_data if eval_data is not None else calib
    if eval_data is not None and Path(coco).suffix.lower() != ".json":
        raise ConversionError(f"{coco}: --eval for --task detect is a COCO JSON with person boxes")
    if Path(coco).suffix.lower() != ".json":
        return _frames_only(calib, folds, limit, eval_limit, calibrate, log)
    gt = load_gt(coco)
    image_dir = Path(images) if images else Path(coco).parent
    listed = spread(gt["images"], eval_limit)
    if len(listed) < len(gt["images"]):
        log(f"  judging on {len(listed)} of the {len(gt['images'])} images of {coco} (evenly spread; --eval-size)")
    frames = {}
    for im in listed:
        try:
            frames[int(im["id"])] = read_image(image_dir / Path(im["file_name"]).name)
        except CalibrationDataError as exc:
            raise ConversionError(f"{exc} (listed in {coco})") from None
    if not frames:
        raise ConversionError(f"{coco}: no images to judge on")
    if not calibrate:
        return Judging("nothing calibrated", gt, image_dir, frames, [], [], [], (), "", str(coco))
    if eval_data is None or Path(calib).resolve() == Path(eval_data).resolve():
        return _cross_calibrated(gt, image_dir, frames, folds, limit, str(coco))
    fold, kept = separate_fold(read_calib_frames(calib, limit), frames, log)
    return Judging("separate frames", gt, image_dir, frames, [fold], [kept], kept, fold.calibrated_on, str(calib),
                   str(coco))


def _frames_only(calib, folds: int, limit: int, eval_limit: int, calibrate: bool, log) -> Judging:
    """--calib FRAMES with no annotations: the frames judge by agreement with the source (gt None), int8 by
    cross-calibration over them (each frame detected by a model calibrated on the other folds' frames)."""
    named = read_calib_frames(calib, max(limit, eval_limit))
    frames = {i: f for i, (_, f) in enumerate(named)}
    if not calibrate:
        return Judging("nothing calibrated", None, Path(calib), frames, [], [], [], (), "", str(calib))
    if len(frames) < 2:
        raise ConversionError(f"{calib}: int8 without ground truth needs at least 2 frames (each frame is judged by "
                              "a model calibrated on the others), or --eval COCO.json")
    log(f"  no ground truth: {len(frames)} frame(s) of {calib} judge by agreement with the source's boxes")
    return _cross_calibrated(None, Path(calib), frames, folds, limit, str(calib))


def _cross_calibrated(gt, image_dir: Path, frames: dict[int, np.ndarray], folds: int, limit: int,
                      source: str) -> Judging:
    """Folds by frame over `frames` (each calibrating on at most `limit` of the others); the bundle is calibrated
    on at most `limit` of all of them."""
    fs = [Fold(tuple(spread(f.calibrated_on, limit)), f.judged) for f in cross_folds(list(frames), folds)]
    every = tuple(spread(sorted(frames), limit))
    return Judging("cross-calibration", gt, image_dir, frames, fs, [[frames[i] for i in f.calibrated_on] for f in fs],
                   [frames[i] for i in every], every, source, source)
