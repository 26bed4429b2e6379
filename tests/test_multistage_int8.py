"""Int8 mitigations for multi-stage models, on the shared CPM frozen graph (6 stages, each reading the concat of the
backbone's features and the previous stage's heatmaps): the float-exact split of concat-fed convs, and keeping the
refinement stages in float (TFLite selective quantisation, NNCF ignored scope), as the guard plans them."""
from __future__ import annotations

import numpy as np
import pytest

from converters.export.tflite import export_tflite
from converters.sources.split_concat import applies, split_concat_convs

from shared import coco_mini
from test_export_tflite import CALIB, EVAL, rel_l2, run_tflite


@pytest.fixture(scope="session")
def split_pb(pb_source, tmp_path_factory):
    return split_concat_convs(pb_source, tmp_path_factory.mktemp("split"))


def _concat_fed_convs(graph_def) -> int:
    readers = {}
    for n in graph_def.node:
        for i in n.input:
            readers.setdefault(i.split(":")[0], []).append(n.op)
    return sum(n.op == "ConcatV2" and readers.get(n.name) == ["Conv2D"] for n in graph_def.node)


def test_split_is_exact_in_float_and_keeps_provenance(pb_source, split_pb, pb_crops):
    assert applies(pb_source) and _concat_fed_convs(pb_source.graph_def) == 5
    assert _concat_fed_convs(split_pb.graph_def) == 0 and "5 concat-fed" in split_pb.rewrite_note
    ref, got = pb_source.run(pb_crops[EVAL]), split_pb.run(pb_crops[EVAL])
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    assert (split_pb.sha256, split_pb.path) == (pb_source.sha256, pb_source.path)  # provenance: the user's file
    assert split_pb.pb_path != pb_source.pb_path and pb_source.graph_def is not split_pb.graph_def


def test_split_does_not_apply_to_other_sources(onnx_source):
    assert not applies(onnx_source)
    assert split_concat_convs(onnx_source, None) is None


def test_split_graph_quantises_better(pb_source, split_pb, pb_crops, tmp_path):
    """The reason the guard tries it: heatmaps and features get their own int8 scales (measured 0.77 -> 0.90 OKS
    agreement on coco-mini; here the heatmap error of each int8 model against the float source)."""
    ref = pb_source.run(pb_crops[EVAL])
    errors = {}
    for name, src in (("original", pb_source), ("split", split_pb)):
        q = export_tflite(src, "int8", tmp_path / f"{name}.tflite", calib_inputs=pb_crops[CALIB])
        errors[name] = rel_l2(run_tflite(q, pb_crops[EVAL], "NHWC"), ref)
    assert errors["split"] < 0.8 * errors["original"], errors


