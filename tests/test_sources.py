"""Sources: facts read from real model files, facts the user must state, and the reference inference."""
from __future__ import annotations

import json

import numpy as np
import pytest
from shared import CPM_PB, CPM_TFLITE, SIMPLEBASELINE_ONNX, shared
from source_fixtures import IMAGENET_MEAN, IMAGENET_STD

from converters.errors import SourceError
from converters.sources import load_source


def test_onnx_facts_from_file(onnx_source):
    s = onnx_source
    assert s.kind == "onnx"
    assert (s.input.name, s.input.layout, s.input.size) == ("data", "NCHW", (256, 192))
    assert (s.output.name, s.output.layout, s.output.size) == ("hybridsequential0_conv7_fwd", "NCHW", (64, 48))
    assert s.input.mean == IMAGENET_MEAN and s.input.color == "rgb"
    assert len(s.keypoints.names) == 17 and not s.untrained and len(s.sha256) == 64


def test_onnx_prepared_copy_is_modern_and_equivalent(onnx_source, onnx_crops):
    import onnx
    import onnxruntime as ort

    prepared = onnx.load(str(onnx_source.onnx_path))
    assert max(o.version for o in prepared.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert [i.name for i in prepared.graph.input] == ["data"]
    assert not any(a.name == "spatial" for n in prepared.graph.node for a in n.attribute)
    original = ort.InferenceSession(str(shared(*SIMPLEBASELINE_ONNX)), providers=["CPUExecutionProvider"])
    want = np.concatenate([original.run(None, {"data": x[None]})[0] for x in onnx_crops[:4]])
    got = onnx_source.run(onnx_crops[:4])
    assert got.shape == (4, 17, 64, 48) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_frozen_graph_facts_and_reference_match_the_published_tflite(pb_source, pb_crops):
    from ai_edge_litert.interpreter import Interpreter

    s = pb_source
    assert s.kind == "frozen_graph" and s.pb_path.name == "model.pb"
    assert (s.input.name, s.input.layout, s.input.size, s.input.color) == ("image", "NHWC", (192, 192), "bgr")
    assert (s.output.name, s.output.layout, s.output.size) == ("Convolutional_Pose_Machine/stage_5_out", "NHWC",
                                                              (96, 96))
    got = s.run(pb_crops[:2])
    assert got.shape == (2, 14, 96, 96)
    interp = Interpreter(model_path=str(shared(*CPM_TFLITE)))
    interp.allocate_tensors()
    for i in range(2):
        interp.set_tensor(interp.get_input_details()[0]["index"], pb_crops[i:i + 1])
        interp.invoke()
        ref = interp.get_tensor(interp.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
        assert np.abs(got[i:i + 1] - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("parts, given, needs", [
    (SIMPLEBASELINE_ONNX, {}, ["--color", "--mean", "--std", "--keypoints"]),
    (SIMPLEBASELINE_ONNX, {"color": "rgb", "mean": 0, "std": 1}, ["--keypoints"]),
    (CPM_PB, {"keypoints": "aic14"}, ["--color", "--mean", "--std"]),
])
def test_missing_facts_one_line_listing_the_flags(parts, given, needs):
    with pytest.raises(SourceError) as err:
        load_source(shared(*parts), **given)
    msg = str(err.value)
    assert "\n" not in msg and str(shared(*parts)) in msg
    assert all(flag in msg for flag in needs)
    assert "--layout" not in msg and "--input-size" not in msg  # the file says those


def test_contradicting_the_file_is_refused():
    with pytest.raises(SourceError, match="fixes input size 256,192"):
        load_source(shared(*SIMPLEBASELINE_ONNX), input_size=(128, 96), color="rgb", mean=0, std=1,
                    keypoints="coco17")
    with pytest.raises(SourceError, match="17"):  # 14 heatmaps cannot be COCO-17
        load_source(shared(*CPM_PB), color="bgr", mean=0, std=1, keypoints="coco17")
    with pytest.raises(SourceError, match="no node named"):
        load_source(shared(*CPM_PB), color="bgr", mean=0, std=1, keypoints="aic14", output="nope")


@pytest.mark.parametrize("name, content", [
    ("broken.onnx", b"\x08\x07garbage that is no protobuf\xff\xff"),
    ("broken.pb", b"\x0a\xffnot a graph"),
    ("empty.onnx", b""),
    ("model.tflite", b"TFL3"),
])
def test_unreadable_files_one_clear_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        load_source(path, color="rgb", mean=0, std=1, keypoints="coco17")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_non_standard_onnx_op_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyPose", ["x"], ["y"], domain="com.vendor")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.vendor", 1)])
    onnx.save(model, tmp_path / "custom.onnx")
    with pytest.raises(SourceError, match="com.vendor.FancyPose"):
        load_source(tmp_path / "custom.onnx", color="rgb", mean=0, std=1, keypoints="coco17")


