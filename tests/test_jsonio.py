"""Strict JSON out: NaN/Infinity never reach a results file, and a refused write leaves no file behind."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edge_pose import jsonio


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_dumps_refuses_non_finite_numbers_and_says_where(bad):
    with pytest.raises(ValueError, match=r"non-finite number \(NaN or Infinity\) at \$\.people\[1\]\.score"):
        jsonio.dumps({"people": [{"score": 1.0}, {"score": bad}]})
    assert jsonio.dumps({"a": [1, 2.5]}) == json.dumps({"a": [1, 2.5]})


def test_finite_sanitises_and_write_is_atomic(tmp_path):
    assert [jsonio.finite(v, 0.0) for v in (1, np.float32(2.5), float("nan"), "x", None)] == [1.0, 2.5, 0.0, 0.0, 0.0]
    path = tmp_path / "out.json"
    jsonio.write(path, {"ok": 1})
    with pytest.raises(ValueError):
        jsonio.write(path, {"ok": float("nan")})
    assert json.loads(path.read_text()) == {"ok": 1}  # the old file stands; no temporary left
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_predict_result_of_a_nan_person_is_finite():
    from edge_pose.cli.predict import _coco_result

    person = SimpleNamespace(keypoints=np.array([[np.nan, 2.0], [np.inf, 4.0]]), scores=np.array([0.5, np.nan]),
                             score=float("nan"), box=np.array([0, 0, np.inf, 5.0]))
    row = _coco_result(person, 7)
    assert row["keypoints"] == [0.0, 2.0, 0.5, 0.0, 4.0, 0.0] and row["score"] == 0.0
    json.loads(jsonio.dumps(row))


def test_nesting_is_measured_before_parsing_even_with_the_recursion_guard_disabled(tmp_path):
    """onnx2tf raises the recursion limit to 2**31 - 1 at import; json.loads would then overflow the C stack on a
    deeply nested file. The depth is measured first, on the text."""
    import sys

    from edge_pose.bundle import BundleError, load_bundle
    from edge_pose.cocofile import CocoFileError, read_json
    from edge_pose.jsonio import nesting_depth

    assert nesting_depth('{"a": [1, {"b": "[[[[{{"}]}') == 3  # brackets inside strings do not count
    deep = "[" * 200_000 + "]" * 200_000
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "edge_pose.json").write_text('{"schema": ' + deep + "}")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(2**31 - 1)
    try:
        with pytest.raises(CocoFileError, match="nested too deeply"):
            read_json(tmp_path / "deep.json")
        with pytest.raises(BundleError, match="nested 200001 levels deep"):
            load_bundle(tmp_path / "b")
    finally:
        sys.setrecursionlimit(old)