def test_refinement_stages_stay_float_in_tflite(pb_source, pb_crops, tmp_path):
    q = export_tflite(pb_source, "int8", tmp_path / "m.tflite", calib_inputs=pb_crops[CALIB],
                      float_ops=("refinement_stages",))
    from converters.export.tflite_inspect import read_ops

    ops, _ = read_ops(q.files[q.model_file].read_bytes())
    convs = [o for o in ops if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    float_convs = [o for o in convs if o.out_dtype == "float32"]
    assert all("stage_" in o.outputs[0] and "stage_0_" not in o.outputs[0] for o in float_convs)
    assert any("stage_5_mv1_2_pointwise" in o.outputs[0] for o in float_convs)
    assert all(o.out_dtype == "int8" for o in convs if "MobilenetV2" in o.outputs[0].split(";")[-1])


def test_openvino_scopes_of_original_and_split_graphs(pb_source, split_pb):
    from collections import Counter

    from converters.export.openvino import openvino_float_scopes
    from converters.export.openvino_read import read_static_model

    stages = openvino_float_scopes(pb_source)["refinement_stages"]
    kinds = {op.get_friendly_name(): op.get_type_name() for op in read_static_model(pb_source).get_ordered_ops()}
    counts = Counter(kinds[n] for n in stages)
    # stages 1-5: their 5 input concats and 65 convs (of 145); the backbone and stage 0 stay quantised
    assert (counts["Concat"], counts["Convolution"] + counts["GroupConvolution"]) == (5, 65)
    assert "Convolutional_Pose_Machine/stage_5_out" in stages
    assert not any(n.startswith("MobilenetV2") or "stage_0_" in n for n in stages)
    # after the split, each stage head feeds a conv directly: the heatmap path still finds all six heads
    path = openvino_float_scopes(split_pb)["heatmap_path"]
    kinds = {op.get_friendly_name(): op.get_type_name() for op in read_static_model(split_pb).get_ordered_ops()}
    # 6 heads + the 5 split halves reading them, and the final resize
    assert Counter(kinds[n] for n in path) == {"Convolution": 11, "Interpolate": 1}


def test_guard_plans_try_the_split_then_the_stages(pb_source, onnx_source):
    from converters.guard import STAGES_AND_DEPTHWISE_LABEL, STAGES_LABEL, openvino_plan, tflite_plan

    for plan in (tflite_plan(pb_source), openvino_plan(pb_source)):
        labels = [m.label for m in plan]
        rewritten = [i for i, m in enumerate(plan) if m.rewrite == "split_concat"]
        stages = next(i for i, label in enumerate(labels) if label.endswith(STAGES_LABEL))
        # whole-model rungs on the original, again on the split graph, then the stages (split graph only)
        assert 0 < min(rewritten) < stages and rewritten == list(range(min(rewritten), len(plan)))
        assert any(STAGES_AND_DEPTHWISE_LABEL in label for label in labels[stages + 1:])
    assert not any(m.rewrite for m in tflite_plan(onnx_source))
    ov = openvino_plan(pb_source)
    assert [m.options for m in ov if STAGES_AND_DEPTHWISE_LABEL in m.label] == [
        {"ignored_scope": ["refinement_stages", "depthwise_convs"], "ranges": "minmax"}]


def test_openvino_depthwise_scope_and_minmax_ranges(pb_source, pb_crops, tmp_path):
    """depthwise_convs names exactly the CPM backbone's 52 depthwise convs, and a model quantised with them in float and
    min-max ranges has no FakeQuantize in front of them and wider activation ranges than NNCF's default (which
    averages per-sample extremes, so it clips the largest activations, heatmap peaks among them)."""
    import openvino as ov

    from converters.export.openvino import export_openvino, openvino_float_scopes
    from converters.export.openvino_read import read_static_model

    names = openvino_float_scopes(pb_source)["depthwise_convs"]
    ops = {op.get_friendly_name(): op for op in read_static_model(pb_source).get_ordered_ops()}
    assert len(names) == 52 and all(ops[n].get_type_name() == "GroupConvolution" for n in names)
    assert all(ops[n].input_value(1).get_partial_shape().to_shape()[2] == 1 for n in names)

    def fq_highs(res):
        model = ov.Core().read_model(str(res.files["model.xml"]))
        highs = {}
        for op in model.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
                consumers = {t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs()}
                highs[frozenset(consumers)] = float(np.max(op.input_value(2).get_node().get_data()))
        return highs

    calib = pb_crops[CALIB]
    default = export_openvino(pb_source, "int8", tmp_path / "default", calib_inputs=calib)
    minmax = export_openvino(pb_source, "int8", tmp_path / "minmax", calib_inputs=calib,
                             ignored_scope="depthwise_convs", ranges="minmax")
    assert minmax.extra["ranges"] == "minmax" and "activation ranges minmax" in minmax.notes[-1]
    d, m = fq_highs(default), fq_highs(minmax)
    assert sum(len(set(names) & consumers) for consumers in d) == 52  # by default each depthwise conv reads int8
    assert not any(set(names) & consumers for consumers in m)  # here none does
    shared = [k for k in m if k in d]
    print(f"{len(shared)} activation quantisers in both; wider with min-max: {sum(m[k] > d[k] * 1.01 for k in shared)}")
    assert len(shared) > 20
    assert all(m[k] >= d[k] * (1 - 1e-5) for k in shared) and sum(m[k] > d[k] * 1.01 for k in shared) > len(shared) / 2


@pytest.fixture(scope="module")
def coco_mini_pipeline(pb_source, tmp_path_factory):
    """The guard's pipeline on the shared CPM: calibrated on coco-mini's detector boxes, judged on its 12 ground-truth
    crops (as benchmarks/shared_fidelity.py and the closing note's figures)."""
    from calibration.fidelity import Thresholds
    from calibration.plan import calibration_and_eval
    from converters.convert import Conversion

    data = coco_mini()
    calib, evaluation = calibration_and_eval(pb_source.input.size, data / "test_coco.json",
                                             boxes=data / "test_coco_det_AP_H_56.json")
    return Conversion(pb_source, calib, evaluation, tmp_path_factory.mktemp("pipeline"), Thresholds(), 0, None, None,
                    lambda _: None)


def _figures(attempt) -> dict:
    return {k: round(v, 4) for k, v in attempt.summary().items() if isinstance(v, float)}


def test_openvino_int8_of_the_cpm_passes_on_the_guards_last_rung(pb_source, coco_mini_pipeline):
    """Issue #4's int8 bar: the NNCF default misses it (OKS agreement ~0.76), the rung the guard ends on passes
    (measured 0.966, AP drop 0.24) with under half the default's heatmap error."""
    from converters.guard import STAGES_AND_DEPTHWISE_LABEL, openvino_plan

    plan = openvino_plan(pb_source)
    default = coco_mini_pipeline.attempt("openvino", "int8", plan[0])
    rung = next(m for m in plan if STAGES_AND_DEPTHWISE_LABEL in m.label)
    kept = coco_mini_pipeline.attempt("openvino", "int8", rung)
    print("default", _figures(default), "kept", _figures(kept))
    assert not default.passed and kept.passed, (default.summary(), kept.summary())
    assert kept.figures["heatmap_rel_l2"] < 0.5 * default.figures["heatmap_rel_l2"]


def test_tflite_int8_of_the_cpm_passes_with_the_stages_in_float(pb_source, coco_mini_pipeline):
    """The same bar for TFLite: the rung the guard keeps (split graph, refinement stages in float) passes; measured
    0.952 OKS agreement, AP drop -0.73 - narrowly, which is why this is asserted on every run."""
    from converters.guard import STAGES_LABEL, tflite_plan

    rung = next(m for m in tflite_plan(pb_source) if m.label.endswith(STAGES_LABEL))
    kept = coco_mini_pipeline.attempt("tflite", "int8", rung)
    print("kept", _figures(kept))
    assert rung.rewrite == "split_concat" and kept.passed, kept.summary()
