"""linear / linear_backward against the NumPy reference, on the CPU and the CUDA kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numba_cnn import functional as F
from numba_cnn._cuda import available, is_device_array
from numba_cnn.kernels.cpu import linear as cpu_linear
from numba_cnn.testing import check, gradcheck, host, on, randn
from numba_cnn.testing import reference as R

F32, F64 = np.float32, np.float64

# (M, I, O): none a multiple of the 64x64 tile or the 16-deep K-tile. (70, 33, 65) spans 2x2
# output tiles and three K-tiles (about 8 s for forward + backward under the simulator).
CASES = [
    ((3, 5, 7), F32, True),
    ((1, 4, 2), F64, False),
    ((2, 17, 9), F32, False),
    ((70, 33, 65), F64, True),
    ((66, 18, 3), F32, True),
]


def _args(shape, dtype, bias, seed=0):
    M, I, O = shape
    x = randn((M, I), dtype, seed)
    w = randn((O, I), dtype, seed + 1)
    b = randn((O,), dtype, seed + 2) if bias else None
    return x, w, b


@pytest.mark.parametrize("shape,dtype,bias", CASES)
def test_linear_forward(device, shape, dtype, bias):
    x, w, b = _args(shape, dtype, bias)
    check(F.linear, R.linear, x, w, b, device=device)


@pytest.mark.parametrize("path", ["dots", "gemm"])
@pytest.mark.parametrize("shape,dtype,bias", CASES + [((4, 520, 6), F32, True)])
def test_linear_forward_cpu_paths(shape, dtype, bias, path, monkeypatch):
    """The CPU forward by dot products (blocks of 3 rows x 4 outputs, the last I % VL columns
    scalar) and by the GEMM, each forced."""
    monkeypatch.setattr(cpu_linear, "FORWARD", path)
    x, w, b = _args(shape, dtype, bias)
    check(F.linear, R.linear, x, w, b, device="cpu")


@pytest.mark.parametrize("shape,dtype,bias", CASES)
def test_linear_backward(device, shape, dtype, bias):
    x, w, _ = _args(shape, dtype, bias)
    dy = randn((shape[0], shape[2]), dtype, seed=7)
    check(F.linear_backward, R.linear_backward, dy, x, w, device=device, need_dx=bias)


def _ref_nd(x, w, b=None):
    return R.linear(x.reshape(-1, x.shape[-1]), w, b).reshape(x.shape[:-1] + (w.shape[0],))


def _ref_nd_backward(dy, x, w):
    dx, dw, db = R.linear_backward(dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1]), w)
    return dx.reshape(x.shape), dw, db


@pytest.mark.parametrize("xshape", [(2, 3, 5), (5,), (2, 1, 2, 5)])
def test_linear_leading_dims(device, xshape):
    x, w, b = randn(xshape, F32, 1), randn((4, 5), F32, 2), randn((4,), F32, 3)
    y = check(F.linear, _ref_nd, x, w, b, device=device)
    assert y.shape == xshape[:-1] + (4,)
    dy = randn(xshape[:-1] + (4,), F32, 4)
    check(F.linear_backward, _ref_nd_backward, dy, x, w, device=device)


@pytest.mark.parametrize("M,I,O", [(0, 3, 4), (2, 0, 4), (3, 4, 0)])
def test_linear_empty(device, M, I, O):
    x, w, b = randn((M, I), F64, 1), randn((O, I), F64, 2), randn((O,), F64, 3)
    check(F.linear, R.linear, x, w, b, device=device)  # I == 0 gives the bias
    check(F.linear_backward, R.linear_backward, randn((M, O), F64, 4), x, w, device=device)


def test_linear_stays_on_device(device):
    x, w, b = on(device, randn((3, 4), F32, 1), randn((2, 4), F32, 2), randn((2,), F32, 3))
    outs = [F.linear(x, w, b), *F.linear_backward(F.linear(x, w, b), x, w)]
    assert all(is_device_array(o) == (device == "cuda") for o in outs)


def test_linear_gradcheck():
    x, w, b = randn((3, 4), F64, 1), randn((5, 4), F64, 2), randn((5,), F64, 3)
    gradcheck(F.linear, (x, w, b), lambda dy, x, w, b: F.linear_backward(dy, x, w), name="linear")
    x3 = randn((2, 3, 4), F64, 4)
    gradcheck(
        lambda x, w: F.linear(x, w),
        (x3, w),
        lambda dy, x, w: F.linear_backward(dy, x, w)[:2],
        name="linear (2, 3, 4) no bias",
    )


@settings(max_examples=25, deadline=None)
@given(
    M=st.integers(1, 40),
    I=st.integers(1, 40),
    O=st.integers(1, 40),
    bias=st.booleans(),
    f64=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_property(M, I, O, bias, f64, seed):
    x, w, b = _args((M, I, O), F64 if f64 else F32, bias, seed)
    check(F.linear, R.linear, x, w, b, device="cpu")
    dy = randn((M, O), x.dtype, seed + 3)
    check(F.linear_backward, R.linear_backward, dy, x, w, device="cpu", need_dx=bias)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("M,I,O", [(67, 333, 29), (5, 1301, 7), (130, 17, 1001)])
def test_linear_cpu_parallel_gemm(M, I, O, dtype, monkeypatch):
    """The CPU GEMM's parallel kernel (forced below its size threshold) on odd shapes: several
    K blocks, K split across threads (few outputs, long K), N past one block."""
    from numba_cnn.kernels.cpu import _gemm

    monkeypatch.setattr(_gemm, "SERIAL_FMA", 0)
    monkeypatch.setattr(_gemm, "_threads", lambda: 2)
    x, w, b = _args((M, I, O), dtype, True, seed=5)
    check(F.linear, R.linear, x, w, b, device="cpu")
    check(F.linear, R.linear, x, w, None, device="cpu")
    dy = randn((M, O), dtype, seed=9)
    check(F.linear_backward, R.linear_backward, dy, x, w, device="cpu")
    check(F.linear_backward, R.linear_backward, dy, x, w, device="cpu", need_dx=False)


@pytest.mark.parametrize("pair", [True, False])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("M,I,O", [(67, 333, 29), (130, 17, 1001), (3, 5, 7)])
def test_linear_backward_cpu_pair(M, I, O, dtype, pair, monkeypatch):
    """The CPU backward's two products at once, one a thread (``_gemm_pair``, forced on with
    the size threshold at 0) and one after the other (forced off), on odd shapes."""
    from numba_cnn.kernels.cpu import _gemm, _gemm_pair

    monkeypatch.setattr(_gemm, "SERIAL_FMA", 0)
    monkeypatch.setattr(_gemm_pair, "num_threads", lambda: 2 if pair else 3)
    x, w, _ = _args((M, I, O), dtype, False, seed=11)
    dy = randn((M, O), dtype, seed=12)
    check(F.linear_backward, R.linear_backward, dy, x, w, device="cpu")


X, W, B = randn((2, 5), F32, 1), randn((3, 5), F32, 2), randn((3,), F32, 3)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((np.array(1.0, F32), W), ValueError, "at least 1 dimension"),
        ((X, W[0]), ValueError, r"weight must be 2-D .*got shape \(5,\)"),
        ((X, randn((3, 4), F32)), ValueError, r"x \(2, 5\) has 5 features but weight \(3, 4\)"),
        ((X, W, randn((4,), F32)), ValueError, r"bias \(4,\) does not match weight \(3, 5\)"),
        ((X, W, randn((1, 3), F32)), ValueError, "bias must be 1-D"),
        ((X, W.astype(F64)), TypeError, "weight has dtype float64 but x has dtype float32"),
        ((X.astype(np.int32), W), TypeError, "x must be float32 or float64"),
        ((X.tolist(), W), TypeError, "x must be a NumPy array"),
    ],
)
def test_linear_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        F.linear(*args)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((randn((2, 4), F32), X, W), ValueError, r"dy has shape \(2, 4\), expected \(2, 3\)"),
        ((randn((3, 3), F32), X, W), ValueError, r"dy has shape \(3, 3\), expected \(2, 3\)"),
        ((randn((2, 3), F32), X, W.T), ValueError, "has 5 features but weight"),
        ((randn((2, 3), F64), X, W), TypeError, "must share one float dtype"),
    ],
)
def test_linear_backward_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        F.linear_backward(*args)


@pytest.mark.skipif(not available(), reason="no GPU and no simulator")
def test_linear_mixed_devices():
    with pytest.raises(TypeError, match="weight on device"):
        F.linear(X, on("cuda", W))
    assert host(F.linear(on("cuda", X), on("cuda", W))).shape == (2, 3)
