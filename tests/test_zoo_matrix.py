"""Zoo models convert to their targets and the bundles run: a reduced conversion matrix.

The full matrix (all six zoo models to all eight targets, all 48 convert) is benchmarks/zoo_matrix.py; it takes
about an hour on the 2-core CI machine, and Lite-HRNet-30 alone to all eight targets 11-14 min. So CI checks every
zoo model not covered by another export test reaches both formats: Lite-HRNet-30 to TFLite and OpenVINO fp32, and
the two deep SimpleBaselines (R101, R152: the largest graphs and weights) to OpenVINO fp32 (their TFLite fp32 adds
~2.5 min and exercises nothing R50's export test does not). Lite-HRNet-18, SimpleBaseline-R50 and CPM have their
own export tests.

Seeded (untrained) weights, checked against their Keras source on real coco-mini crops. Every bundle is loaded (files
verified against their sha256) and run once on a real person crop through the runtime a device would use.
"""
from __future__ import annotations

import numpy as np
import pytest
from shared import coco_mini

from converters.convert import bundle_name
from edge_pose.bundle import load_bundle
from registry import FORMATS

MATRIX = {"litehrnet-30": [("tflite", "fp32"), ("openvino", "fp32")],
          "simplebaseline-r101": [("openvino", "fp32")], "simplebaseline-r152": [("openvino", "fp32")]}
CASES = [(model, fmt, p) for model, targets in MATRIX.items() for fmt, p in targets]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the first item converts Lite-HRNet-30


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """model -> bundles directory, or the conversion's exception; each model converted once, on first use."""
    data = coco_mini()
    out = tmp_path_factory.mktemp("zoo-matrix")
    done: dict = {}

    def get(model: str):
        if model not in done:
            from converters.convert import convert

            targets = MATRIX[model]
            try:  # one call per model: --format both, every precision asked (OpenVINO's missing ones skipped)
                convert(model, out, formats=sorted({f for f, _ in targets}),
                        precisions=list(dict.fromkeys(p for _, p in targets)),
                        calib=str(data / "test_coco.json"), boxes=str(data / "test_coco_det_AP_H_56.json"),
                        calib_size=24, allow_degraded=True)
                done[model] = out
            except Exception as exc:  # every target of the model fails with it, not only the first test
                done[model] = exc
        if isinstance(done[model], Exception):
            raise done[model]
        return done[model]

    return get


@pytest.fixture(scope="module")
def person_image():
    import cv2

    return cv2.imread(str(coco_mini() / "000000000785.jpg"))  # one person, box from the COCO ground truth


@pytest.mark.parametrize("model,fmt,precision", CASES, ids=[f"{m}-{f}-{p}" for m, f, p in CASES])
def test_zoo_model_converts_and_runs(converted, person_image, model, fmt, precision):
    from edge_pose.preprocess import crop_people, to_model_input
    from edge_pose.select import open_best

    path = converted(model) / bundle_name(model, fmt, precision)
    assert path.is_dir(), f"no bundle {path.name}: {sorted(p.name for p in path.parent.iterdir())}"
    m = load_bundle(path).manifest
    assert (m.format, m.precision, m.model["name"]) == (fmt, precision, model)
    assert m.model["untrained"] is True  # seeded weights, and the manifest says so

    fid = m.fidelity  # fp32 is the same function as its Keras source, trained or not
    assert fid["passed"] is True and fid["degraded"] is False and fid["heatmap_max_rel_diff"] <= 1e-4, fid

    backend, accelerator = FORMATS[fmt].backend, FORMATS[fmt].accelerator
    loaded = open_best(path, backend=backend, accelerator=accelerator)
    assert loaded.bundle.path == path
    crop = crop_people(person_image, np.array([[280.79, 44.73, 218.7, 346.68]]), m.input.size)
    heatmaps = loaded.session.infer(to_model_input(crop.images, m.input))
    k = len(m.keypoints.names)
    assert heatmaps.shape == (1, k, m.output.heatmap_height, m.output.heatmap_width)
    assert heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all()
    assert heatmaps.std() > 0  # a real response, not a constant map
