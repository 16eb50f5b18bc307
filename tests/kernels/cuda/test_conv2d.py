"""CUDA conv2d kernels on grids of several blocks: tile edges, groups, split-K, determinism.

The kernels tile 64 rows x 64 columns per block and reduce in slices of 16; the shapes here
give two or more row tiles (N*P*Q, N*H*W in 65..300), column tiles cut by K = 5 and K = 70
(and 65 weight-gradient columns: 64 + the bias column), reductions that are not multiples of
16, and a weight gradient split over several N*P*Q chunks. Kept small for the simulator, where
every CUDA thread is a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.testing import assert_close, check, host, on, randn
from numba_cnn.testing import reference as R

pytestmark = pytest.mark.skipif(not _cuda.available(), reason="no CUDA GPU and no simulator")

f32, f64 = np.float32, np.float64

# (x shape, weight shape, options, bias, dtype): forward and backward of each on the GPU
CASES = [
    # 84 output pixels: two row tiles; reduction 27; 5 columns of 64; weight grad in 2 chunks
    ((2, 3, 7, 6), (5, 3, 3, 3), dict(padding=1), True, f32),
    # stride 2, dilation 2, asymmetric padding, groups 2, no bias, float64; 75 output pixels
    ((3, 4, 9, 9), (6, 2, 3, 3), dict(stride=2, padding=(2, 1), dilation=2, groups=2), False, f64),
    # depthwise (per-element kernels), stride 2, dilation (1, 2); 5 channels
    (
        (2, 5, 9, 10),
        (5, 1, 3, 3),
        dict(stride=2, padding=(1, 2), dilation=(1, 2), groups=5),
        True,
        f32,
    ),
    # channel multiplier 2 (C/g = 1, K/g = 2): the GEMM with 2 groups in the grid's z
    ((1, 2, 9, 10), (4, 1, 3, 3), dict(padding=1, groups=2), True, f32),
    # K = 70: two column tiles (forward) and two row tiles (weight gradient); "same", odd pad
    ((2, 2, 6, 6), (70, 2, 1, 2), dict(padding="same"), True, f32),
    # C/g*R*S = 64 exactly: the bias column opens a second weight-gradient column tile
    ((1, 4, 10, 10), (5, 4, 4, 4), dict(padding=(1, 2), stride=(1, 2)), True, f64),
]
CASE_IDS = ["pad1", "s2d2g2f64", "depthwise", "multiplier", "k70same", "l64"]


@pytest.mark.parametrize("xs, ws, opts, bias, dtype", CASES, ids=CASE_IDS)
def test_conv2d_forward_multiblock(xs, ws, opts, bias, dtype):
    x = randn(xs, dtype, seed=1)
    w = randn(ws, dtype, seed=2)
    b = randn((ws[0],), dtype, seed=3) if bias else None
    check(F.conv2d, R.conv2d, x, w, b, device="cuda", **opts)


@pytest.mark.parametrize("xs, ws, opts, bias, dtype", CASES, ids=CASE_IDS)
def test_conv2d_backward_multiblock(xs, ws, opts, bias, dtype):
    x = randn(xs, dtype, seed=4)
    w = randn(ws, dtype, seed=5)
    y = R.conv2d(x, w, **opts)
    dy = randn(y.shape, dtype, seed=6)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cuda", **opts)


def test_conv2d_backward_weight_split_k_is_deterministic():
    # 2*9*9 = 162 output pixels: the weight gradient is summed in 3 chunks of 64
    from numba_cnn.kernels.cuda import conv2d as K

    assert K._chunking(162, 1) == (64, 3)
    x = randn((2, 3, 9, 9), f32, seed=7)
    w = randn((5, 3, 3, 3), f32, seed=8)
    dy = randn((2, 5, 9, 9), f32, seed=9)
    first = check(
        F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cuda", padding=1, need_dx=False
    )
    again = host(F.conv2d_backward(*on("cuda", dy, x, w), padding=1, need_dx=False))
    for a, b in zip(first[1:], again[1:], strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit: a fixed summation order


def test_conv2d_depthwise_backward_weight_in_chunks(monkeypatch):
    # the depthwise weight gradient split into 4 chunks (2*7*7 = 98 terms, at least 32 each)
    from numba_cnn.kernels.cuda import conv2d as K

    monkeypatch.setattr(K, "DW_MIN_CHUNK", 32)
    assert K._chunking(98, 2, K.DW_MIN_CHUNK, 1) == (25, 4)
    x = randn((2, 2, 7, 6), f64, seed=13)
    w = randn((2, 1, 3, 2), f64, seed=14)
    dy = randn((2, 2, 7, 7), f64, seed=15)
    opts = dict(padding=(1, 1), groups=2, need_dx=False)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cuda", **opts)


def test_conv2d_backward_weight_without_db_launcher():
    # the launcher's db=None path (no bias column) writes dw alone
    from numba_cnn.kernels.cuda import conv2d as K

    x = randn((2, 2, 8, 9), f64, seed=10)
    w = randn((3, 2, 2, 2), f64, seed=11)
    dy = randn((2, 3, 7, 8), f64, seed=12)
    dw = _cuda.to_device(np.full(w.shape, np.nan))
    K.conv2d_backward_weight(*on("cuda", dy, x), dw, None, (1, 1), (0, 0), (1, 1), 1)
    assert_close(dw, R.conv2d_backward(dy, x, w)[1], name="dw")
