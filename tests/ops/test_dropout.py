"""dropout: the mask's statistics, seeding, exact scaling, backward, eval mode, properties,
bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_cnn as nc
import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.testing import assert_close, host, on, randn
from numba_cnn.testing import reference as R

# the simulator evaluates the kernels' uint64 hash with NumPy scalars, which warn on wraparound
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

f32, f64 = np.float32, np.float64


def _expected(x: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """x * mask / (1 - p) with the scale rounded to x's dtype, as the kernels compute it."""
    return x * (mask.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p)))


@pytest.mark.parametrize(
    "shape,p,dt", [((3, 5, 7), 0.5, f32), ((1, 37), 0.2, f64), ((130,), 0.9, f32)]
)
def test_forward_backward_exact(device, shape, p, dt):
    x = randn(shape, dt, seed=1)
    y, mask = F.dropout(on(device, x), p, rng=np.random.default_rng(2))
    assert _cuda.is_device_array(y) == _cuda.is_device_array(mask) == (device == "cuda")
    y, mask = host(y), host(mask)
    assert mask.dtype == np.bool_ and mask.shape == shape and y.dtype == dt
    assert 0 < mask.sum() < mask.size  # neither all kept nor all dropped at these sizes
    np.testing.assert_array_equal(y, _expected(x, mask, p))
    assert_close(y, R.dropout_apply(x, mask, p))
    dy = randn(shape, dt, seed=3)
    dx = host(F.dropout_backward(*on(device, dy, mask), p))
    np.testing.assert_array_equal(dx, _expected(dy, mask, p))
    assert_close(dx, R.dropout_backward(dy, mask, p))


def test_keep_fraction_cpu():
    x = np.ones(1_000_000, dtype=f32)
    for p in (0.1, 0.5, 0.8):
        _, mask = F.dropout(x, p, rng=np.random.default_rng(int(p * 10)))
        # binomial std of the fraction <= 5e-4; allow 10 std
        assert abs(mask.mean() - (1 - p)) < 5e-3, (p, mask.mean())
        # and no structure along the array: the two halves and the odd/even positions agree
        assert abs(mask[::2].mean() - mask[1::2].mean()) < 1e-2
        assert abs(mask[:500_000].mean() - mask[500_000:].mean()) < 1e-2


def test_seeded(device):
    x = on(device, randn((4, 33), f32, seed=4))
    nc.manual_seed(1234)
    y1, m1 = F.dropout(x, 0.5)
    _, m1b = F.dropout(x, 0.5)  # the generator moved on: a new mask
    nc.manual_seed(1234)
    y2, m2 = F.dropout(x, 0.5)
    np.testing.assert_array_equal(host(m1), host(m2))
    np.testing.assert_array_equal(host(y1), host(y2))
    assert not np.array_equal(host(m1), host(m1b))
    _, m3 = F.dropout(x, 0.5, rng=np.random.default_rng(7))
    _, m4 = F.dropout(x, 0.5, rng=np.random.default_rng(7))
    _, m5 = F.dropout(x, 0.5, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(host(m3), host(m4))
    assert not np.array_equal(host(m3), host(m5))


def test_same_key_same_mask_on_both_devices():
    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    x = randn((5, 21), f32, seed=5)
    _, m_cpu = F.dropout(x, 0.3, rng=np.random.default_rng(9))
    _, m_gpu = F.dropout(nc.to_device(x), 0.3, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(m_cpu, host(m_gpu))


@pytest.mark.parametrize("dt", [f32, f64])
def test_eval_mode_and_p_zero(device, dt):
    x = randn((3, 17), dt, seed=6)
    x[0, 0] = np.nan
    for kw in (dict(p=0.5, training=False), dict(p=0.0), dict(p=0, training=True)):
        rng = np.random.default_rng(0)
        y, mask = F.dropout(on(device, x), rng=rng, **kw)
        np.testing.assert_array_equal(host(y), x)
        assert host(mask).dtype == np.bool_ and host(mask).all()
        assert rng.integers(0, 2**63) == np.random.default_rng(0).integers(0, 2**63)  # no draw
    dx = host(F.dropout_backward(*on(device, x, np.ones(x.shape, bool)), 0.0))
    np.testing.assert_array_equal(dx, x)


def test_nan_propagates(device):
    x = randn((4, 9), f32, seed=7)
    x[1] = np.nan
    y, mask = F.dropout(on(device, x), 0.5, rng=np.random.default_rng(3))
    assert np.isnan(host(y)[1]).all()  # x * mask * scale, as torch: NaN * 0 is NaN


def test_zero_size(device):
    y, mask = F.dropout(on(device, np.zeros((0, 4), f32)), 0.5)
    assert host(y).shape == host(mask).shape == (0, 4)


# ---- properties (CPU) ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    p=st.floats(0.0, 0.99),
    dt=st.sampled_from([f32, f64]),
    seed=st.integers(0, 2**32),
)
def test_property(shape, p, dt, seed):
    x = randn(shape, dt, seed=seed % 1000)
    y, mask = F.dropout(x, p, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(y, _expected(x, mask, p))
    np.testing.assert_array_equal(F.dropout_backward(x, mask, p), y)
    assert ((y == 0) | mask).all()


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input(device):
    x = on(device, randn((2, 3), f32))
    mask = on(device, np.ones((2, 3), bool))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"dropout: p must lie in \[0, 1\]"):
            F.dropout(x, p)
        with pytest.raises(ValueError, match=r"dropout_backward: p must lie in \[0, 1\]"):
            F.dropout_backward(x, mask, p)
    for p in ("0.5", None, True):
        with pytest.raises(TypeError, match="p must be a number"):
            F.dropout(x, p)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        F.dropout(x, 0.5, rng=42)
    with pytest.raises(TypeError, match="dropout: x must be a NumPy array"):
        F.dropout([1.0, 2.0], 0.5)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.dropout(on(device, np.arange(6)), 0.5)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 2\), expected \(2, 3\)"):
        F.dropout_backward(x, on(device, np.ones((3, 2), bool)), 0.5)
    with pytest.raises(TypeError, match="mask must be a bool array"):
        F.dropout_backward(x, on(device, np.ones((2, 3), f32)), 0.5)
    with pytest.raises(TypeError, match="mask must be a NumPy array"):
        F.dropout_backward(x, [[True] * 3] * 2, 0.5)
    with pytest.raises(TypeError, match="dy must be float32 or float64"):
        F.dropout_backward(mask, mask, 0.5)
    if device == "cuda":
        with pytest.raises(TypeError, match="mask is on the host but dy is on the device"):
            F.dropout_backward(x, np.ones((2, 3), bool), 0.5)


def test_cuda_size_limit(monkeypatch):
    # the mask hashes the 32-bit element index: above the limit the launcher refuses (here
    # lowered to 10) before launching anything
    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    from numba_cnn.kernels.cuda import dropout as K

    monkeypatch.setattr(K, "MAX_32", 10)
    x = on("cuda", randn((3, 4), f32, seed=3))
    with pytest.raises(ValueError, match="dropout: 12 elements exceed"):
        F.dropout(x, 0.5)
    y, mask = F.dropout(on("cuda", randn((2, 5), f32, seed=4)), 0.5)
    assert host(mask).shape == (2, 5)
