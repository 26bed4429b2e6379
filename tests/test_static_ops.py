"""Static-shape stand-ins for PyTorch's run-time ops equal the PyTorch semantics (numpy references)."""
from __future__ import annotations

import numpy as np
import pytest


def _run(fn, x):
    import keras

    inp = keras.Input(x.shape[1:], batch_size=x.shape[0])
    return np.asarray(keras.Model(inp, fn(inp))(x))


@pytest.mark.parametrize("form", ["transpose", "conv", "gather"])
def test_channel_shuffle_interleaves_the_two_halves(form):
    from converters.models.static_ops import channel_shuffle

    x = np.random.default_rng(0).normal(size=(1, 3, 4, 10)).astype(np.float32)
    out = _run(lambda t: channel_shuffle(t, form=form), x)
    # mmpose: view(N, 2, C/2, H, W).transpose(1, 2): output channel 2c + g is input channel g*C/2 + c
    expected = x.reshape(1, 3, 4, 2, 5).transpose(0, 1, 2, 4, 3).reshape(1, 3, 4, 10)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[..., 0::2], x[..., :5])


@pytest.mark.parametrize("form", ["concat", "resize"])
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsample_nearest_repeats_pixels(factor, form):
    from converters.models.static_ops import upsample_nearest

    x = np.random.default_rng(factor).normal(size=(1, 3, 5, 7)).astype(np.float32)
    out = _run(lambda t: upsample_nearest(t, factor, form), x)
    np.testing.assert_array_equal(out, x.repeat(factor, axis=1).repeat(factor, axis=2))


def test_bilinear_align_corners_matches_the_formula():
    from converters.models.static_ops import resize_bilinear_align_corners

    x = np.random.default_rng(1).normal(size=(1, 3, 4, 2)).astype(np.float32)
    out = _run(lambda t: resize_bilinear_align_corners(t, (6, 8)), x)

    def weights(n_in, n_out):  # align_corners: output i samples input i * (n_in - 1) / (n_out - 1)
        pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - (pos - lo)
        m[np.arange(n_out), hi] += pos - lo
        return m

    expected = np.einsum("ih,jw,bhwc->bijc", weights(3, 6), weights(4, 8), x)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out[0, [0, -1]][:, [0, -1]], x[0, [0, -1]][:, [0, -1]], atol=1e-6)  # corners kept


@pytest.mark.parametrize("form", ["pool", "depthwise"])
def test_adaptive_average_pool_is_a_fixed_pool_and_refuses_uneven_sizes(form):
    from converters.models.static_ops import adaptive_average_pool

    x = np.random.default_rng(2).normal(size=(1, 8, 6, 3)).astype(np.float32)
    out = _run(lambda t: adaptive_average_pool(t, (2, 3), form), x)
    np.testing.assert_allclose(out, x.reshape(1, 2, 4, 3, 2, 3).mean(axis=(2, 4)), atol=1e-6)
    with pytest.raises(ValueError, match="not a fixed-window pool"):
        _run(lambda t: adaptive_average_pool(t, (3, 3), form), x)


def test_pool_forms_agree_to_rounding_on_power_of_two_windows():
    from converters.models.static_ops import adaptive_average_pool

    x = np.random.default_rng(3).normal(size=(1, 64, 48, 20)).astype(np.float32)
    pool = _run(lambda t: adaptive_average_pool(t, (8, 6), "pool"), x)
    depthwise = _run(lambda t: adaptive_average_pool(t, (8, 6), "depthwise"), x)
    np.testing.assert_allclose(depthwise, pool, rtol=0, atol=1e-6 * np.abs(pool).max())


@pytest.mark.parametrize("factor", [1, 2, 8])
def test_multiply_by_upsampled_equals_multiplying_by_the_upsampled_gate(factor):
    import keras

    from converters.models.static_ops import multiply_by_upsampled

    rng = np.random.default_rng(factor)
    x = rng.normal(size=(1, 2 * factor, 3 * factor, 5)).astype(np.float32)
    gate = rng.normal(size=(1, 2, 3, 5)).astype(np.float32)
    xi, gi = keras.Input(x.shape[1:], batch_size=1), keras.Input(gate.shape[1:], batch_size=1)
    model = keras.Model([xi, gi], multiply_by_upsampled(xi, gi, factor, keras.ops.sigmoid))
    out = np.asarray(model([x, gate]))
    sig = 1 / (1 + np.exp(-gate.astype(np.float64)))
    expected = x * sig.repeat(factor, axis=1).repeat(factor, axis=2)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
