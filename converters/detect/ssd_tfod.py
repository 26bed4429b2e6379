"""A TF Object Detection API SSD frozen graph -> the deployable middle: preprocessed image in, raw head out.

The full graph begins with a `Preprocessor` (a `map` over the batch: a while loop that converters cannot take)
and ends with a `Postprocessor` (box decoding, per-class NMS in another while loop). The cut keeps what is between:
input = the Preprocessor's output (a float placeholder of its static shape), outputs = the raw box encodings and
class logits. Everything the runtime's decoder needs is read from the graph itself, never assumed: the input size
and [-1, 1] scaling from the Preprocessor's constants, the resize kernel and its sampling flags, the box coder's
scale factors from the Decode divisions, the score conversion (the op after `scale_logits`) and logit scale, the
background column (the Slice that drops it), NMS IoU / score threshold / max detections, and the anchors, by
evaluating the graph's own `MultipleGridAnchorGenerator` constant subgraph once.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import SourceError

INPUT = "normalized_input_image_tensor"
BOXES = "raw_outputs/box_encodings"
CLASSES = "raw_outputs/class_predictions"
_PRE_OUT = "Preprocessor/sub"
_ANCHORS = "Concatenate/concat"
_NMS = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"


@dataclass
class SsdCut:
    graph_def: Any  # tf.compat.v1.GraphDef: INPUT -> BOXES [1, A, 4], CLASSES [1, A, C + 1]
    input_shape: tuple[int, int, int, int]  # (1, h, w, 3) NHWC
    anchors: np.ndarray  # [A, 4] ycenter, xcenter, h, w, normalised
    facts: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]

    def write(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.graph_def.SerializeToString())
        return path

    def spec(self, score_threshold: float | None = None, max_detections: int | None = None) -> dict[str, Any]:
        """The runtime Detector's spec for this graph (edge_pose.detect.spec), from the graph's facts."""
        f = self.facts
        return {
            "head": "ssd", "input_size": list(self.input_size), "outputs": [BOXES, CLASSES], "layout": "NHWC",
            "color": "rgb", "mean": [f["mean"]] * 3, "std": [f["std"]] * 3, "resize": "stretch",
            "sampling": f["sampling"], "person_class": f["person_class"],
            "score_threshold": f["score_threshold"] if score_threshold is None else score_threshold,
            "iou_threshold": f["iou_threshold"],
            "max_detections": f["max_detections"] if max_detections is None else max_detections,
            "pre_nms_top_k": len(self.anchors), "anchors": self.anchors, "box_scale": f["box_scale"],
            "score_conversion": f["score_conversion"], "logit_scale": f["logit_scale"],
        }


def read_graph_def(pb_path):
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    pb_path = Path(pb_path)
    try:
        data = pb_path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{pb_path}: cannot read ({exc.strerror or exc})") from None
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError):
        raise SourceError(f"{pb_path}: not a TensorFlow GraphDef (protobuf parse failed)") from None
    return gd


class _Graph:
    def __init__(self, gd, where: Path):
        self.gd, self.where = gd, where
        self.nodes = {n.name: n for n in gd.node}

    def node(self, name: str, what: str):
        n = self.nodes.get(name)
        if n is None:
            raise SourceError(f"{self.where}: no node {name!r} ({what}); not a TF Object Detection API SSD graph?")
        return n

    def const(self, name: str, what: str) -> np.ndarray:
        import tensorflow as tf

        n = self.node(name, what)
        if n.op != "Const":
            raise SourceError(f"{self.where}: {name} ({what}) is a {n.op}, expected a constant")
        return tf.make_ndarray(n.attr["value"].tensor)

    def consumers(self, name: str) -> list:
        return [n for n in self.gd.node if any(i.lstrip("^").split(":")[0] == name for i in n.input)]

    def const_input(self, node) -> float:
        """The scalar constant among a binary op's inputs."""
        for i in node.input:
            src = self.nodes.get(i.split(":")[0])
            if src is not None and src.op == "Const":
                return float(self.const(src.name, f"operand of {node.name}"))
        raise SourceError(f"{self.where}: {node.name} has no constant operand")


