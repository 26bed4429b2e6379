"""Run a pose bundle on an image, a directory of images or a video.

Writes OUT/keypoints.json (COCO keypoint results: image_id, category_id 1, keypoints as flat x, y, score in the
model's keypoint order, score), the input drawn with skeletons (same file names, or OUT/<video>.mp4), and
OUT/summary.json (what ran, keypoint names, people, per-stage times, PCK@0.2 when --gt is given). Person boxes come
from --boxes (a COCO detections or ground-truth file, 'hog', or 'frame'), else from a detector bundle (--detector, or
one beside the pose bundles), else from --gt, else the whole frame.
image_id is the COCO id (from --boxes/--gt's images table) when a COCO file is given, else the number a file name of
digits only spells (COCO's 000000000785.jpg -> 785), else the image's index in sorted order (the frame index for a
video).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

# per-frame stages in the summary and the timing line; "draw" (drawing and writing the output) is predict's own
STAGES = ("read", "boxes", "detect", "carry", "crop", "infer", "decode", "draw")
HELP = "predict keypoints on an image, a folder of images or a video; write COCO results JSON and drawn images"


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE_OR_DIR", help="a bundle directory or a directory of bundles")
    parser.add_argument("input", metavar="INPUT", help="an image, a directory of images, or a video file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    parser.add_argument("--boxes", metavar="FILE|hog|frame",
                        help="person boxes: COCO detection results or ground-truth JSON, 'hog', or 'frame'")
    parser.add_argument("--detector", metavar="BUNDLE_OR_DIR|none",
                        help="person detector bundle (default: a detect bundle beside the pose bundles, if any; "
                             "'none': no detector); --boxes overrides it")
    parser.add_argument("--detect-every", type=int, default=1, metavar="N",
                        help="video: run the detector every N frames, boxes carried from the keypoints between "
                             "(default 1: every frame)")
    parser.add_argument("--gt", metavar="COCO_JSON", help="COCO ground truth: image ids, boxes (unless --boxes) "
                                                          "and PCK@0.2 in the summary")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="drop boxes scoring below (default 0)")
    from edge_pose.cli import selection
    from registry import DECODERS

    selection.add_arguments(parser)
    parser.add_argument("--flip", action="store_true", default=None, help="flip test (default: the manifest's)")
    parser.add_argument("--method", choices=tuple(DECODERS), help="decode (default: the manifest's)")
    parser.add_argument("--padding", type=float, default=None,
                        help="box padding before cropping (default: the manifest's, 1.25 for mmpose models)")
    parser.add_argument("--kpt-threshold", type=float, default=0.3, help="draw joints scoring at least this")
    parser.add_argument("--no-draw", action="store_true", help="write only the JSON files")


def _frames(path: Path, kind: str, first=None):
    """(name, index, image, seconds to read it) for every readable image; unreadable ones in a folder are skipped,
    said once."""
    from edge_pose.media import MediaError, list_images, read_image

    if kind == "image":
        yield path.name, 0, first if first is not None else read_image(path), 0.0
        return
    for i, f in enumerate(list_images(path)):
        t0 = time.perf_counter()
        try:
            image = read_image(f)
        except MediaError as exc:
            print(f"\nedge-pose predict: skipped: {exc}", file=sys.stderr)
            continue
        yield f.name, i, image, time.perf_counter() - t0


def _predicted(est, src: Path, kind: str, first, frame_boxes, detect_every: int):
    """(name, index, image, people, seconds per stage) per frame. A video streams (edge_pose.stream.PoseStream:
    decoding, person boxes and crops run in threads ahead of inference; the detector every `detect_every` frames
    with boxes carried between); images go one at a time through PoseEstimator.predict. `frame_boxes(image, name)`
    gives a frame's person boxes (None: the whole frame); None uses the estimator's detector."""
    if kind == "video":
        from edge_pose.frames import VideoFrames
        from edge_pose.stream import PoseStream

        box_fn = None if frame_boxes is None else (lambda image, i: frame_boxes(image, f"{src.stem}_{i:06d}"))
        with PoseStream(est, VideoFrames(src), boxes=box_fn, detect_every=detect_every) as stream:
            for item in stream:
                yield f"{src.stem}_{item.index:06d}", item.index, item.image, item.people, item.timings
        return
    for name, index, image, read_s in _frames(src, kind, first):
        t0 = time.perf_counter()
        found = None if frame_boxes is None else frame_boxes(image, name)
        boxes_s = time.perf_counter() - t0
        people = est.predict(image, found)
        yield name, index, image, people, {**est.last_timings, "read": read_s, "boxes": boxes_s}


def run(args) -> int:
    from edge_pose import jsonio
    from edge_pose.boxes import CocoBoxes, box_source
    from edge_pose.draw import draw_people
    from edge_pose.estimator import PoseEstimator
    from edge_pose.media import MediaError, VideoReader, VideoWriter, kind_of, list_images, read_image, write_image
    from edge_pose.metrics import joint_map, mean_pck, person_pck

    src = Path(args.input)
    kind = kind_of(src)
    reader = VideoReader(src) if kind == "video" else None
    first = read_image(src) if kind == "image" else None  # a bad input fails before the model loads
    total = 1 if kind == "image" else len(list_images(src)) if kind == "dir" else (reader.frames or None)
    if reader is not None:
        reader.close()  # opened to refuse a bad video before the model loads and to learn its rate; streamed below
    _check_padding(args.padding)
    if args.detect_every < 1:
        from edge_pose.errors import EdgePoseError

        raise EdgePoseError(f"--detect-every {args.detect_every}: must be at least 1 (1 detects on every frame)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before the model loads, as every bad argument
        raise MediaError(f"--out {out}: is a file; predict writes a directory (keypoints.json, drawn images)")
    gt = CocoBoxes(args.gt) if args.gt else None
    from edge_pose.cli import selection

    # person boxes: --boxes, else a detector (--detector, or one found beside the pose bundles), else --gt's, else
    # the whole frame
    detector = None if args.boxes or args.detector == "none" else (args.detector or "auto")
    est = PoseEstimator(args.bundle, flip=args.flip, method=args.method, padding=args.padding, detector=detector,
                        **selection.options(args))
    use_detector = est.detector is not None
    if not use_detector and not args.boxes and gt is None:
        print("edge-pose predict: no person detector (--detector, or a detect bundle beside the pose bundles) and no "
              "--boxes: each image is one person box; several people in view get one skeleton", file=sys.stderr)
    boxes = box_source(args.boxes, args.score_threshold) if args.boxes else (gt or box_source(None))
    if gt is not None and isinstance(boxes, CocoBoxes) and boxes is not gt:
        boxes.use_images_of(gt)  # detections name images by the GT's ids, not by file-name digits
    coco_ids = gt or (boxes if isinstance(boxes, CocoBoxes) else None)
    boxed_frames = 0

    def frame_boxes(image, name):  # counts the frames a box source gave boxes for (a COCO file may name none)
        nonlocal boxed_frames
        found = boxes.boxes(image, name)
        boxed_frames += found is not None and len(found) > 0
        return found
    names, skeleton = est.keypoints.names, est.keypoints.skeleton
    pairs = joint_map(names)
    gt_people = _gt_keypoints(args.gt) if args.gt else {}
    out.mkdir(parents=True, exist_ok=True)
    video = VideoWriter(out / f"{src.stem}.mp4", reader.fps) if reader is not None and not args.no_draw else None
    progress = _Progress(total, "frames" if kind == "video" else "images")
    stages = dict.fromkeys(STAGES, 0.0)
    results, pck, frames, t_start = [], [], 0, time.perf_counter()
    try:
        for name, index, image, people, timings in _predicted(est, src, kind, first,
                                                                None if use_detector else frame_boxes,
                                                                args.detect_every):
            image_id = coco_ids.image_id(name) if coco_ids is not None and kind != "video" else None
            if image_id is None and coco_ids is None and kind != "video" and Path(name).stem.isdigit():
                image_id = int(Path(name).stem)  # COCO-style names (000000000785.jpg) are their image ids
            image_id = index if image_id is None else image_id
            results += [_coco_result(p, image_id) for p in people]
            pck += [person_pck(p.keypoints, a["keypoints"], a["bbox"], pairs)
                    for p, a in _match(people, gt_people.get(image_id))]
            t0 = time.perf_counter()
            if not args.no_draw:
                drawn = draw_people(image, people, skeleton, names, args.kpt_threshold)
                if video is not None:
                    video.write(drawn)
                else:
                    write_image(out / name, drawn)
            for k in STAGES[:-1]:
                stages[k] += timings.get(k, 0.0)
            stages["draw"] += time.perf_counter() - t0
            frames += 1
            progress.update(frames, len(results))
    finally:
        progress.close()
        if video is not None:
            video.close()
    if frames == 0:
        raise MediaError(f"{src}: no readable images")
    if isinstance(boxes, CocoBoxes) and not use_detector and boxed_frames == 0:
        print(_no_box_matched(boxes, gt, src, frames), file=sys.stderr)
    jsonio.write(out / "keypoints.json", results)  # strict (never NaN/Infinity) and atomic
    summary = {"input": str(src), "bundle": str(est.bundle.path), "runs": est.describe(), "keypoints": names,
               "skeleton": [list(e) for e in skeleton], "frames": frames, "people": len(results),
               "seconds": round(time.perf_counter() - t_start, 3),
               "ms_per_frame": {k: round(v / frames * 1e3, 3) for k, v in stages.items()}}
    if gt_people:
        scored = sum(p is not None for p in pck)
        summary["pck@0.2"] = {"value": mean_pck(pck) if scored else None, "people": scored,
                              "definition": "per-person share of labelled joints within 0.2 x max(gt box w, h), "
                                            "averaged over ground-truth people matched by box IoU >= 0.5; "
                                            "joints matched by name"}
    jsonio.write(out / "summary.json", summary, indent=1, default=str)
    line = f"{frames} {'frames' if kind == 'video' else 'images'}, {len(results)} people -> {out}/keypoints.json"
    if gt_people:
        got = summary["pck@0.2"]
        line += f"; PCK@0.2 {got['value']:.3f} over {got['people']} matched people" if got["people"] else \
            "; PCK@0.2 n/a (no prediction matched a ground-truth person)"
    ms = summary["ms_per_frame"]
    wall = summary["seconds"] / frames * 1e3
    print(line + f" ({wall:.1f} ms per {'frame' if kind == 'video' else 'image'} end to end; per stage " +
          ", ".join(f"{k} {ms[k]:.1f}" for k in STAGES) + " ms" +
          ("; read, boxes, detect and crop overlap inference" if kind == "video" else "") + ")")
    return 0


def _check_padding(padding) -> None:
    import math

    from edge_pose.errors import EdgePoseError

    if padding is not None and not (math.isfinite(padding) and padding > 0):
        raise EdgePoseError(f"--padding {padding:g}: must be a positive number (the box enlargement before the "
                            f"crop, e.g. 1.25)")


def _no_box_matched(boxes, gt, src: Path, frames: int) -> str:
    """One warning line: a box file none of whose boxes lands on any input image (usually mismatched image ids)."""
    ids = sorted(boxes.by_image)
    held = f"boxes for image ids {ids[0]}..{ids[-1]}" if ids else "no person boxes at this --score-threshold"
    how = f"file names through {gt.path.name}'s images table" if gt is not None and gt.ids_by_name else \
        "the digits of the file names (pass the ground truth with --gt GT.json to match through its images table)"
    return (f"edge-pose predict: warning: {boxes.path}: no box matched any of the {frames} images in {src} "
            f"(it has {held}; images matched by {how})")


def _coco_result(person, image_id: int) -> dict:
    """One COCO keypoint result: keypoints flat (x, y, score) in the model's keypoint order."""
    import numpy as np

    from edge_pose.jsonio import finite

    flat = np.column_stack([person.keypoints, person.scores]).reshape(-1)  # a non-finite value becomes 0 (unscored)
    return {"image_id": image_id, "category_id": 1, "keypoints": [round(finite(v, 0.0), 3) for v in flat],
            "score": round(finite(person.score, 0.0), 5), "bbox": [round(finite(v, 0.0), 2) for v in person.box]}


