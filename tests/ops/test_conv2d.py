"""conv2d forward/backward against the NumPy reference, gradchecks, properties, bad input."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.kernels.cpu import conv2d as cpu_conv2d
from numba_cnn.testing import check, gradcheck, randn
from numba_cnn.testing import reference as R

f32, f64 = np.float32, np.float64

# (x shape, weight shape, options, bias, dtype, need_dx): options covered pairwise; all tiny
# enough for the CUDA simulator (N <= 2, C, K <= 5, H, W <= 9), none a multiple of a tile.
CASES = [
    ((2, 3, 7, 7), (4, 3, 3, 3), {}, True, f32, True),
    ((1, 3, 8, 9), (5, 3, 3, 2), dict(stride=2, padding=1), False, f64, True),
    ((2, 2, 9, 7), (3, 2, 2, 3), dict(stride=3, padding=2, dilation=2), True, f32, False),
    ((2, 4, 7, 8), (4, 2, 3, 3), dict(groups=2, padding="same"), True, f64, True),
    ((1, 4, 8, 7), (4, 1, 3, 3), dict(groups=4, padding="same", dilation=2), False, f32, True),
    ((2, 3, 6, 7), (4, 3, 2, 4), dict(padding="same"), True, f32, True),  # odd total: extra b/r
    ((1, 2, 9, 8), (3, 2, 4, 2), dict(padding="same", dilation=(1, 2)), True, f64, False),
    ((2, 3, 6, 8), (2, 3, 1, 1), dict(padding="valid", stride=(1, 2)), True, f64, True),
    (
        (1, 4, 9, 9),
        (4, 2, 3, 2),
        dict(groups=2, stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
        True,
        f32,
        True,
    ),  # fmt: skip
    ((2, 5, 5, 6), (5, 1, 3, 3), dict(groups=5, stride=2, padding=1), True, f64, True),
    ((1, 2, 5, 5), (3, 2, 5, 5), dict(padding="valid"), False, f32, True),  # kernel == input
    (
        (2, 2, 5, 9),
        (4, 1, 2, 3),
        dict(groups=2, stride=(1, 3), dilation=2, padding=(1, 0)),
        True,
        f64,
        True,
    ),  # fmt: skip
]
# Under the simulator every CUDA thread is a Python thread: run a spread of the cases there.
DEVICE_CASES = CASES[::2] + [CASES[5], CASES[9]] if _cuda.SIMULATOR else CASES


def _inputs(xs, ws, bias, dtype, seed=0):
    x = randn(xs, dtype, seed)
    w = randn(ws, dtype, seed + 1)
    b = randn((ws[0],), dtype, seed + 2) if bias else None
    return x, w, b


def _dy(x, w, b, kw, seed=3):
    y = R.conv2d(x, w, b, **kw)
    return randn(y.shape, x.dtype, seed)


def _check_case(device, xs, ws, kw, bias, dtype, need_dx):
    x, w, b = _inputs(xs, ws, bias, dtype)
    check(F.conv2d, R.conv2d, x, w, b, device=device, **kw)
    dy = _dy(x, w, b, kw)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device=device, need_dx=need_dx, **kw)


@pytest.mark.parametrize("case", DEVICE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_forward_backward(device, case):
    _check_case(device, *case)


@pytest.mark.parametrize("path", ["auto", "gemm", "im2col", "direct", "pixels", "rows", "winograd"])
@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_cpu_every_case_both_dtypes(case, dtype, path, monkeypatch):
    """Every case through each CPU path: packed GEMM, im2col + BLAS, direct, pixel tiles, row
    panels and Winograd (float32 3x3 stride-1 cases; the others run as "direct" forced)."""
    monkeypatch.setattr(cpu_conv2d, "FORCE", None if path == "auto" else path)
    xs, ws, kw, bias, _, need_dx = case
    _check_case("cpu", xs, ws, kw, bias, dtype, need_dx)


# The pixel tiles (MR pixels x NR channels, x read in place): channels below, at and past one
# panel of NR, C = 1, one tap, pixel counts that fill no tile (the last tile repeats the last
# pixel), stride, dilation, padding, groups, wide rows; forward and stride-1 data gradient.
PIXEL_CASES = [
    ((2, 1, 9, 11), (5, 1, 3, 3), {}),
    ((1, 3, 8, 7), (17, 3, 2, 3), dict(padding=1, dilation=(2, 1))),
    ((2, 2, 7, 9), (33, 2, 2, 2), dict(padding=(0, 1), stride=(2, 1))),
    ((2, 1, 6, 5), (16, 1, 1, 1), {}),  # one tap
    ((1, 4, 9, 8), (6, 2, 3, 3), dict(groups=2, padding="same", dilation=2)),
    ((1, 6, 7, 7), (12, 1, 3, 2), dict(groups=6, padding=(2, 1))),
    ((2, 6, 14, 14), (16, 6, 5, 5), {}),
    ((1, 2, 3, 300), (16, 2, 3, 3), dict(padding=1, stride=(1, 3))),
]


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("xs,ws,kw", PIXEL_CASES)
def test_cpu_pixels_forward_and_data_gradient(xs, ws, kw, dtype, monkeypatch):
    monkeypatch.setattr(cpu_conv2d, "FORCE", "pixels")
    _check_forward_and_backward(xs, ws, kw, dtype, seed=5)


def _check_forward_and_backward(xs, ws, kw, dtype, seed):
    """Forward with and without bias, then the backward, on the CPU path forced by the test."""
    x, w, b = _inputs(xs, ws, True, dtype, seed=seed)
    check(F.conv2d, R.conv2d, x, w, b, device="cpu", **kw)
    check(F.conv2d, R.conv2d, x, w, None, device="cpu", **kw)
    dy = _dy(x, w, b, kw, seed=seed + 1)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cpu", **kw)


# The row-panel kernel (6 channels x two halves of 8 pixels of one row; the halves of a row's
# last panel overlap, and a row shorter than a panel is two overlapping halves): channels past
# one panel and not a multiple of 6, rows of 8, 11 and 23, groups, dilation, padding; forward
# and data gradient (its rows are x's).
ROWS_CASES = [
    ((2, 3, 9, 11), (7, 3, 3, 3), dict(padding=1)),
    ((1, 4, 10, 8), (14, 2, 2, 3), dict(groups=2, dilation=(2, 1), padding=(1, 1))),
    ((2, 2, 5, 23), (5, 2, 1, 5), dict(padding=(0, 2))),
]


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("xs,ws,kw", ROWS_CASES)
def test_cpu_rows_forward_and_data_gradient(xs, ws, kw, dtype, monkeypatch):
    monkeypatch.setattr(cpu_conv2d, "FORCE", "rows")
    _check_forward_and_backward(xs, ws, kw, dtype, seed=13)


# Winograd F(2x2, 3x3), every pass (the weight gradient with groups 1): odd and even output
# sizes (a last tile of one row or column), padding 0 to 3 (at 3 the data gradient crops
# dy's padding), groups, channels that fill no MR = 6 rows or NR = 16 lanes (the weight
# gradient's channel panels), chunks of tile rows that end inside a sample and a last chunk
# that is short (``chunk``) and an image narrower than a tile (all on the serial builds);
# forward with and without bias, then the backward.
WINO_CASES = [
    ((2, 3, 7, 9), (5, 3, 3, 3), dict(padding=1), 5),
    ((3, 4, 6, 5), (7, 4, 3, 3), dict(padding=0), 4),
    ((2, 4, 8, 8), (6, 2, 3, 3), dict(padding=1, groups=2), 96),
    ((1, 5, 5, 11), (3, 5, 3, 3), dict(padding=2), 7),
    ((2, 3, 9, 1), (2, 3, 3, 3), dict(padding=1), 3),
    ((2, 17, 8, 8), (20, 17, 3, 3), dict(padding=1), 5),  # 2 channel panels, one short
    ((2, 3, 5, 6), (4, 3, 3, 3), dict(padding=(3, 1)), 4),  # dx: dy's padding cropped
]  # the parallel kernels: test_cpu_winograd_parallel_and_one_thread


@pytest.mark.parametrize("xs,ws,kw,chunk", WINO_CASES)
def test_cpu_winograd_every_pass(xs, ws, kw, chunk, monkeypatch):
    """float32 only: float64 never takes Winograd (``conv2d._k3``)."""
    monkeypatch.setattr(cpu_conv2d, "FORCE", "winograd")
    monkeypatch.setattr(cpu_conv2d.wg_, "CHUNK", chunk)
    monkeypatch.setattr(cpu_conv2d.wgd_, "CHUNK", chunk)
    _check_forward_and_backward(xs, ws, kw, f32, seed=17)


def test_cpu_winograd_parallel_and_one_thread(monkeypatch):
    """A shape large enough for the parallel kernels (two threads where there are two)
    against the reference; then one thread (the serial builds) gives bit for bit the same
    results: the weight gradient sums its tiles in fixed parts."""
    monkeypatch.setattr(cpu_conv2d, "FORCE", "winograd")
    x, w, b = _inputs((3, 32, 12, 13), (33, 32, 3, 3), True, f32, seed=19)
    dy = _dy(x, w, b, dict(padding=1), seed=20)
    check(F.conv2d, R.conv2d, x, w, b, device="cpu", padding=1)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cpu", padding=1)
    runs = []
    for n in (numba.config.NUMBA_NUM_THREADS, 1):
        old = numba.get_num_threads()
        numba.set_num_threads(min(n, 2))
        try:
            runs.append([F.conv2d(x, w, b, padding=1), *F.conv2d_backward(dy, x, w, padding=1)])
        finally:
            numba.set_num_threads(old)
    for a, c in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * inf
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", ["x", "w", "dy"])
def test_cpu_winograd_non_finite_takes_the_gemm(bad, where, monkeypatch):
    """A tile's transforms mix its 16 inputs: NaN/inf in x, dy or w must not reach outputs
    whose windows never hold it (inf - inf is NaN), so such calls leave Winograd. (The data
    gradient of a non-finite w is left out: every path multiplies it by dy's zero padding.)"""
    monkeypatch.setattr(cpu_conv2d, "FORCE", "winograd")
    x, w, b = _inputs((2, 3, 7, 8), (4, 3, 3, 3), True, f32)
    if where == "x":
        x[1, 2, 6, 2] = bad
    if where == "w":
        w[1, 2, 1, 2] = bad
    check(F.conv2d, R.conv2d, x, w, b, device="cpu", padding=1)
    if where != "w":
        dy = _dy(x, w, b, dict(padding=1))
        dy[0, 1, 3, 4] = bad
        check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cpu", padding=1)


# The direct weight gradient's blocks (KB output channels x TB taps, NS samples summed in
# registers, fixed sample chunks): channels, taps and samples that fill no block evenly,
# several sample groups a chunk, groups, dilation; the bias gradient from the same pass.
DW_CASES = [
    ((19, 3, 6, 5), (7, 3, 3, 3), dict(padding=1)),  # chunks of 5 samples: groups of 4 + 1
    ((9, 4, 7, 9), (10, 2, 2, 3), dict(groups=2, dilation=(2, 1), padding=(1, 0))),
    ((5, 2, 4, 37), (5, 2, 1, 5), {}),  # 5 taps, a wide row
]


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("xs,ws,kw", DW_CASES)
def test_cpu_direct_weight_gradient_blocks(xs, ws, kw, dtype, monkeypatch):
    monkeypatch.setattr(cpu_conv2d, "FORCE", "direct")
    x, w, b = _inputs(xs, ws, True, dtype, seed=11)
    dy = _dy(x, w, b, kw, seed=12)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cpu", need_dx=False, **kw)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * inf
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("padding", [0, 1])
def test_cpu_pixels_non_finite(bad, padding, monkeypatch):
    """NaN/inf reach exactly the outputs whose windows hold them (also at the last tap)."""
    monkeypatch.setattr(cpu_conv2d, "FORCE", "pixels")
    x, w, b = _inputs((2, 3, 7, 8), (16, 3, 3, 3), True, f32)
    x[0, 2, 6, 7] = bad  # seen only by the last taps (c=2, r=2, s=2) of the bottom-right pixel
    x[1, 0, 0, 0] = bad
    check(F.conv2d, R.conv2d, x, w, b, device="cpu", padding=padding)


GRAD_CASES = [
    ((2, 2, 5, 6), (3, 2, 3, 3), dict(padding=1)),
    ((1, 4, 6, 5), (4, 2, 2, 3), dict(groups=2, stride=2, padding=(1, 2))),
    ((2, 3, 7, 6), (3, 1, 3, 2), dict(groups=3, dilation=2, padding="same")),
    ((1, 2, 6, 7), (2, 2, 2, 2), dict(padding="same")),  # even kernel: extra row/col at b/r
    ((1, 2, 7, 7), (3, 2, 3, 3), dict(stride=3, dilation=(2, 1), padding="valid")),
]


@pytest.mark.parametrize("xs,ws,kw", GRAD_CASES)
def test_gradcheck_cpu(xs, ws, kw):
    x, w, b = _inputs(xs, ws, True, f64, seed=7)

    def f(x, w, b):
        return F.conv2d(x, w, b, **kw)

    def backward(dy, x, w, b):
        return F.conv2d_backward(dy, x, w, **kw)

    gradcheck(f, (x, w, b), backward, name=f"conv2d{kw}")


def test_need_dx_false_and_db():
    x, w, b = _inputs((2, 3, 6, 6), (4, 3, 3, 3), True, f32)
    dy = _dy(x, w, b, {})
    dx, dw, db = F.conv2d_backward(dy, x, w, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(db, dy.sum((0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert dw.shape == w.shape and dw.dtype == f32


@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((64, 6, 14, 14), (16, 6, 5, 5), {}),  # direct kernels (stride 1)
        ((40, 4, 33, 33), (8, 4, 3, 3), dict(stride=2)),  # im2col: 16 samples a chunk, 16+16+8
        ((3, 8, 48, 48), (16, 8, 3, 3), dict(stride=2, padding=1)),  # im2col: one sample a chunk
    ],
)
def test_cpu_float32_larger(xs, ws, kw):
    x, w, b = _inputs(xs, ws, True, f32, seed=11)
    check(F.conv2d, R.conv2d, x, w, b, device="cpu", **kw)
    dy = _dy(x, w, b, kw)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cpu", **kw)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * inf
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_propagates_like_reference(device, bad):
    """NaN/inf at a border column reaches exactly the outputs and weight taps that see it."""
    x, w, b = _inputs((2, 2, 6, 7), (3, 2, 3, 3), True, f32)
    x[0, 1, 2, 0] = bad
    x[1, 0, 5, 6] = bad
    check(F.conv2d, R.conv2d, x, w, b, device=device)
    dy = _dy(x, w, b, {})
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device=device)


def test_non_contiguous_input():
    x, w, b = _inputs((2, 3, 7, 6), (4, 3, 3, 3), True, f64)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    check(F.conv2d, R.conv2d, xt, w, b, device="cpu", padding=1)


@st.composite
def _conv_problem(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    same = draw(st.booleans())
    if same:
        stride, padding = (1, 1), "same"
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    pad_h = dh * (r - 1) if same else 2 * padding[0]
    pad_w = dw * (s - 1) if same else 2 * padding[1]
    h = draw(st.integers(max(1, dh * (r - 1) + 1 - pad_h), 10))
    w_ = draw(st.integers(max(1, dw * (s - 1) + 1 - pad_w), 10))
    n = draw(st.integers(1, 3))
    kw = dict(stride=stride, padding=padding, dilation=(dh, dw), groups=groups)
    xs, ws = (n, cg * groups, h, w_), (kg * groups, cg, r, s)
    return xs, ws, kw, draw(st.booleans()), draw(st.sampled_from([f32, f64]))


@settings(max_examples=25, deadline=None)
@given(_conv_problem(), st.integers(0, 2**16))
def test_property_matches_reference_cpu(problem, seed):
    xs, ws, kw, bias, dtype = problem
    x, w, b = _inputs(xs, ws, bias, dtype, seed)
    check(F.conv2d, R.conv2d, x, w, b, device="cpu", **kw)
    dy = _dy(x, w, b, kw, seed + 3)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cpu", **kw)


# ---- bad input ------------------------------------------------------------------------------

X, W = randn((2, 4, 6, 6), f32, 0), randn((6, 2, 3, 3), f32, 1)  # valid with groups=2


@pytest.mark.parametrize(
    "args,kw,exc,match",
    [
        ((X[0], W), {}, ValueError, r"x must be 4-D.*\(4, 6, 6\)"),
        ((X, W[0]), {}, ValueError, r"weight must be 4-D.*\(2, 3, 3\)"),
        ((X, W), {}, ValueError, r"x \(2, 4, 6, 6\) has 4 channels but weight \(6, 2, 3, 3\)"),
        ((X, W), dict(groups=3), ValueError, r"4 channels, not divisible by groups=3"),
        ((X, randn((5, 2, 3, 3))), dict(groups=2), ValueError, r"\(5, 2, 3, 3\).*groups=2"),
        ((X, W), dict(groups=0), ValueError, r"groups must be positive"),
        ((X, W), dict(groups=2.0), TypeError, r"groups must be an int"),
        ((X, randn((6, 2, 7, 3))), dict(groups=2), ValueError, r"kernel \(7, 3\).*larger"),
        ((X, W), dict(groups=2, dilation=3), ValueError, r"dilated \(7, 7\).*\(6, 6\)"),
        ((X, W), dict(groups=2, stride=0), ValueError, r"stride must be positive"),
        ((X, W), dict(groups=2, stride=(1, -1)), ValueError, r"stride must be positive"),
        ((X, W), dict(groups=2, dilation=0), ValueError, r"dilation must be positive"),
        ((X, W), dict(groups=2, padding=-1), ValueError, r"padding must be non-negative"),
        ((X, W), dict(groups=2, padding="full"), ValueError, r"'valid' or 'same'.*'full'"),
        ((X, W), dict(groups=2, padding="same", stride=2), ValueError, r"'same' needs stride 1"),
        ((X, W), dict(groups=2, stride=(1, 2, 3)), TypeError, r"stride must be an int or a pair"),
        ((X, W, randn((5,))), dict(groups=2), ValueError, r"bias has shape \(5,\).*\(6,\)"),
        ((X, W, randn((6, 1))), dict(groups=2), ValueError, r"bias must be 1-D.*\(6, 1\)"),
        ((X, W.astype(f64)), dict(groups=2), TypeError, r"weight has dtype float64.*float32"),
        ((X.tolist(), W), dict(groups=2), TypeError, r"x must be a NumPy array"),
        ((X.astype(np.int32), W), dict(groups=2), TypeError, r"x must be float32 or float64"),
    ],
)
def test_bad_input_forward(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        F.conv2d(*args, **kw)


def test_bad_input_backward():
    kw = dict(groups=2, padding=1)
    dy = randn((2, 6, 6, 6), f32, 2)
    F.conv2d_backward(dy, X, W, **kw)  # the valid call
    with pytest.raises(ValueError, match=r"dy has shape \(2, 6, 5, 5\), expected \(2, 6, 6, 6\)"):
        F.conv2d_backward(randn((2, 6, 5, 5)), X, W, **kw)
    with pytest.raises(ValueError, match=r"dy must be 4-D.*\(6, 6, 6\)"):
        F.conv2d_backward(dy[0], X, W, **kw)
    with pytest.raises(TypeError, match=r"dy has dtype float64"):
        F.conv2d_backward(dy.astype(f64), X, W, **kw)
    with pytest.raises(ValueError, match=r"x \(2, 4, 6, 6\) has 4 channels"):
        F.conv2d_backward(dy, X, W, padding=1)
    with pytest.raises(TypeError, match=r"need_dx must be a bool"):
        F.conv2d_backward(dy, X, W, need_dx="no", **kw)


@pytest.mark.skipif(not _cuda.available(), reason="needs a GPU or the simulator")
def test_host_device_mix():
    with pytest.raises(TypeError, match=r"x on host, weight on device"):
        F.conv2d(X, _cuda.to_device(W), groups=2)