def read_facts(g: _Graph) -> dict[str, Any]:
    """What the decoder and preprocessing need, each read from the node that does it."""
    facts: dict[str, Any] = {}
    mul = g.const("Preprocessor/mul/x", "the Preprocessor's pixel scale")
    sub = g.const("Preprocessor/sub/y", "the Preprocessor's offset")
    # x * mul - sub  ==  (x - sub / mul) / (1 / mul): mean/std in 0..255 units
    facts["mean"], facts["std"] = float(sub / mul), float(1 / mul)
    resize = [n for n in g.gd.node if n.name.startswith("Preprocessor/") and n.op.startswith("Resize")]
    if len(resize) != 1 or resize[0].op != "ResizeBilinear":
        raise SourceError(f"{g.where}: expected one ResizeBilinear in the Preprocessor, found "
                          f"{[n.op for n in resize] or 'none'}")
    r = resize[0]
    if r.attr["align_corners"].b:
        raise SourceError(f"{g.where}: {r.name} uses align_corners=True, which the runtime does not reproduce")
    facts["sampling"] = "half_pixel" if r.attr["half_pixel_centers"].b else "tf_legacy"
    size = g.const(r.input[1].split(":")[0], "the resize target size")
    facts["input_size"] = [int(size[0]), int(size[1])]
    # the box coder: Decode/unstack:k divided by the k-th scale factor (ty, tx, th, tw)
    scale = []
    for k in range(4):
        src = "Postprocessor/Decode/unstack" + (f":{k}" if k else "")
        div = [n for n in g.consumers("Postprocessor/Decode/unstack") if n.op == "RealDiv" and n.input[0] == src]
        if len(div) != 1:
            raise SourceError(f"{g.where}: cannot find the box coder's division of encoding {k}")
        scale.append(g.const_input(div[0]))
    facts["box_scale"] = scale
    conv = g.consumers("Postprocessor/scale_logits")
    ops = {n.op for n in conv}
    if "Sigmoid" in ops:
        facts["score_conversion"] = "sigmoid"
    elif "Softmax" in ops:
        facts["score_conversion"] = "softmax"
    elif "Identity" in ops:
        facts["score_conversion"] = "identity"
    else:
        raise SourceError(f"{g.where}: unknown score conversion after scale_logits ({sorted(ops)})")
    facts["logit_scale"] = g.const_input(g.node("Postprocessor/scale_logits", "the logit scale"))
    begin = g.const("Postprocessor/Slice/begin", "the background-dropping slice")
    facts["background_columns"] = int(begin[-1])
    facts["person_class"] = int(begin[-1])  # class 1 (person) in the label map is the first non-background column
    facts["iou_threshold"] = float(g.const(_NMS + "non_max_suppression/iou_threshold", "NMS IoU threshold"))
    facts["score_threshold"] = float(g.const(_NMS + "non_max_suppression/score_threshold", "NMS score threshold"))
    facts["max_detections_per_class"] = int(g.const(_NMS + "Minimum/x", "NMS max per class"))
    facts["max_detections"] = int(g.const(_NMS + "Minimum_1/x", "NMS max total"))
    facts["nms_then_clip"] = True  # NonMaxSuppressionV3 reads the unclipped boxes; ClipToWindow follows it
    return facts