def test_unknown_name_and_stray_checkpoint(tmp_path):
    with pytest.raises(SourceError, match="not a zoo model"):
        load_source("no-such-model-xyz")
    with pytest.raises(SourceError, match="zoo models only"):
        load_source(shared(*CPM_PB), checkpoint=tmp_path / "x.pth")


def test_keras_file_and_savedmodel_sources(tmp_path):
    """A small real Keras model saved as .keras and as a dynamic-batch SavedModel: facts and reference agree."""
    import keras

    inp = keras.Input((64, 48, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="head")(x)
    model = keras.Model(inp, x)
    model.save(tmp_path / "tiny.keras")
    model.export(str(tmp_path / "tiny_sm"), verbose=False)
    (tmp_path / "kp.json").write_text(json.dumps({"names": list("abcde"), "flip_pairs": [[1, 2]]}))
    facts = dict(color="rgb", mean=(1, 2, 3), std="4,5,6", keypoints=tmp_path / "kp.json")
    x = np.random.default_rng(0).normal(size=(3, 64, 48, 3)).astype(np.float32)
    want = np.asarray(model(x)).transpose(0, 3, 1, 2)
    k = load_source(tmp_path / "tiny.keras", **facts)
    assert (k.kind, k.input.size, k.output.name, k.output.size, k.input.std) == ("keras", (64, 48), "head",
                                                                               (16, 12), (4.0, 5.0, 6.0))
    np.testing.assert_allclose(k.run(x), want, atol=1e-6)
    sm = load_source(tmp_path / "tiny_sm", **facts)
    assert sm.kind == "savedmodel" and sm.output.size == (16, 12) and sm.keypoints.flip_pairs == [(1, 2)]
    np.testing.assert_allclose(sm.run(x), want, atol=1e-6)
    fixed = load_source(sm.saved_model_dir(), **facts)  # re-saved with a batch-1 signature
    assert fixed.fixed_batch == 1
    np.testing.assert_allclose(fixed.run(x), want, atol=1e-6)


def test_frozen_graph_with_two_outputs_needs_output(tmp_path):
    """A graph ending in two heatmap-like tensors: the user names one; without it the error lists both."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (1, 32, 24, 3), name="image")
        w = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 17)).astype(np.float32))
        y = tf.nn.conv2d(x, w, strides=4, padding="SAME")
        tf.nn.relu(y, name="heatmaps")
        tf.nn.sigmoid(y, name="scores")
    (tmp_path / "two.pb").write_bytes(graph.as_graph_def().SerializeToString())
    facts = dict(color="rgb", mean=0, std=1, keypoints="coco17")
    with pytest.raises(SourceError) as err:
        load_source(tmp_path / "two.pb", **facts)
    msg = str(err.value)
    assert "--output NAME" in msg and "heatmaps" in msg and "scores" in msg and "\n" not in msg
    src = load_source(tmp_path / "two.pb", output="heatmaps", **facts)
    assert (src.output.name, src.output.size, src.output.layout) == ("heatmaps", (8, 6), "NHWC")
    x = np.random.default_rng(1).normal(size=(2, 32, 24, 3)).astype(np.float32)
    assert src.run(x).shape == (2, 17, 8, 6) and (src.run(x) >= 0).all()
