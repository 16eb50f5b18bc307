"""Elementwise activations: forward/backward against the NumPy reference on both devices,
gradchecks away from kinks, NaN and large inputs, properties, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_cnn as nc
from numba_cnn import functional as F
from numba_cnn.testing import check, gradcheck, host, on, randn
from numba_cnn.testing import reference as R

f32, f64 = np.float32, np.float64

# ranks 1-4, odd sizes (not multiples of the CUDA block), batch 1, both dtypes (pairwise)
SHAPES = [((7,), f32), ((3, 5), f64), ((1, 3, 5), f32), ((2, 3, 4, 5), f64), ((1, 1, 9, 7), f32)]
SIMPLE = [  # (forward, backward, reference forward, reference backward, backward takes y)
    (F.relu, F.relu_backward, R.relu, R.relu_backward, False),
    (F.sigmoid, F.sigmoid_backward, R.sigmoid, R.sigmoid_backward, True),
    (F.tanh, F.tanh_backward, R.tanh, R.tanh_backward, True),
]
IDS = ["relu", "sigmoid", "tanh"]


def _away_from_zero(x: np.ndarray) -> np.ndarray:
    """Random values with |x| >= 0.1: no kink within a finite-difference step."""
    return (x + np.where(x >= 0, 0.1, -0.1)).astype(x.dtype)


@pytest.mark.parametrize("shape,dt", SHAPES)
@pytest.mark.parametrize("fns", SIMPLE, ids=IDS)
def test_forward_backward(device, fns, shape, dt):
    fwd, bwd, rfwd, rbwd, takes_y = fns
    x = randn(shape, dt, seed=1, scale=3.0)
    dy = randn(shape, dt, seed=2)
    y = check(fwd, rfwd, x, device=device)
    other = y.astype(dt) if takes_y else x
    check(bwd, rbwd, dy, other, device=device)


@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5, 0.0])
@pytest.mark.parametrize("shape,dt", SHAPES[::2])
def test_leaky_relu(device, shape, dt, slope):
    x = randn(shape, dt, seed=3, scale=2.0)
    dy = randn(shape, dt, seed=4)
    check(F.leaky_relu, R.leaky_relu, x, device=device, negative_slope=slope)
    check(F.leaky_relu_backward, R.leaky_relu_backward, dy, x, device=device, negative_slope=slope)


@pytest.mark.parametrize("dt", [f32, f64])
def test_cuda_launches_in_slices(monkeypatch, dt):
    # above the 32-bit index limit (here lowered to 37) the launcher cuts the flat array
    import numba_cnn._cuda as _cuda

    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    from numba_cnn.kernels.cuda import activation as K

    monkeypatch.setattr(K, "MAX_32", 37)
    x = randn((3, 41), dt, seed=5, scale=3.0)  # 123 elements: slices of 37, 37, 37, 12
    dy = randn((3, 41), dt, seed=6)
    for fns in SIMPLE:
        fwd, bwd, rfwd, rbwd, takes_y = fns
        y = check(fwd, rfwd, x, device="cuda")
        check(bwd, rbwd, dy, y.astype(dt) if takes_y else x, device="cuda")
    check(F.leaky_relu, R.leaky_relu, x, 0.3, device="cuda")


def test_leaky_relu_default_slope(device):
    x = randn((4, 6), f32, seed=5)
    got = host(F.leaky_relu(on(device, x)))
    np.testing.assert_array_equal(got, np.where(x > 0, x, f32(0.01) * x))


def test_relu_gradient_zero_at_zero(device):
    x = np.array([-1.0, 0.0, -0.0, 1e-30, 2.0], dtype=f32)
    dx = host(F.relu_backward(on(device, np.full(5, 3.0, f32)), on(device, x)))
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 3.0, 3.0])
    dx = host(F.leaky_relu_backward(on(device, np.full(5, 3.0, f32)), on(device, x), 0.5))
    np.testing.assert_array_equal(dx, [1.5, 1.5, 1.5, 3.0, 3.0])


@pytest.mark.parametrize("dt", [f32, f64])
def test_nan_propagates(device, dt):
    x = randn((3, 7), dt, seed=6)
    x[1, 2] = x[2, 6] = np.nan
    nan = np.isnan(x)
    for fwd, ref in [(F.relu, R.relu), (F.leaky_relu, R.leaky_relu), (F.sigmoid, R.sigmoid)]:
        got = host(fwd(on(device, x)))
        assert np.isnan(got[nan]).all(), fwd.__name__  # as torch: relu(NaN) is NaN
        np.testing.assert_allclose(got[~nan], ref(x)[~nan], rtol=1e-6)
    assert np.isnan(host(F.tanh(on(device, x)))[nan]).all()


@pytest.mark.parametrize("dt", [f32, f64])
def test_large_inputs_saturate(device, dt):
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], dtype=dt)
    with np.errstate(over="raise", invalid="raise"):  # no overflow anywhere
        check(F.sigmoid, R.sigmoid, x, device=device)
    check(F.tanh, R.tanh, x, device=device)
    assert host(F.sigmoid(on(device, x)))[[0, -1]].tolist() == [0.0, 1.0]


def test_non_contiguous_input(device):
    x = randn((5, 8), f64, seed=8)[:, ::3]
    check(F.relu, R.relu, x, device=device)
    check(F.tanh_backward, R.tanh_backward, x.T, x.T, device=device)


def test_zero_size(device):
    e = np.zeros((2, 0, 3), dtype=f32)
    assert host(F.relu(on(device, e))).shape == (2, 0, 3)
    assert host(F.sigmoid_backward(on(device, e), on(device, e))).shape == (2, 0, 3)


def test_outputs_on_input_device(device):
    x = on(device, randn((5,), f32))
    y = F.tanh(x)
    assert nc.to_host(y).dtype == np.float32
    assert isinstance(y, np.ndarray) == (device == "cpu")


# ---- gradient checks (CPU, float64) ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_gradcheck(shape):
    x = _away_from_zero(randn(shape, f64, seed=7))
    gradcheck(F.relu, [x], lambda dy, x: (F.relu_backward(dy, x),), name="relu")
    for a in (0.01, 0.3):
        gradcheck(
            lambda x, a=a: F.leaky_relu(x, a),
            [x],
            lambda dy, x, a=a: (F.leaky_relu_backward(dy, x, a),),
            name=f"leaky_relu({a})",
        )
    gradcheck(F.sigmoid, [x], lambda dy, x: (F.sigmoid_backward(dy, F.sigmoid(x)),))
    gradcheck(F.tanh, [x], lambda dy, x: (F.tanh_backward(dy, F.tanh(x)),))


# ---- properties (CPU) ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    dt=st.sampled_from([f32, f64]),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
    seed=st.integers(0, 10_000),
)
def test_property_matches_reference(shape, dt, scale, seed):
    x = randn(shape, dt, seed=seed, scale=scale)
    dy = randn(shape, dt, seed=seed + 1)
    for fwd, bwd, rfwd, rbwd, takes_y in SIMPLE:
        y = check(fwd, rfwd, x, device="cpu")
        check(bwd, rbwd, dy, y if takes_y else x, device="cpu")
    y = F.sigmoid(x)
    assert ((y >= 0) & (y <= 1)).all()
    assert (F.relu(x) >= 0).all()


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input(device):
    x = on(device, randn((2, 3), f32))
    with pytest.raises(TypeError, match="relu: x must be a NumPy array"):
        F.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="float32 or float64"):
        F.sigmoid(on(device, np.arange(6).reshape(2, 3)))
    with pytest.raises(TypeError, match="dtype float64 but dy has dtype float32"):
        F.relu_backward(x, on(device, randn((2, 3), f64)))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 3\), expected \(3, 2\)"):
        F.tanh_backward(x, on(device, randn((3, 2), f32)))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 3\), expected \(6,\)"):
        F.leaky_relu_backward(x, on(device, randn((6,), f32)))
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        F.leaky_relu(x, "0.1")
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        F.leaky_relu_backward(x, x, None)
    if device == "cuda":
        with pytest.raises(TypeError, match="mix host and device"):
            F.sigmoid_backward(x, randn((2, 3), f32))