def _anchors(gd, where: Path) -> np.ndarray:
    """Evaluate the anchor generator (a constant subgraph) once: [A, 4] ymin, xmin, ymax, xmax -> yc, xc, h, w."""
    import tensorflow as tf

    sub = tf.compat.v1.graph_util.extract_sub_graph(gd, [_ANCHORS])
    if any(n.op == "Placeholder" for n in sub.node):
        raise SourceError(f"{where}: the anchors ({_ANCHORS}) depend on the image; expected a constant subgraph")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(sub, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        corners = sess.run(_ANCHORS + ":0")
    corners = np.asarray(corners, np.float32).reshape(-1, 4)
    ymin, xmin, ymax, xmax = corners.T
    h, w = ymax - ymin, xmax - xmin
    return np.stack([ymin + h / 2, xmin + w / 2, h, w], axis=1).astype(np.float32)


def cut_ssd(pb_path) -> SsdCut:
    """Read the frozen graph and return the cut GraphDef, its anchors and the facts its decoder needs."""
    import tensorflow as tf

    pb_path = Path(pb_path)
    gd = read_graph_def(pb_path)
    g = _Graph(gd, pb_path)
    for name, what in ((_PRE_OUT, "the Preprocessor's output"), ("concat", "raw box encodings"),
                       ("concat_1", "raw class logits"), (_ANCHORS, "the anchors")):
        g.node(name, what)
    facts = read_facts(g)
    h, w = facts["input_size"]
    shape = (1, h, w, 3)
    cut = tf.compat.v1.GraphDef()
    cut.versions.CopyFrom(gd.versions)
    cut.library.CopyFrom(gd.library)
    for n in gd.node:
        if n.name == _PRE_OUT:
            continue
        new = cut.node.add()
        new.CopyFrom(n)
        for k, i in enumerate(new.input):
            if i.lstrip("^").split(":")[0] == _PRE_OUT:
                new.input[k] = ("^" if i.startswith("^") else "") + INPUT
    ph = cut.node.add()
    ph.name, ph.op = INPUT, "Placeholder"
    ph.attr["dtype"].type = tf.float32.as_datatype_enum
    ph.attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    sq = cut.node.add()  # [1, A, 1, 4] -> [1, A, 4], as the API's own TFLite export names and shapes it
    sq.name, sq.op = BOXES, "Squeeze"
    sq.input.append("concat")
    sq.attr["T"].type = tf.float32.as_datatype_enum
    sq.attr["squeeze_dims"].list.i.append(2)
    idn = cut.node.add()
    idn.name, idn.op = CLASSES, "Identity"
    idn.input.append("concat_1")
    idn.attr["T"].type = tf.float32.as_datatype_enum
    cut = tf.compat.v1.graph_util.extract_sub_graph(cut, [BOXES, CLASSES])
    left = sorted({n.name.split("/")[0] for n in cut.node if n.name.split("/")[0] in ("Preprocessor",
                                                                                       "Postprocessor")})
    if left:
        raise SourceError(f"{pb_path}: the cut still contains {', '.join(left)} nodes")
    anchors = _anchors(gd, pb_path)
    facts["anchors"] = len(anchors)
    facts["nodes"] = {"original": len(gd.node), "cut": len(cut.node)}
    return SsdCut(graph_def=copy.deepcopy(cut), input_shape=shape, anchors=anchors, facts=facts, source=pb_path)


def tf_session(graph_def, threads: int | None = None):
    """A TF1 session over a GraphDef (for the original graph, and as the reference runtime of the cut)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto()
    if threads:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = 1
    return tf.compat.v1.Session(graph=graph, config=config)


class CutSession:
    """The cut graph in TF as a Detector session: run(batch) -> [box encodings, class logits]."""

    def __init__(self, cut: SsdCut, threads: int | None = None):
        self.sess = tf_session(cut.graph_def, threads)

    def run(self, batch):
        return self.sess.run([BOXES + ":0", CLASSES + ":0"], {INPUT + ":0": batch})


class OriginalGraph:
    """The untouched frozen graph: image uint8 RGB [1, H, W, 3] -> TF's own detections (and its preprocessed input)."""

    def __init__(self, pb_path, threads: int | None = None):
        self.sess = tf_session(read_graph_def(pb_path), threads)

    def run(self, image_rgb: np.ndarray, with_input: bool = False) -> dict[str, np.ndarray]:
        names = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
        fetch = [n + ":0" for n in names] + ([_PRE_OUT + ":0"] if with_input else [])
        out = self.sess.run(fetch, {"image_tensor:0": image_rgb[None]})
        res = dict(zip(names, out))
        if with_input:
            res["preprocessed"] = out[-1]
        return res
