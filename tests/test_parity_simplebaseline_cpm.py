"""SimpleBaseline-R50 and CPM (every stage) in Keras compute mmpose's heatmaps from the same checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shared import fixture


def _run_per_sample(model, inputs_nchw):
    """The models are batch-1 static: run each stored sample, return NCHW like mmpose."""
    outs = [model(np.ascontiguousarray(x[None].transpose(0, 2, 3, 1))) for x in inputs_nchw]
    if isinstance(outs[0], (list, tuple)):
        return [np.concatenate([o[s] for o in outs]).transpose(0, 3, 1, 2) for s in range(len(outs[0]))]
    return np.concatenate(outs).transpose(0, 3, 1, 2)


def _relative_error(out, ref) -> float:
    assert out.shape == ref.shape
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _manifest_params(name: str) -> int:
    return json.loads(fixture("MANIFEST.json").read_text())["models"][name]["params"]


def test_simplebaseline_r50_matches_mmpose():
    from converters.zoo import build_model

    model = build_model("simplebaseline-r50", checkpoint=fixture("res50_256x192.pth"))
    assert _trainable(model) == _manifest_params("res50_256x192") == 33_999_697
    out = _run_per_sample(model, np.load(fixture("res50_256x192_input.npy")))
    ref = np.load(fixture("res50_256x192_heatmaps.npy"))
    assert _relative_error(out, ref) <= 1e-4


def test_cpm_every_stage_matches_mmpose_and_deployable_output_is_last_stage():
    from converters.models.cpm import build_cpm
    from converters.checkpoints import read_checkpoint
    from converters.weights import load_state_dict

    model = build_cpm((256, 192), all_stages=True)
    load_state_dict(model, read_checkpoint(fixture("cpm_256x192.pth")))
    assert _trainable(model) == _manifest_params("cpm_256x192") == 31_304_166
    inputs = np.load(fixture("cpm_256x192_input.npy"))
    stages = _run_per_sample(model, inputs)
    assert len(stages) == 6
    for s, out in enumerate(stages):
        ref = np.load(fixture(f"cpm_256x192_heatmaps_stage{s}.npy"))
        assert _relative_error(out, ref) <= 1e-4, f"stage {s}"
    # Stages differ from each other (each refines the previous), so matching every one is not vacuous.
    assert _relative_error(stages[0], np.load(fixture("cpm_256x192_heatmaps_stage5.npy"))) > 1e-2

    deployable = build_cpm((256, 192))
    deployable.set_weights(model.get_weights())
    assert deployable.output.shape == (1, 32, 24, 17)
    last = _run_per_sample(deployable, inputs[:1])
    np.testing.assert_allclose(last, stages[-1][:1], rtol=0, atol=1e-6)
