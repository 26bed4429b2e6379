"""A streaming top-down pipeline: frames decoded ahead, boxes and crops cut ahead, inference and decode in the
caller's thread, so that the inference runtime is fed without waiting for the video decoder or the crop.

    with PoseStream(estimator, open_frames("clip.mp4")) as stream:  # edge_pose.frames.open_frames
        for item in stream:              # item.index, item.image (valid until the next item), item.people
            ...

Three stages joined by bounded queues: a reader thread decodes into a ring of preallocated frame buffers (a slot
returns to the ring when the caller takes the next item), a prepare thread finds the boxes and cuts the crops
into preallocated model-input buffers, and the caller's thread infers and decodes. OpenCV's decode and warpAffine
and the runtimes release the GIL while they work, so the three overlap on a multi-core CPU.

The people are exactly those of `PoseEstimator.predict` (and `predict_next` with a detector) on the same frames:
the same functions run on the same values, only earlier and in another thread. With a detector every N frames the
frames in between take their boxes from the previous frame's keypoints, so their crops are cut in the caller's
thread once those keypoints exist; the detections themselves are made ahead.

A stage that fails ends the stream: the caller gets the stage's one-line error, and every thread is joined.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge_pose.errors import EdgePoseError
from edge_pose.estimator import boxes_array
from edge_pose.preprocess import crop_people, input_tables, to_model_input, warp_matrices

POLL_S = 0.05  # how often a blocked stage looks at the stop flag
JOIN_S = 5.0  # a stage that does not end within this after close() is reported, not waited for forever


HELPER_NICE = 10  # the reader's and prepare thread's nice level on Linux (see PoseStream)


def _lower_priority(nice: int) -> None:
    """This thread's nice level raised to `nice` (Linux: per thread; elsewhere a thread id may name another process,
    so nothing is done). Best effort: a container that refuses leaves the thread as it was."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:  # never raises the priority of a process run under nice
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass


class StreamError(EdgePoseError):
    """A stage of the stream failed; str() is that stage's one line."""


# ---------------------------------------------------------------------------------------------------------------

@dataclass
class StreamItem:
    index: int
    image: np.ndarray  # the decoded frame: a ring buffer, valid until the next item is taken
    people: list
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage of this frame (see PoseStream)


@dataclass
class _Prepared:
    index: int
    slot: int  # frame ring slot
    timings: dict
    boxes: np.ndarray | None = None  # float32 [N, 5]; None: the caller's thread boxes this frame (carried boxes)
    detected: np.ndarray | None = None  # the detector's own output, for EveryN
    inputs: int | None = None  # model-input ring slot holding the crops' tensors
    centers: np.ndarray | None = None
    scales: np.ndarray | None = None
    inverse: np.ndarray | None = None  # crop -> image affines


class _End:
    pass


@dataclass
class _Failure:
    stage: str
    error: BaseException


class _InputBuffers:
    """Preallocated crops and model-input tensors (and their mirror images for the flip test) for up to `rows`
    people; more people grow it once to the next power of two."""

    def __init__(self, spec, tables: np.ndarray, flip: bool, rows: int):
        self.spec, self.tables, self.flip = spec, tables, flip
        self._alloc(rows)

    def _alloc(self, rows: int) -> None:
        h, w = self.spec.size
        tensor = (rows, 3, h, w) if self.spec.layout == "NCHW" else (rows, h, w, 3)
        self.crops = np.empty((rows, h, w, 3), np.uint8)
        self.x = np.empty(tensor, self.tables.dtype)
        self.x_flipped = np.empty(tensor, self.tables.dtype) if self.flip else None

    def fill(self, image: np.ndarray, boxes: np.ndarray, input_size, padding: float):
        """Crop `boxes` out of `image` into these buffers; (centers, scales, inverse affines) for back-projection."""
        n = len(boxes)
        if n > len(self.crops):
            self._alloc(1 << (n - 1).bit_length())
        crops = crop_people(image, boxes[:, :4], input_size, padding, out=self.crops)
        if n:
            to_model_input(crops.images, self.spec, out=self.x, tables=self.tables)
            if self.flip:
                to_model_input(crops.images[:, :, ::-1], self.spec, out=self.x_flipped, tables=self.tables)
        inverse = warp_matrices(crops.centers, crops.scales, input_size, None, inv=True)  # as predict: no rotation
        return crops.centers, crops.scales, inverse


