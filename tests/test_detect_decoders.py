"""Each head's decoder against a plain reference decoder, on tiny real heads built as ONNX and run by onnxruntime.

The heads are real graphs (convs over a real coco-mini frame) producing the exported layouts: YOLOX's raw
[1, A, 5 + C] (sigmoided objectness and classes, per-stride cells row by row), YOLOv8's [1, 4 + C, A], and an
end-to-end graph ending in ONNX NonMaxSuppression (mmdeploy's dets [1, N, 5] + labels [1, N]). The references
loop over anchors and boxes one at a time and map them back with scalar arithmetic of their own.
"""
import math

import cv2
import numpy as np
import pytest

from edge_pose.detect.detector import Detector
from edge_pose.detect.nms import nms, reference_nms
from edge_pose.detect.preprocess import DetectInputError, prepare
from edge_pose.detect.spec import DetectSpecError
from edge_pose.detect.common import DetectOutputError
from shared import coco_mini

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

H, W, C = 64, 96, 3  # input (h, w), classes
STRIDES = (8, 16, 32)


class OrtSession:
    def __init__(self, model, outputs):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.outputs = outputs

    def run(self, batch):
        return self.sess.run(self.outputs, {"images": batch})


def _conv_levels(nodes, inits, rng, channels, prefix, pixel_range=255.0):
    """One strided conv per level: [1, 3, H, W] -> [1, channels, H/s, W/s] -> [1, channels, cells], weights scaled
    so outputs are O(1) on real pixels (box sizes of a few cells, scores spread around 0.5)."""
    flat = []
    for s in STRIDES:
        w = rng.normal(0, 2 / (pixel_range * s * math.sqrt(3)), (channels, 3, s, s)).astype(np.float32)
        b = rng.normal(0, 0.3, channels).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"{prefix}w{s}"), numpy_helper.from_array(b, f"{prefix}b{s}")]
        nodes.append(helper.make_node("Conv", ["images", f"{prefix}w{s}", f"{prefix}b{s}"], [f"{prefix}c{s}"],
                                      kernel_shape=[s, s], strides=[s, s]))
        nodes.append(helper.make_node("Reshape", [f"{prefix}c{s}", "shape3"], [f"{prefix}f{s}"]))
        flat.append(f"{prefix}f{s}")
    nodes.append(helper.make_node("Concat", flat, [f"{prefix}cat"], axis=2))
    return f"{prefix}cat"


def _model(nodes, inits, outputs):
    inits.append(numpy_helper.from_array(np.array([1, 0, -1], np.int64), "shape3"))  # keep channels, flatten
    graph = helper.make_graph(nodes, "tiny_head", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                 [1, 3, H, W])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def _split(nodes, inits, src, sizes, axis, names):
    inits.append(numpy_helper.from_array(np.array(sizes, np.int64), f"{src}_sizes"))
    nodes.append(helper.make_node("Split", [src, f"{src}_sizes"], names, axis=axis))


