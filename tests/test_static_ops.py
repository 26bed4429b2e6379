"""Static-shape stand-ins for PyTorch's run-time ops equal the PyTorch semantics (numpy references)."""
from __future__ import annotations

import numpy as np
import pytest


def _run(fn, x):
    import keras

    inp = keras.Input(x.shape[1:], batch_size=x.shape[0])
    return np.asarray(keras.Model(inp, fn(inp))(x))


def test_channel_shuffle_interleaves_the_two_halves():
    from converters.models.static_ops import channel_shuffle

    x = np.random.default_rng(0).normal(size=(1, 3, 4, 10)).astype(np.float32)
    out = _run(channel_shuffle, x)
    # mmpose: view(N, 2, C/2, H, W).transpose(1, 2): output channel 2c + g is input channel g*C/2 + c
    expected = x.reshape(1, 3, 4, 2, 5).transpose(0, 1, 2, 4, 3).reshape(1, 3, 4, 10)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[..., 0::2], x[..., :5])


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsample_nearest_repeats_pixels(factor):
    from converters.models.static_ops import upsample_nearest

    x = np.random.default_rng(factor).normal(size=(1, 3, 5, 7)).astype(np.float32)
    out = _run(lambda t: upsample_nearest(t, factor), x)
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


def test_adaptive_average_pool_is_a_fixed_pool_and_refuses_uneven_sizes():
    from converters.models.static_ops import adaptive_average_pool

    x = np.random.default_rng(2).normal(size=(1, 8, 6, 3)).astype(np.float32)
    out = _run(lambda t: adaptive_average_pool(t, (2, 3)), x)
    np.testing.assert_allclose(out, x.reshape(1, 2, 4, 3, 2, 3).mean(axis=(2, 4)), atol=1e-6)
    with pytest.raises(ValueError, match="not a fixed-window pool"):
        _run(lambda t: adaptive_average_pool(t, (3, 3)), x)
