"""gradcheck itself: passes correct backwards, catches wrong ones and names where."""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn._cuda import is_device_array
from numba_cnn.testing import gradcheck, on
from numba_cnn.testing import reference as R


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def matmul(x, w):
    return x @ w.T


def matmul_backward(dy, x, w):
    return dy @ w, dy.T @ x


def test_passes_a_correct_backward_and_leaves_inputs_alone():
    x, w = rnd(3, 4, seed=1), rnd(5, 4, seed=2)
    x0, w0 = x.copy(), w.copy()
    assert gradcheck(matmul, (x, w), matmul_backward) is None
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def test_catches_a_scaled_gradient_and_names_the_input():
    x, w = rnd(3, 4, seed=1), rnd(5, 4, seed=2)
    with pytest.raises(AssertionError, match=r"mm: gradient of input 1 .* analytic .* numeric"):
        gradcheck(matmul, (x, w), lambda dy, x, w: (dy @ w, 1.001 * dy.T @ x), name="mm")


def test_names_the_worst_element():
    x = rnd(3, 4, seed=3)

    def backward(dy, x):
        dx = R.tanh_backward(dy, R.tanh(x))
        dx[1, 2] += 1e-3
        dx[0, 0] += 1e-5  # also wrong, but less so
        return (dx,)

    with pytest.raises(AssertionError, match=r"2 of 12 elements; worst at \(1, 2\)"):
        gradcheck(R.tanh, (x,), backward)


def test_catches_a_backward_that_ignores_dy():
    x = rnd(4, 5, seed=4)
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(R.relu, (x,), lambda dy, x: ((x > 0).astype(np.float64),))


def test_catches_a_wrong_conv_backward():
    x, w = rnd(1, 2, 5, 5, seed=5), rnd(3, 2, 3, 3, seed=6)
    wrong = lambda dy, x, w: R.conv2d_backward(dy, x, w[:, :, ::-1, ::-1], padding=1)[:2]
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(lambda x, w: R.conv2d(x, w, padding=1), (x, w), wrong)


def test_catches_a_wrong_pool_backward():
    x = rnd(1, 1, 5, 5, seed=7)

    def wrong(dy, x):  # the gradient of an avg pool for a max pool
        return (R.avg_pool2d_backward(dy, x.shape, 2),)

    with pytest.raises(AssertionError, match="max_pool"):
        gradcheck(lambda x: R.max_pool2d(x, 2), (x,), wrong, name="max_pool")


def test_wrt_selects_inputs_and_skips_non_float_arguments():
    x, w = rnd(3, 4, seed=8), rnd(5, 4, seed=9)
    bad_dw = lambda dy, x, w: (dy @ w, np.zeros_like(w))
    gradcheck(matmul, (x, w), bad_dw, wrt=[0])  # dw not checked
    with pytest.raises(AssertionError, match="input 1"):
        gradcheck(matmul, (x, w), bad_dw)  # default: every float array
    labels = np.array([1, 0, 3], dtype=np.int64)
    gradcheck(  # int labels are not differentiated (and their gradient may be None)
        R.cross_entropy,
        (x, labels),
        lambda dy, lg, lab: (dy * R.cross_entropy_backward(lg, lab), None),
    )


def test_non_array_arguments_pass_through():
    x = rnd(2, 3, seed=10)
    gradcheck(
        lambda x, slope: R.leaky_relu(x, slope),
        (x, 0.3),
        lambda dy, x, slope: (R.leaky_relu_backward(dy, x, slope), None),
    )


def test_requires_float64():
    x32, w = rnd(3, 4, seed=11).astype(np.float32), rnd(5, 4, seed=12)
    with pytest.raises(TypeError, match="input 0 is float32"):
        gradcheck(matmul, (x32, w), matmul_backward)
    x = rnd(3, 4, seed=11)
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda x: R.tanh(x).astype(np.float32), (x,), lambda dy, x: (dy,))


def test_rejects_malformed_backwards():
    x, w = rnd(3, 4, seed=13), rnd(5, 4, seed=14)
    with pytest.raises(ValueError, match="1 gradients for 2 inputs"):
        gradcheck(matmul, (x, w), lambda dy, x, w: (dy @ w,))
    with pytest.raises(AssertionError, match="None for input 1"):
        gradcheck(matmul, (x, w), lambda dy, x, w: (dy @ w, None))
    with pytest.raises(AssertionError, match=r"shape \(4, 5\), input shape \(5, 4\)"):
        gradcheck(matmul, (x, w), lambda dy, x, w: (dy @ w, x.T @ dy))
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(matmul, (x, w), lambda dy, x, w: (np.full_like(x, np.nan), dy.T @ x))
    with pytest.raises(ValueError, match="wrt index 2"):
        gradcheck(matmul, (x, w), matmul_backward, wrt=[2])


def test_scalar_output():
    x = rnd(3, 4, seed=15)
    gradcheck(lambda x: np.sum(x**3), (x,), lambda dy, x: (dy * 3 * x**2,))
    with pytest.raises(AssertionError):
        gradcheck(lambda x: np.sum(x**3), (x,), lambda dy, x: (3 * x**2,))  # ignores dy


def test_accepts_device_arrays_returned(device):
    x, w = rnd(2, 3, seed=16), rnd(4, 3, seed=17)
    f = lambda x, w: on(device, matmul(x, w))
    assert is_device_array(f(x, w)) == (device == "cuda")
    gradcheck(f, (x, w), lambda dy, x, w: on(device, *matmul_backward(dy, x, w)))
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(f, (x, w), lambda dy, x, w: on(device, 2 * dy @ w, dy.T @ x))