def yolox_model(seed=0):
    """Raw YOLOX head: per cell (tx, ty, tw, th, sigmoid(obj), sigmoid(cls)), [1, A, 5 + C]."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cat = _conv_levels(nodes, inits, rng, 5 + C, "x")  # [1, 5 + C, A]
    _split(nodes, inits, cat, [4, 1 + C], 1, ["reg", "objcls"])
    nodes += [helper.make_node("Sigmoid", ["objcls"], ["objcls_s"]),
              helper.make_node("Concat", ["reg", "objcls_s"], ["head"], axis=1),
              helper.make_node("Transpose", ["head"], ["output"], perm=[0, 2, 1])]
    return _model(nodes, inits, [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", "c", "a"])])


def yolov8_model(seed=1, end2end=False):
    """YOLOv8-style head [1, 4 + C, A]: cx, cy, w, h in input px (here sigmoid-scaled), sigmoided classes; with
    end2end, followed by ONNX NonMaxSuppression and gathers into dets [1, N, 5] + labels [1, N]."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cat = _conv_levels(nodes, inits, rng, 4 + C, "v", pixel_range=1.0)
    nodes.append(helper.make_node("Sigmoid", [cat], ["sig"]))
    scale = np.array([W, H, W / 2, H / 2] + [1.0] * C, np.float32).reshape(1, -1, 1)
    inits.append(numpy_helper.from_array(scale, "scale"))
    nodes.append(helper.make_node("Mul", ["sig", "scale"], ["output"]))
    if not end2end:
        return _model(nodes, inits, [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", "c", "a"])])
    _split(nodes, inits, "output", [1, 1, 1, 1, C], 1, ["cx", "cy", "bw", "bh", "scores"])
    inits += [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
              numpy_helper.from_array(np.array([50], np.int64), "max_per_class"),
              numpy_helper.from_array(np.array([0.45], np.float32), "iou"),
              numpy_helper.from_array(np.array([0.3], np.float32), "score_thr"),
              numpy_helper.from_array(np.array([0], np.int64), "i0"),
              numpy_helper.from_array(np.array([1], np.int64), "i1"),
              numpy_helper.from_array(np.array([2], np.int64), "i2")]
    nodes += [helper.make_node("Mul", ["bw", "half"], ["hw"]), helper.make_node("Mul", ["bh", "half"], ["hh"]),
              helper.make_node("Sub", ["cx", "hw"], ["x1"]), helper.make_node("Sub", ["cy", "hh"], ["y1"]),
              helper.make_node("Add", ["cx", "hw"], ["x2"]), helper.make_node("Add", ["cy", "hh"], ["y2"]),
              helper.make_node("Concat", ["x1", "y1", "x2", "y2"], ["xyxy_t"], axis=1),
              helper.make_node("Transpose", ["xyxy_t"], ["boxes"], perm=[0, 2, 1]),  # [1, A, 4]
              helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou", "score_thr"],
                               ["sel"]),  # [N, 3] batch, class, box
              helper.make_node("Gather", ["sel", "i1"], ["cls_col"], axis=1),
              helper.make_node("Gather", ["sel", "i2"], ["box_col"], axis=1),
              helper.make_node("Squeeze", ["cls_col", "i1"], ["cls_idx"]),
              helper.make_node("Squeeze", ["box_col", "i1"], ["box_idx"]),
              helper.make_node("Squeeze", ["boxes", "i0"], ["boxes2"]),
              helper.make_node("Gather", ["boxes2", "box_idx"], ["sel_boxes"], axis=0),  # [N, 4]
              helper.make_node("Squeeze", ["scores", "i0"], ["scores2"]),  # [C, A]
              helper.make_node("Concat", ["cls_col", "box_col"], ["pair"], axis=1),
              helper.make_node("GatherND", ["scores2", "pair"], ["sel_scores"]),  # [N]
              helper.make_node("Unsqueeze", ["sel_scores", "i1"], ["sel_scores2"]),
              helper.make_node("Concat", ["sel_boxes", "sel_scores2"], ["dets2"], axis=1),
              helper.make_node("Unsqueeze", ["dets2", "i0"], ["dets"]),
              helper.make_node("Unsqueeze", ["cls_idx", "i0"], ["labels"])]
    return _model(nodes, inits, [helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["b", "n", 5]),
                                 helper.make_tensor_value_info("labels", TensorProto.INT64, ["b", "n"]),
                                 helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", "c", "a"])])


def frame():
    img = cv2.imread(str(coco_mini() / "000000196141.jpg"))
    return cv2.resize(img, (130, 50))  # a wide frame: letterboxing pads rows


def letterbox_ref(h, w, pad):
    """Scalar letterbox geometry, written out: scale, resized size, padding (top, left)."""
    r = min(H / h, W / w)
    nh, nw = int(round(h * r)), int(round(w * r))
    top, left = ((H - nh) // 2, (W - nw) // 2) if pad == "center" else (0, 0)
    return nh / h, nw / w, top, left


def finish_ref(cands, spec, img_hw, geo):
    """Reference tail: threshold, plain greedy NMS, scalar back-mapping and clipping, one box at a time."""
    sy, sx, top, left = geo
    cands = [c for c in cands if c[4] > spec["score_threshold"]]
    if not cands:
        return np.zeros((0, 5), np.float32)
    arr = np.array(cands, np.float32)
    keep = reference_nms(arr[:, :4], arr[:, 4], spec["iou_threshold"], max_out=spec["max_detections"])
    out = []
    for k in keep:
        x1, y1, x2, y2, s = arr[k]
        x1, x2 = min(max((x1 - left) / sx, 0), img_hw[1]), min(max((x2 - left) / sx, 0), img_hw[1])
        y1, y2 = min(max((y1 - top) / sy, 0), img_hw[0]), min(max((y2 - top) / sy, 0), img_hw[0])
        if x2 > x1 and y2 > y1:
            out.append([x1, y1, x2 - x1, y2 - y1, s])
    return np.array(out, np.float32).reshape(-1, 5)


def yolox_ref(raw, spec):
    cands, a = [], 0
    for s in STRIDES:
        for gy in range(H // s):
            for gx in range(W // s):
                tx, ty, tw, th, obj = raw[0, a, :5]
                cx, cy = (tx + gx) * s, (ty + gy) * s
                bw, bh = math.exp(tw) * s, math.exp(th) * s
                cands.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2,
                              obj * raw[0, a, 5 + spec.get("person_class", 0)]])
                a += 1
    assert a == raw.shape[1]
    return cands


def yolov8_ref(raw, spec):
    cands = []
    for a in range(raw.shape[2]):
        cx, cy, bw, bh = raw[0, :4, a]
        cands.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, raw[0, 4 + spec.get("person_class", 0), a]])
    return cands


BASE = {"input_size": [H, W], "layout": "NCHW", "color": "bgr", "resize": "letterbox", "mean": [0, 0, 0],
        "std": [1, 1, 1], "iou_threshold": 0.45, "max_detections": 30}


@pytest.mark.parametrize("person", [0, 2])
def test_yolox_matches_reference(person):
    spec = dict(BASE, head="yolox", outputs=["output"], strides=list(STRIDES), pad="corner", score_threshold=0.25,
                person_class=person)
    img = frame()
    det = Detector(OrtSession(yolox_model(), ["output"]), spec)
    got = det.detect(img)
    batch, _ = prepare(img, (H, W), resize="letterbox", pad="corner", color="bgr", layout="NCHW")
    raw = det.session.run(batch)[0]
    assert raw.shape == (1, sum((H // s) * (W // s) for s in STRIDES), 5 + C)
    want = finish_ref(yolox_ref(raw, spec), spec, img.shape[:2], letterbox_ref(*img.shape[:2], "corner"))
    assert 3 <= len(want) <= 30  # a real decision: some kept, some suppressed
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_yolox_already_decoded_matches_raw():
    """`decoded: true` takes (cx, cy, w, h) directly: feeding the raw head's decoded values gives the same boxes."""
    spec = dict(BASE, head="yolox", outputs=["output"], strides=list(STRIDES), score_threshold=0.25)
    img = frame()
    sess = OrtSession(yolox_model(), ["output"])
    raw_det = Detector(sess, spec)
    want = raw_det.detect(img)
    batch, geom = raw_det.prepare(img)
    raw = sess.run(batch)[0].copy()
    cands = np.array(yolox_ref(raw, spec), np.float32)
    raw[0, :, 0] = (cands[:, 0] + cands[:, 2]) / 2
    raw[0, :, 1] = (cands[:, 1] + cands[:, 3]) / 2
    raw[0, :, 2] = cands[:, 2] - cands[:, 0]
    raw[0, :, 3] = cands[:, 3] - cands[:, 1]
    got = Detector(None, dict(spec, decoded=True)).decode([raw], geom)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_yolov8_matches_reference():
    spec = dict(BASE, head="yolov8", outputs=["output"], pad="center", color="rgb", mean=[0, 0, 0],
                std=[255, 255, 255], score_threshold=0.3, person_class=1)
    img = frame()
    det = Detector(OrtSession(yolov8_model(), ["output"]), spec)
    got = det.detect(img)
    batch, _ = prepare(img, (H, W), resize="letterbox", pad="center", color="rgb", std=(255, 255, 255),
                       layout="NCHW")
    raw = det.session.run(batch)[0]
    want = finish_ref(yolov8_ref(raw, spec), spec, img.shape[:2], letterbox_ref(*img.shape[:2], "center"))
    assert 3 <= len(want) <= 30
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_end2end_matches_reference_and_onnx_nms():
    """The end-to-end graph's own NMS (onnxruntime's NonMaxSuppression) keeps what edge_pose's NMS keeps on the
    same head, and the end2end decoder maps its person rows back like the reference."""
    spec = dict(BASE, head="end2end", outputs=["dets", "labels"], pad="center", std=[255] * 3, score_threshold=0.3,
                person_class=1, max_detections=50)
    img = frame()
    sess = OrtSession(yolov8_model(end2end=True), ["dets", "labels", "output"])
    batch, _ = prepare(img, (H, W), resize="letterbox", pad="center", color="bgr", std=(255, 255, 255),
                       layout="NCHW")
    dets, labels, raw = sess.run(batch)
    person = labels[0] == 1
    assert person.sum() >= 3 and (~person).sum() >= 1
    # the same person candidates through edge_pose's NMS: the same boxes, in the same order
    cands = np.array(yolov8_ref(raw, spec), np.float32)
    keep = nms(cands[:, :4], cands[:, 4], 0.45, max_out=50)
    keep = keep[cands[keep, 4] > 0.3]
    np.testing.assert_allclose(dets[0][person], cands[keep], rtol=1e-6, atol=1e-5)
    got = Detector(OrtSession(yolov8_model(end2end=True), ["dets", "labels"]), spec).detect(img)
    sy, sx, top, left = letterbox_ref(*img.shape[:2], "center")
    rows = dets[0][person]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    want = []
    for x1, y1, x2, y2, s in rows:
        x1, x2 = min(max((x1 - left) / sx, 0), img.shape[1]), min(max((x2 - left) / sx, 0), img.shape[1])
        y1, y2 = min(max((y1 - top) / sy, 0), img.shape[0]), min(max((y2 - top) / sy, 0), img.shape[0])
        if x2 > x1 and y2 > y1:
            want.append([x1, y1, x2 - x1, y2 - y1, s])
    np.testing.assert_allclose(got, np.array(want, np.float32), rtol=1e-5, atol=1e-3)


def test_letterbox_geometry_round_trip():
    img = np.zeros((50, 130, 3), np.uint8)
    img[10:20, 30:60] = 255  # a white box, found again at its place after letterbox + back-mapping
    for pad in ("corner", "center"):
        x, geom = prepare(img, (H, W), resize="letterbox", pad=pad, color="bgr")
        ys, xs = np.nonzero(x[0, :, :, 0] > 128)
        back = geom.to_image(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32))[0]
        np.testing.assert_allclose(back, [30, 10, 60, 20], atol=1.5)
        pad_px = x[0, :, :, 0][(np.arange(H)[:, None] < geom.pad[0]) | (np.arange(H)[:, None] >= geom.pad[0] +
                                                                         round(50 * geom.scale[0]))
                               & np.ones((1, W), bool)]
        assert pad_px.size > 0 and np.all(pad_px == 114)


def test_bad_specs_and_outputs_are_one_line():
    good = dict(BASE, head="yolox", outputs=["output"], strides=list(STRIDES))
    for bad, word in [({"head": "rcnn"}, "head"), ({"strides": []}, "strides"), ({"input_size": [64]}, "input_size"),
                      ({"outputs": ["a", "b"]}, "output"), ({"std": [1, 0, 1]}, "std"), ({"iou": 0.5}, "unknown"),
                      ({"score_threshold": 2}, "score_threshold")]:
        with pytest.raises(DetectSpecError, match=word) as e:
            Detector(None, dict(good, **bad))
        assert "\n" not in str(e.value)
    for anchors in (np.zeros((5, 3)), [[1, 2], [3]], "anchors.npy"):
        with pytest.raises(DetectSpecError, match="anchors"):
            Detector(None, dict(good, head="ssd", outputs=["a", "b"], anchors=anchors))
    with pytest.raises(DetectSpecError, match="box_scale"):
        Detector(None, dict(good, head="ssd", outputs=["a", "b"], anchors=np.ones((5, 4)), box_scale="10,10"))
    det = Detector(None, good)
    _, geom = det.prepare(frame())
    with pytest.raises(DetectOutputError, match=r"output 'output' has shape \[1, 10, 8\]"):
        det.decode([np.zeros((1, 10, 8), np.float32)], geom)
    with pytest.raises(DetectInputError, match="uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32))
