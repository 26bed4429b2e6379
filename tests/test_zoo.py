"""The zoo: registry, seeded weights, Keras weight files, strict checkpoint mapping, MACs, `edge-pose models`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.checkpoints import read_checkpoint
from converters.weights import WeightMismatchError, load_state_dict
from converters.zoo import ZOO, ZooError, build_model
from shared import fixture
from torch_zip import write_torch_zip

NAMES = ["litehrnet-18", "litehrnet-30", "simplebaseline-r50", "simplebaseline-r101", "simplebaseline-r152", "cpm"]
EDGE_POSE = Path(sys.executable).with_name("edge-pose")


@pytest.fixture(scope="module")
def r50():
    return build_model("simplebaseline-r50", seed=0)


@pytest.fixture(scope="module")
def r50_state():
    return read_checkpoint(fixture("res50_256x192.pth"))


def _same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_registry_metadata():
    assert list(ZOO) == NAMES
    for entry in ZOO.values():
        assert entry.keypoints == "coco17" and entry.decode == "msra"
        assert entry.checkpoint_layouts == ("mmpose-1.x", "mmpose-0.x")
        assert entry.input_sizes == ((256, 192), (384, 288)) and entry.default_input_size == (256, 192)
        assert entry.heatmap_stride == (8 if entry.family == "cpm" else 4)


def test_unknown_name_and_bad_size_are_one_line_errors():
    with pytest.raises(ZooError, match="unknown zoo model 'hrnet-w32'.*cpm"):
        build_model("hrnet-w32")
    with pytest.raises(ZooError, match="multiples of 32"):
        build_model("simplebaseline-r50", input_size=(250, 192))


def test_seeded_weights_are_deterministic_and_round_trip_through_keras_weight_files(r50, tmp_path):
    from converters.zoo import seed_weights

    other = build_model("simplebaseline-r50", seed=1)
    assert not _same_weights(r50, other)
    seed_weights(other, 0)
    assert _same_weights(r50, other)  # same seed, same weights
    seed_weights(other, 1)
    x = np.random.default_rng(0).normal(size=(1, 256, 192, 3)).astype(np.float32)
    out = np.asarray(r50(x))
    assert out.shape == (1, 64, 48, 17) and np.isfinite(out).all() and out.std() > 0

    path = tmp_path / "r50.weights.h5"
    r50.save_weights(path)
    other.load_weights(path)
    assert _same_weights(r50, other)
    np.testing.assert_array_equal(np.asarray(other(x)), out)


def test_mmpose_0x_names_and_module_prefix_load_like_1x(r50, r50_state, tmp_path):
    legacy = {"module." + k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else "module." + k: v
              for k, v in r50_state.items()}
    assert any(k.startswith("module.keypoint_head.deconv_layers.0") for k in legacy)
    path = write_torch_zip(tmp_path / "res50_0x.pth", {"meta": {"mmpose_version": "0.29.0"}, "state_dict": legacy})
    load_state_dict(r50, r50_state)
    expected = r50.get_weights()
    load_state_dict(r50, {k: v * 0 for k, v in r50_state.items()})  # scramble, then load the 0.x file
    load_state_dict(r50, read_checkpoint(path))
    assert all(np.array_equal(a, b) for a, b in zip(r50.get_weights(), expected))
    deconv = r50.get_layer("head.deconv_layers.0").get_weights()[0]
    np.testing.assert_array_equal(deconv, r50_state["head.deconv_layers.0.weight"].transpose(2, 3, 1, 0))


def test_mismatched_checkpoints_list_every_problem_and_change_nothing(r50_state):
    cpm = build_model("cpm", seed=3)
    before = cpm.get_weights()
    with pytest.raises(WeightMismatchError) as exc:
        build_model("cpm", checkpoint=r50_state)
    text = str(exc.value)
    assert "\n" not in text
    assert "missing" in text and "unexpected" in text and "more)" in text  # long lists are truncated

    state = read_checkpoint(fixture("cpm_256x192.pth"))
    state["backbone.stem.0.conv.weigth"] = state.pop("backbone.stem.0.conv.weight")  # renamed key
    state["backbone.stem.2.bn.bias"] = state["backbone.stem.2.bn.bias"][:64]  # wrong shape
    state["head.extra.weight"] = np.zeros(3, np.float32)  # extra key
    with pytest.raises(WeightMismatchError) as exc:
        load_state_dict(cpm, state, source="cpm-edited.pth")
    text = str(exc.value)
    assert "\n" not in text and text.startswith("cpm-edited.pth")
    assert "missing 1: backbone.stem.0.conv.weight" in text
    assert "backbone.stem.0.conv.weigth" in text and "head.extra.weight" in text
    assert "backbone.stem.2.bn.bias (64,) != (128,)" in text
    assert all(np.array_equal(a, b) for a, b in zip(cpm.get_weights(), before))


def test_mac_count_matches_hand_count():
    import keras

    from converters.macs import count_macs, count_parameters
    from converters.models import layers as CL

    x = inp = keras.Input((16, 12, 8), batch_size=1)
    x = CL.conv2d(x, 16, 3, 2, 1, name="a")  # 8x6x16, 3x3x8
    x = CL.conv2d(x, 16, 3, 1, 1, groups=16, name="dw")  # depthwise 8x6x16, 3x3
    x = CL.conv2d(x, 32, 1, groups=4, name="g")  # 8x6x32, 1x1x4
    x = CL.conv_transpose2d(x, 8, 4, 2, 1, name="up")  # from 8x6x32, 4x4 -> 8
    x = keras.layers.Dense(5, name="fc")(x)  # 16x12 positions, 8 -> 5
    model = keras.Model(inp, x)
    expected = 8 * 6 * 16 * 9 * 8 + 8 * 6 * 16 * 9 + 8 * 6 * 32 * 4 + 8 * 6 * 32 * 16 * 8 + 16 * 12 * 8 * 5
    assert count_macs(model) == expected
    assert count_parameters(model) == (16 * 72 + 16) + (16 * 9 + 16) + (32 * 4 + 32) + 8 * 32 * 16 + (8 * 5 + 5)


def _cli(*args, cache: Path):
    env = dict(os.environ, EDGE_POSE_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([str(EDGE_POSE), "models", *args], capture_output=True, text=True, env=env, timeout=600)


def test_cli_models_lists_the_zoo_with_mmpose_parameter_counts(tmp_path):
    manifest = json.loads(fixture("MANIFEST.json").read_text())["models"]
    first = _cli("--json", cache=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "building simplebaseline-r152" in first.stderr  # shows progress while it builds
    rows = {r["name"]: r for r in json.loads(first.stdout)}
    assert list(rows) == NAMES
    assert rows["simplebaseline-r50"]["params"] == manifest["res50_256x192"]["params"] == 33_999_697
    assert rows["cpm"]["params"] == manifest["cpm_256x192"]["params"] == 31_304_166
    assert rows["litehrnet-18"]["params"] == manifest["litehrnet18_256x192"]["params"]
    assert rows["litehrnet-30"]["params"] == manifest["litehrnet30_256x192"]["params"]
    assert round(rows["simplebaseline-r101"]["params"] / 1e6, 1) == 53.0
    assert round(rows["simplebaseline-r152"]["params"] / 1e6, 1) == 68.6
    assert rows["cpm"]["heatmap"] == [32, 24, 17] and rows["simplebaseline-r152"]["heatmap"] == [64, 48, 17]
    macs = [rows[n]["macs"] for n in ("simplebaseline-r50", "simplebaseline-r101", "simplebaseline-r152")]
    assert 5.3e9 < macs[0] < macs[1] < macs[2]  # mmpose reports 5.46/9.11/12.77 GFLOPs (incl. BN etc.)

    table = _cli(cache=tmp_path)  # second call answers from the cache, builds nothing
    assert table.returncode == 0, table.stderr[-2000:]
    assert "building" not in table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "input"] and "checkpoints" in lines[0]
    for name in NAMES:
        assert any(line.startswith(name + " ") and "256x192" in line and "mmpose-0.x" in line for line in lines)


def test_cli_models_rejects_bad_size_in_one_line(tmp_path):
    result = _cli("--input-size", "250x190", cache=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "multiples of" in result.stderr