class _Prefetched:
    """The detector as EveryN sees it: the boxes detected ahead for this frame when there are some, else a
    detection now (a frame where nobody was carried). A lock keeps the two threads off the one session."""

    def __init__(self, detector, lock: threading.Lock):
        self.detector, self.lock, self.ahead, self.spent = detector, lock, None, 0.0

    def detect(self, image) -> np.ndarray:
        if self.ahead is not None:
            boxes, self.ahead = self.ahead, None
            return boxes
        t0 = time.perf_counter()
        with self.lock:
            boxes = self.detector.detect(image)
        self.spent = time.perf_counter() - t0
        return boxes


class PoseStream:
    """Frames from `frames` (VideoFrames / ImageFrames / anything with read(out) and close()) -> StreamItems, for
    `estimator` (an edge_pose.PoseEstimator).

    Person boxes: `boxes` when given, a BoxSource (`.boxes(image, name)`) or a callable (image, index) -> boxes
    or None; else the estimator's detector every `detect_every` frames with boxes carried between (as
    `predict_next`); else the whole frame. A box function's None is the whole frame, its [N, 4|5] rows are
    the people's boxes (none: nobody), as `predict(image, boxes)` takes them.

    `depth`: frames queued between stages; `max_people`: crops preallocated per frame (more grow the buffers once).
    `helper_nice`: on Linux the reader and prepare threads run at this nice level, so the runtime's threads get the
    cores first and the helpers fill the gaps between their work (docs/bench.md: with inference on both cores of a
    2-core machine, preempted XNNPACK threads wait on each other); 0 leaves them at the caller's.
    Timings per item (seconds): read, detect, carry, boxes (a box source's), crop, infer, decode, wait (the
    caller's thread waiting for a prepared frame), interval (from the previous item to this one); caller_detect
    and caller_crop are the parts of detect and crop spent in the caller's thread (frames with carried boxes).
    """

    def __init__(self, estimator, frames, boxes=None, detect_every: int = 1, depth: int = 2, max_people: int = 4,
                 helper_nice: int = HELPER_NICE):
        if int(detect_every) < 1:
            raise EdgePoseError(f"detect every {detect_every} frames: must be at least 1")
        if int(depth) < 1:
            raise EdgePoseError(f"stream depth must be at least 1, got {depth}")
        self.est, self.frames, self.every, self.depth = estimator, frames, int(detect_every), int(depth)
        self.helper_nice = int(helper_nice)
        self.helper_ids: dict[str, int] = {}  # stage -> native thread id, once started
        self.name = getattr(frames, "name", "stream")
        self._box_fn = self._box_function(boxes)
        self._detecting = self._box_fn is None and estimator.detector is not None
        spec = estimator.manifest.input
        tables = input_tables(spec)
        slots = 2 * self.depth + 3  # reader, prepare and caller hold one each, the two queues the rest
        self._inputs = [_InputBuffers(spec, tables, estimator.flip, max_people) for _ in range(self.depth + 2)]
        self._carried_inputs = _InputBuffers(spec, tables, estimator.flip, max_people)
        self._ring: list[np.ndarray | None] = [None] * slots
        self._free_frames: queue.Queue = queue.Queue()
        self._free_inputs: queue.Queue = queue.Queue()
        for i in range(slots):
            self._free_frames.put(i)
        for i in range(len(self._inputs)):
            self._free_inputs.put(i)
        self._read_q: queue.Queue = queue.Queue(maxsize=self.depth)
        self._prep_q: queue.Queue = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._det_lock = threading.Lock()
        self._held: int | None = None
        self._closed = False
        # CPU seconds (time.thread_time) each helper thread used for the frames it has handled so far
        self.cpu_s = {"read": 0.0, "prepare": 0.0}
        self.handled = {"read": 0, "prepare": 0}
        if self._detecting:
            from edge_pose.detect.carry import EveryN

            self._prefetched = _Prefetched(estimator.detector, self._det_lock)
            self._every_n = EveryN(self._prefetched, self.every)

    def _box_function(self, boxes) -> Callable | None:
        if boxes is None:
            return None
        if hasattr(boxes, "boxes"):
            name = self.name
            return lambda image, index: boxes.boxes(image, name)
        if callable(boxes):
            return boxes
        raise EdgePoseError(f"stream boxes: a BoxSource or a callable (image, index), got {type(boxes).__name__}")

    # -- stages ---------------------------------------------------------------------------------------------------
    def _enter(self, stage: str) -> None:
        self.helper_ids[stage] = threading.get_native_id()
        _lower_priority(self.helper_nice)

    def _get(self, q: queue.Queue):
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _read_loop(self) -> None:
        self._enter("read")
        index, cpu0 = 0, time.thread_time()
        try:
            while True:
                slot = self._get(self._free_frames)
                if slot is None:
                    return
                t0 = time.perf_counter()
                buf = self._ring[slot]
                frame = self.frames.read(buf)
                if frame is None:
                    self._put(self._read_q, _End())
                    return
                if frame is not buf:  # first use of the slot, or the frame size changed
                    self._ring[slot] = frame
                self.cpu_s["read"], self.handled["read"] = time.thread_time() - cpu0, index + 1
                if not self._put(self._read_q, (index, slot, time.perf_counter() - t0)):
                    return
                index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self._put(self._read_q, _Failure("read", exc))

    def _prepare_loop(self) -> None:
        self._enter("prepare")
        cpu0 = time.thread_time()
        try:
            while True:
                got = self._get(self._read_q)
                if got is None:
                    return
                if isinstance(got, (_End, _Failure)):
                    self._put(self._prep_q, got)
                    return
                index, slot, read_s = got
                image = self._ring[slot]
                item = _Prepared(index, slot, {"read": read_s})
                t0 = time.perf_counter()
                if self._detecting:
                    if index % self.every == 0:  # EveryN detects on these frames whatever was carried
                        with self._det_lock:
                            item.detected = self.est.detector.detect(image)
                        item.timings["detect"] = time.perf_counter() - t0
                        item.boxes = boxes_array(item.detected, image.shape)
                else:
                    found = self._box_fn(image, index) if self._box_fn is not None else None
                    item.boxes = boxes_array(found, image.shape)
                    item.timings["boxes"] = time.perf_counter() - t0
                if item.boxes is not None:
                    t1 = time.perf_counter()
                    item.inputs = self._get(self._free_inputs)
                    if item.inputs is None:
                        return
                    t2 = time.perf_counter()
                    item.centers, item.scales, item.inverse = self._inputs[item.inputs].fill(
                        image, item.boxes, self.est.input_size, self.est.padding)
                    item.timings["crop"] = time.perf_counter() - t2
                    item.timings["prepare_wait"] = t2 - t1
                self.cpu_s["prepare"], self.handled["prepare"] = time.thread_time() - cpu0, index + 1
                if not self._put(self._prep_q, item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self._put(self._prep_q, _Failure("prepare", exc))

    # -- the caller's thread ----------------------------------------------------------------------------------------
    def start(self) -> PoseStream:
        if self._closed:
            raise EdgePoseError(f"{self.name}: stream already closed")
        if not self._threads:
            for name, target in (("read", self._read_loop), ("prepare", self._prepare_loop)):
                t = threading.Thread(target=target, name=f"edge-pose-stream-{name}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def __enter__(self) -> PoseStream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        self.start()
        last = time.perf_counter()
        try:
            while True:
                item = self.next_item()
                if item is None:
                    return
                now = time.perf_counter()
                item.timings["interval"] = now - last
                yield item
                last = time.perf_counter()
        finally:
            self.close()

    def _release_held(self) -> None:
        if self._held is not None:
            self._free_frames.put(self._held)
            self._held = None

    def next_item(self) -> StreamItem | None:
        """The next frame's people, or None at the end; the previous item's image buffer goes back to the ring."""
        self._release_held()
        t0 = time.perf_counter()
        try:
            got = self._prep_q.get_nowait()  # the usual case once the stages run ahead: no timed wait to set up
        except queue.Empty:
            got = None
        while got is None:
            try:
                got = self._prep_q.get(timeout=0.5)
            except queue.Empty:
                if not any(t.is_alive() for t in self._threads):
                    raise StreamError(f"{self.name}: the stream's stages stopped without a word") from None
        wait = time.perf_counter() - t0
        if isinstance(got, _End):
            return None
        if isinstance(got, _Failure):
            self.close()
            exc = got.error
            if isinstance(exc, EdgePoseError):
                raise exc
            raise StreamError(f"{self.name}: {got.stage} failed: {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())}") from None
        self._held = got.slot
        timings = {"read": 0.0, "detect": 0.0, "carry": 0.0, "boxes": 0.0, "crop": 0.0, "infer": 0.0,
                   "decode": 0.0, "caller_detect": 0.0, "caller_crop": 0.0, **got.timings, "wait": wait}
        image = self._ring[got.slot]
        people = self._people(got, image, timings)
        return StreamItem(got.index, image, people, timings)

    def _people(self, item: _Prepared, image: np.ndarray, timings: dict) -> list:
        buffers = self._inputs[item.inputs] if item.inputs is not None else None
        centers, scales, inverse, boxes = item.centers, item.scales, item.inverse, item.boxes
        if self._detecting:
            t0 = time.perf_counter()
            self._prefetched.ahead, self._prefetched.spent = item.detected, 0.0
            found = self._every_n.boxes(image)
            if not self._every_n.detected:
                timings["carry"] = time.perf_counter() - t0
            elif item.detected is None:  # nobody was carried: detected now, in this thread
                timings["detect"] = timings["caller_detect"] = self._prefetched.spent
            if item.boxes is None:
                boxes = boxes_array(found, image.shape)
                t1 = time.perf_counter()
                buffers = self._carried_inputs
                centers, scales, inverse = buffers.fill(image, boxes, self.est.input_size, self.est.padding)
                timings["crop"] = timings["caller_crop"] = time.perf_counter() - t1
        try:
            people = self._infer(buffers, boxes, centers, scales, inverse, timings)
        finally:
            if item.inputs is not None:
                self._free_inputs.put(item.inputs)
        if self._detecting:
            t2 = time.perf_counter()
            self._every_n.update(people, image.shape)
            timings["carry"] += time.perf_counter() - t2
        return people

    def _infer(self, buffers: _InputBuffers, boxes, centers, scales, inverse, timings) -> list:
        """PoseEstimator's own inference and decode, on tensors prepared ahead."""
        est, n = self.est, len(boxes)
        if not n:
            return []
        t0 = time.perf_counter()
        hm = est.infer_inputs(buffers.x[:n], buffers.x_flipped[:n] if est.flip else None)
        t1 = time.perf_counter()
        people = est.people_from_heatmaps(hm, boxes, centers, scales, inverse=inverse)
        timings["infer"] = t1 - t0
        timings["decode"] = time.perf_counter() - t1
        return people

    def close(self) -> None:
        """Stop every stage and join its thread (idempotent); the frame source is closed."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        stuck = []
        for t in self._threads:
            t.join(JOIN_S)
            if t.is_alive():
                stuck.append(t.name)
        self.frames.close()
        if stuck:
            raise StreamError(f"{self.name}: stream stage(s) {', '.join(stuck)} did not stop within {JOIN_S:.0f} s")

