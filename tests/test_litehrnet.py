"""Lite-HRNet in Keras equals mmpose 1.3.2: same weights, same input, same heatmaps (reference fixtures)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shared import fixture

PARITY = [("litehrnet18_256x192", 18), ("litehrnet18_384x288", 18), ("litehrnet30_256x192", 30)]
_MODELS: dict[str, object] = {}


def _loaded_model(name: str, depth: int):
    """The Keras model for a fixture, built once per session and filled from the fixture's .pth."""
    if name not in _MODELS:
        from converters.checkpoints import read_checkpoint
        from converters.models.litehrnet import build_litehrnet
        from converters.weights import load_state_dict

        height, width = (int(v) for v in name.rsplit("_", 1)[1].split("x"))
        model = build_litehrnet(depth, input_size=(height, width))
        load_state_dict(model, read_checkpoint(fixture(f"{name}.pth")))
        _MODELS[name] = model
    return _MODELS[name]


@pytest.mark.parametrize("name,depth", PARITY)
def test_heatmaps_equal_mmpose(name, depth):
    model = _loaded_model(name, depth)
    inputs = np.load(fixture(f"{name}_input.npy"))  # (2, 3, H, W) NCHW
    reference = np.load(fixture(f"{name}_heatmaps.npy"))  # (2, 17, H/4, W/4) NCHW
    nhwc = inputs.transpose(0, 2, 3, 1).astype(np.float32)
    out = np.concatenate([np.asarray(model(nhwc[i:i + 1], training=False)) for i in range(len(nhwc))])
    out = out.transpose(0, 3, 1, 2)
    assert out.shape == reference.shape
    diff = np.abs(out - reference).max()
    assert diff <= 1e-4 * np.abs(reference).max(), f"{name}: max|diff| {diff} vs max|ref| {np.abs(reference).max()}"


@pytest.mark.parametrize("form,fixture_index", [("tflite-int8", 0), ("openvino", 0), ("openvino", 2)])
def test_every_graph_form_computes_the_default_forms_heatmaps(form, fixture_index):
    """The per-target graph variants (int8 XNNPACK; OpenVINO, another builder: Lite-HRNet-18 and -30) are the
    same function with the same weights (measured in TF: the int8 form 0 from the default form; the OpenVINO
    form 5.4e-7 of the peak from it, float rounding of its folded BatchNorms, and 5.0e-7 / 5.9e-7 from mmpose
    where the default form is 4.5e-7 / 4.9e-7)."""
    from converters.checkpoints import read_checkpoint
    from converters.models.litehrnet import build_litehrnet
    from converters.weights import load_state_dict

    name, depth = PARITY[fixture_index]
    model = build_litehrnet(depth, input_size=(256, 192), for_format=form)
    load_state_dict(model, read_checkpoint(fixture(f"{name}.pth")))
    x = np.load(fixture(f"{name}_input.npy"))[:1].transpose(0, 2, 3, 1).astype(np.float32)
    reference = np.load(fixture(f"{name}_heatmaps.npy"))[:1].transpose(0, 2, 3, 1)
    default = np.asarray(_loaded_model(name, depth)(x, training=False))
    out = np.asarray(model(x, training=False))
    scale = np.abs(reference).max()
    assert np.abs(out - default).max() <= 1e-6 * scale
    assert np.abs(out - reference).max() <= 1e-4 * scale


def test_graph_forms_get_the_default_forms_seeded_weights():
    """Seeded draws follow the model's layer order, which the OpenVINO builder does not share: build_model gives
    every form the default form's seeded weights (the guard compares a form's bundle with the default source)."""
    from converters.zoo import build_model

    default = build_model("litehrnet-18")
    other = build_model("litehrnet-18", for_format="openvino")
    weights = {w.path: w.numpy() for w in default.weights}
    assert {w.path for w in other.weights} == set(weights)
    assert all(np.array_equal(w.numpy(), weights[w.path]) for w in other.weights)


def test_unknown_graph_form_is_one_clear_error():
    from converters.errors import ConversionError
    from converters.models.litehrnet import build_litehrnet

    with pytest.raises(ConversionError, match="graph form must be one of"):
        build_litehrnet(18, for_format="onnx")


@pytest.mark.parametrize("name,depth", [PARITY[0], PARITY[2]])
def test_parameter_count_equals_mmpose(name, depth):
    model = _loaded_model(name, depth)
    expected = json.loads(fixture("MANIFEST.json").read_text())["models"][name]["params"]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)  # BN running stats are not params
    assert trainable == expected


def test_graph_is_static_4d_batch1():
    """Deployment contract: input "input" (1,H,W,3), heatmaps (1,H/4,W/4,17), no tensor above rank 4."""
    model = _loaded_model(*PARITY[1])
    assert model.inputs[0].name == "input"
    assert tuple(model.inputs[0].shape) == (1, 384, 288, 3)
    assert tuple(model.outputs[0].shape) == (1, 96, 72, 17)
    ranks = {len(t.shape) for layer in model.layers for t in _outputs(layer)}
    assert max(ranks) == 4
    assert all(None not in tuple(t.shape) for layer in model.layers for t in _outputs(layer))


def _outputs(layer):
    out = layer.output
    return out if isinstance(out, (list, tuple)) else [out]


def test_unknown_depth_and_bad_size_are_refused():
    from converters.errors import ConversionError
    from converters.models.litehrnet import build_litehrnet

    with pytest.raises(ConversionError, match="depth"):
        build_litehrnet(50)
    with pytest.raises(ConversionError, match="multiple of 32"):
        build_litehrnet(18, input_size=(250, 192))
