"""max/avg pooling forward/backward against the NumPy reference, gradchecks, properties,
bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.testing import check, gradcheck, host, on, randn
from numba_cnn.testing import reference as R

f32, f64 = np.float32, np.float64

# (x shape, kernel_size, stride, padding, dilation, ceil_mode, dtype): options covered
# pairwise; odd and non-square sizes, batch 1; tiny enough for the CUDA simulator.
MAX_CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False, f32),
    ((1, 1, 5, 7), 3, 2, 1, 1, True, f64),
    ((2, 2, 7, 4), (2, 3), 1, 1, 2, False, f32),
    ((1, 3, 9, 6), (3, 1), (1, 2), (1, 0), (2, 1), True, f32),
    ((2, 3, 8, 8), 1, 3, 0, 2, True, f64),
    ((1, 1, 5, 7), 2, (1, 2), 1, (2, 1), False, f32),
    ((2, 2, 7, 4), 3, None, 1, 1, True, f64),
    ((1, 3, 9, 6), 2, 1, 1, 1, False, f64),  # P > H: no non-overlapping guess on the GPU
    ((2, 3, 8, 8), (2, 3), 3, (0, 1), (2, 1), True, f32),
    ((1, 1, 5, 7), 1, 1, 0, 1, True, f32),
    ((2, 2, 7, 4), 2, 3, 0, 2, True, f32),
    ((1, 3, 9, 6), 3, 3, 1, 2, False, f64),
]
# (x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, dtype)
AVG_CASES = [
    ((2, 3, 8, 8), 2, None, 0, False, True, f32),
    ((1, 1, 5, 7), 3, 2, 1, True, False, f64),
    ((2, 2, 7, 4), (2, 3), 1, 1, False, False, f32),
    ((1, 3, 9, 6), (3, 1), (1, 2), (1, 0), True, True, f32),
    ((2, 3, 8, 8), 3, 3, 1, True, False, f64),
    ((1, 1, 5, 7), 1, (2, 1), 0, True, True, f64),
    ((2, 2, 7, 4), 2, 1, 1, True, True, f32),
    ((1, 3, 9, 6), 2, 3, 0, False, False, f64),
]


@pytest.mark.parametrize("case", MAX_CASES, ids=lambda c: str(c[:6]))
def test_max_pool2d(device, case):
    shape, k, s, p, d, ceil, dt = case
    x = randn(shape, dt, seed=1)
    kw = dict(stride=s, padding=p, dilation=d, ceil_mode=ceil)
    y, idx = check(F.max_pool2d, R.max_pool2d, x, k, **kw, return_indices=True, device=device)
    check(F.max_pool2d, R.max_pool2d, x, k, **kw, device=device)  # the no-index kernel
    dy = randn(y.shape, dt, seed=2)
    # backward without window arguments (guess + fix-up on the GPU) and with them (gather)
    check(F.max_pool2d_backward, R.max_pool2d_backward, dy, idx, shape, device=device)
    got = host(F.max_pool2d_backward(*on(device, dy, idx), shape, kernel_size=k, **kw))
    np.testing.assert_array_equal(got, host(F.max_pool2d_backward(dy, idx, shape)))


@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: str(c[:6]))
def test_avg_pool2d(device, case):
    shape, k, s, p, ceil, cip, dt = case
    x = randn(shape, dt, seed=3)
    kw = dict(stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
    y = check(F.avg_pool2d, R.avg_pool2d, x, k, **kw, device=device)
    dy = randn(y.shape, dt, seed=4)
    check(F.avg_pool2d_backward, R.avg_pool2d_backward, dy, shape, k, **kw, device=device)


@pytest.mark.parametrize("dt", [f32, f64])
def test_max_pool2d_nan_propagates(device, dt):
    x = randn((1, 2, 5, 6), dt, seed=5)
    x[0, 0, 1, 1] = np.nan  # inside overlapping windows
    x[0, 1, 4, 5] = np.nan  # last row/column: only ceil-mode windows reach it
    x[0, 1, 0, 0] = np.inf
    x[0, 0, 3:, 3:] = -np.inf  # window (2, 2) is all -inf: its first in-bounds tap
    kw = dict(stride=2, padding=1, ceil_mode=True, return_indices=True)
    y, idx = check(F.max_pool2d, R.max_pool2d, x, 3, **kw, device=device)
    assert np.isnan(y[0, 0, :2, :2]).all() and np.isnan(y[0, 1, -1, -1])
    assert (idx[0, 0, :2, :2] == 1 * 6 + 1).all()
    assert y[0, 0, 2, 2] == -np.inf and idx[0, 0, 2, 2] == 3 * 6 + 3
    y = check(F.avg_pool2d, R.avg_pool2d, x, 2, device=device)
    assert np.isnan(y[0, 0, 0, 0])


@pytest.mark.parametrize("dt", [f32, f64])
def test_max_pool2d_2x2_vector_path_ties_nan_inf(dt):
    """The CPU's branch-free 2x2 stride-2 kernel (8 outputs a step, then a scalar tail): 18
    output columns (16 + 2), an odd row and column left over, ties, NaN, +-inf."""
    x = randn((2, 3, 9, 37), dt, seed=9)
    x[..., 1::3] = x[..., 0:-1:3]  # equal neighbours: the first tap in row-major order wins
    x[0, 0, 0, 2:4] = np.nan  # two NaNs in one window: the last one's index
    x[0, 1, 1, 5] = np.nan
    x[1, 0, 2:4, 8:10] = -np.inf  # an all -inf window: its first tap
    x[1, 2, 5, 30] = np.inf
    x[1, 2, 4, 31] = np.inf  # +inf tie: the first
    y, idx = check(F.max_pool2d, R.max_pool2d, x, 2, return_indices=True, device="cpu")
    assert (
        idx[0, 0, 0, 1] == 3 and idx[1, 0, 1, 4] == 2 * 37 + 8 and idx[1, 2, 2, 15] == 4 * 37 + 31
    )
    check(F.max_pool2d, R.max_pool2d, x, 2, device="cpu")


@pytest.mark.parametrize("W", [8, 13, 7, 21])
def test_max_pool2d_2x2_short_rows(W):
    """Rows of 4 (one 4-wide step), 6 (two overlapping 4-wide steps), 3 (scalar) and 10 (8 + an
    overlapping step of 8), with ties and NaN."""
    x = randn((2, 2, 5, W), f32, seed=W)
    x[..., 1::2] = x[..., 0:-1:2]
    x[0, 1, 2, W - 2 :] = np.nan
    check(F.max_pool2d, R.max_pool2d, x, 2, return_indices=True, device="cpu")


def test_max_pool2d_backward_overlap_and_foreign_idx(device):
    # Overlapping windows accumulate; an idx that is no forward's (random, in range) is
    # still scattered exactly, and so is one that contradicts the window arguments given.
    x = randn((2, 3, 7, 6), f64, seed=6)
    y, idx = F.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    dy = randn(y.shape, f64, seed=7)
    check(F.max_pool2d_backward, R.max_pool2d_backward, dy, idx, x.shape, device=device)
    assert np.bincount(idx[0, 0].ravel()).max() > 1  # some pixel wins several windows
    rand_idx = np.random.default_rng(8).integers(0, 7 * 6, size=idx.shape)
    check(F.max_pool2d_backward, R.max_pool2d_backward, dy, rand_idx, x.shape, device=device)
    got = F.max_pool2d_backward(
        *on(device, dy, rand_idx), x.shape, kernel_size=3, stride=1, padding=1
    )
    np.testing.assert_allclose(host(got), R.max_pool2d_backward(dy, rand_idx, x.shape), rtol=1e-12)


def test_chw_input_and_batch_of_one(device):
    x = randn((3, 7, 5), f32, seed=9)
    y, idx = F.max_pool2d(on(device, x), (3, 2), stride=(2, 1), return_indices=True)
    y4, idx4 = R.max_pool2d(x[None], (3, 2), stride=(2, 1), return_indices=True)
    np.testing.assert_allclose(host(y), y4[0], rtol=1e-6)
    np.testing.assert_array_equal(host(idx), idx4[0])
    dy = randn(y.shape, f32, seed=10)
    dx = F.max_pool2d_backward(on(device, dy), idx, x.shape)
    np.testing.assert_allclose(host(dx), R.max_pool2d_backward(dy[None], idx4, (1, *x.shape))[0])
    a = F.avg_pool2d(on(device, x), 2, padding=1)
    np.testing.assert_allclose(host(a), R.avg_pool2d(x[None], 2, padding=1)[0], rtol=1e-6)
    da = F.avg_pool2d_backward(on(device, randn(a.shape, f32, seed=11)), x.shape, 2, padding=1)
    exp = R.avg_pool2d_backward(randn(a.shape, f32, seed=11)[None], (1, *x.shape), 2, padding=1)
    np.testing.assert_allclose(host(da), exp[0], rtol=1e-5, atol=1e-6)


def test_non_contiguous_input():
    x = randn((2, 3, 10, 9), f32, seed=12)[:, :, ::2, :]
    check(F.max_pool2d, R.max_pool2d, x, 2, return_indices=True, device="cpu")
    check(F.avg_pool2d, R.avg_pool2d, x, 2, stride=1, device="cpu")


@pytest.mark.parametrize(
    "k, kw",
    [(3, dict(stride=2, padding=1)), ((2, 3), dict(stride=1, dilation=(2, 1), ceil_mode=True))],
)
def test_max_pool2d_gradcheck(k, kw):
    x = randn((1, 2, 5, 6), f64, seed=13)
    f = lambda x: F.max_pool2d(x, k, **kw)
    idx_of = lambda x: F.max_pool2d(x, k, **kw, return_indices=True)[1]
    gradcheck(f, (x,), lambda dy, x: (F.max_pool2d_backward(dy, idx_of(x), x.shape),))


@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool2d_gradcheck(cip):
    x = randn((1, 2, 5, 6), f64, seed=14)
    kw = dict(stride=2, padding=1, ceil_mode=True, count_include_pad=cip)
    f = lambda x: F.avg_pool2d(x, 3, **kw)
    gradcheck(f, (x,), lambda dy, x: (F.avg_pool2d_backward(dy, x.shape, 3, **kw),))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    pfrac=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    ceil=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_max_pool2d_property(n, h, w, k, s, pfrac, d, ceil, seed):
    p = (min(pfrac[0], k[0] // 2), min(pfrac[1], k[1] // 2))
    x = randn((n, 2, h, w), f64, seed)
    kw = dict(stride=s, padding=p, dilation=d, ceil_mode=ceil)
    try:
        exp_y, exp_i = R.max_pool2d(x, k, **kw, return_indices=True)
    except ValueError:  # output too small or a window that misses the input: we refuse too
        with pytest.raises(ValueError):
            F.max_pool2d(x, k, **kw)
        assume(False)
    y, idx = F.max_pool2d(x, k, **kw, return_indices=True)
    np.testing.assert_array_equal(y, exp_y)
    np.testing.assert_array_equal(idx, exp_i)
    dy = randn(y.shape, f64, seed + 1)
    exp = R.max_pool2d_backward(dy, idx, x.shape)
    np.testing.assert_allclose(F.max_pool2d_backward(dy, idx, x.shape), exp, rtol=1e-12)
    if d == (1, 1):
        for cip in (True, False):
            a = dict(stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
            np.testing.assert_allclose(F.avg_pool2d(x, k, **a), R.avg_pool2d(x, k, **a))
            got = F.avg_pool2d_backward(dy, x.shape, k, **a)
            np.testing.assert_allclose(got, R.avg_pool2d_backward(dy, x.shape, k, **a))


def _bad_calls():
    x = randn((2, 3, 6, 6), f32, seed=15)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    dy = randn(y.shape, f32, seed=16)
    V, T = ValueError, TypeError
    return [
        (V, "must be 3-D or 4-D", lambda: F.max_pool2d(x[0, 0], 2)),
        (V, "must be 3-D or 4-D", lambda: F.avg_pool2d(x[None], 2)),
        (V, "kernel_size must be positive", lambda: F.max_pool2d(x, 0)),
        (V, "stride must be positive", lambda: F.max_pool2d(x, 2, stride=(1, 0))),
        (V, "dilation must be positive", lambda: F.max_pool2d(x, 2, dilation=-1)),
        (V, "padding must be non-negative", lambda: F.avg_pool2d(x, 2, padding=-1)),
        (V, r"padding \(2, 2\) must be at most half", lambda: F.max_pool2d(x, 3, padding=2)),
        (V, "too small", lambda: F.max_pool2d(x, 7)),
        (V, "too small", lambda: F.avg_pool2d(x, (2, 9), padding=1)),
        (V, "holds no input element", lambda: F.max_pool2d(x[:, :, :1], 2, 1, 1, 2)),
        (T, "kernel_size must be an int or a pair", lambda: F.max_pool2d(x, 2.0)),
        (T, "stride must be an int or a pair", lambda: F.avg_pool2d(x, 2, stride=(1, 2, 3))),
        (T, "float32 or float64", lambda: F.max_pool2d(x.astype(np.int32), 2)),
        (T, "float32 or float64", lambda: F.avg_pool2d_backward(dy.astype(np.float16), x.shape, 2)),
        (T, "idx must be an integer array", lambda: F.max_pool2d_backward(dy, dy, x.shape)),
        (T, "idx must be int64", lambda: F.max_pool2d_backward(dy, idx.astype(np.int32), x.shape)),
        (
            V,
            r"idx has shape \(2, 3, 3, 2\)",
            lambda: F.max_pool2d_backward(dy, idx[..., :2], x.shape),
        ),
        (V, "does not match x_shape", lambda: F.max_pool2d_backward(dy, idx, (2, 4, 6, 6))),
        (V, "dy must be 4-D", lambda: F.max_pool2d_backward(dy[0], idx[0], x.shape)),
        (V, "x_shape must be a tuple", lambda: F.max_pool2d_backward(dy, idx, (2, 3, 6, 6, 1))),
        (V, "x_shape must be a tuple", lambda: F.max_pool2d_backward(dy, idx, (2, 3, 0, 6))),
        (V, "x_shape must be a tuple", lambda: F.avg_pool2d_backward(dy, (2, 3, 6.0, 6), 2)),
        (V, "x_shape must be a tuple", lambda: F.avg_pool2d_backward(dy, "2,3,6,6", 2)),
        (V, "lie outside their 6x6 plane", lambda: F.max_pool2d_backward(dy, idx + 30, x.shape)),
        (V, "lie outside", lambda: F.max_pool2d_backward(dy, idx - 6, x.shape)),
        (V, r"gives \(2, 2\)", lambda: F.max_pool2d_backward(dy, idx, x.shape, kernel_size=3)),
        (V, r"dy has shape \(2, 3, 3, 3\)", lambda: F.avg_pool2d_backward(dy, x.shape, 3)),
        (V, "dy must be 4-D", lambda: F.avg_pool2d_backward(dy[0], x.shape, 2)),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls())))
def test_bad_input(i):
    err, match, call = _bad_calls()[i]
    with pytest.raises(err, match=match):
        call()


def test_bad_input_mixed_devices():
    if not _cuda.available():
        pytest.skip("needs a GPU or the simulator")
    x = randn((1, 2, 4, 4), f32, seed=17)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match="dy on device, idx on host"):
        F.max_pool2d_backward(on("cuda", y), idx, x.shape)


@pytest.mark.parametrize("window_args", [True, False])
def test_pool2d_gradcheck_cuda(window_args):
    # float64 central differences through the CUDA kernels: max-pool backward in one launch
    # (gather when told the windows, scan when the guess fails), avg-pool backward
    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    x = randn((1, 1, 5, 6), f64, seed=18)
    kw = dict(stride=2, padding=1, ceil_mode=True)
    extra = dict(kernel_size=3, **kw) if window_args else {}

    def f(x):
        return host(F.max_pool2d(on("cuda", x), 3, **kw))

    def backward(dy, x):
        _, idx = F.max_pool2d(on("cuda", x), 3, **kw, return_indices=True)
        return (host(F.max_pool2d_backward(on("cuda", dy), idx, x.shape, **extra)),)

    gradcheck(f, (x,), backward, name="max_pool2d cuda")
    gradcheck(
        lambda x: host(F.avg_pool2d(on("cuda", x), 3, **kw, count_include_pad=window_args)),
        (x,),
        lambda dy, x: (
            host(
                F.avg_pool2d_backward(
                    on("cuda", dy), x.shape, 3, **kw, count_include_pad=window_args
                )
            ),
        ),  # fmt: skip
        name="avg_pool2d cuda",
    )