def _gt_keypoints(path: str) -> dict[int, list[dict]]:
    """image id -> non-crowd annotations with keypoints (box and flat keypoints)."""
    from edge_pose.boxes import BoxError, read_json
    from edge_pose.cocofile import CocoFileError, check_annotations

    data = read_json(Path(path))
    try:  # PCK indexes COCO's 17 keypoints by name: every annotation's keypoints must be 17 (x, y, v)
        annotations = check_annotations(path, data, values=51) if isinstance(data, dict) else []
    except CocoFileError as exc:
        raise BoxError(str(exc)) from None
    by_image: dict[int, list[dict]] = {}
    for a in annotations:
        if not a.get("iscrowd") and a.get("num_keypoints", 1) > 0 and "keypoints" in a:
            by_image.setdefault(int(a["image_id"]), []).append(a)
    return by_image


def _match(people, annotations):
    """(person, annotation) pairs: each ground-truth person with the prediction whose box overlaps it best."""
    if not people or not annotations:
        return []
    from edge_pose.metrics import match_boxes

    pairs = match_boxes([p.box for p in people], [a["bbox"] for a in annotations])
    return [(people[p], annotations[g]) for p, g in pairs]


class _Progress:
    """'predict: 3/40 images, 7 people' on stderr: rewritten in place on a terminal, every tenth step otherwise."""

    def __init__(self, total: int | None, unit: str):
        self.total, self.unit, self.tty = total, unit, sys.stderr.isatty()
        self.every = 1 if self.tty or not total else max(1, total // 10)

    def update(self, done: int, people: int) -> None:
        if done % self.every and done != self.total:
            return
        text = f"predict: {done}/{self.total or '?'} {self.unit}, {people} people"
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
