"""CUDA conv2d kernels on grids of several blocks: tile edges, groups, split-K, determinism.

The GEMM kernels run on the core of ``_gemm_core`` (tiles 128x128, 128x64, 64x32 for float32,
64x64 and 32x32 for float64; reduction slices of 8). CASES run with the tile the launcher
picks (the small ones here): several row tiles, column tiles cut by K = 5 and K = 70, 65
weight-gradient columns (64 + the bias column), reductions that are not multiples of 8, a
weight gradient split over several chunks. VARIANTS force each tile once, on shapes whose
GEMM sizes sit at 1, BK - 1, BK + 1 and tile + 1, with groups, dilation, stride 2 and 3 (the
data gradient's stride phases, some with no taps) and 'same' with an even kernel. Kept small
for the simulator, where every CUDA thread is a Python thread.
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


# (tile, x shape, weight shape, options, dtype): GEMM sizes as (rows, columns, reduction)
VARIANTS = [
    # fwd (24, 5, 18 = 2*BK + 2); stride 2: dx phases (2x2), weight grad (5, 19, 24)
    ("128x128", (2, 3, 6, 7), (5, 3, 3, 2), dict(stride=2, padding=1), f32),
    # groups 2, stride 3 (9 phases, some without taps), dilation (2, 1); reduction 6 = BK - 2
    (
        "128x64",
        (1, 4, 8, 7),
        (6, 2, 2, 3),
        dict(stride=3, padding=(2, 1), dilation=(2, 1), groups=2),
        f32,
    ),
    # 'same' with an even kernel; fwd rows 81 = 64 + 17, columns 33 = 32 + 1, reduction 9 = BK + 1
    ("64x32", (1, 1, 9, 9), (33, 1, 3, 2), dict(padding="same"), f32),
    # 1x1 conv: one output channel (columns 1), reduction 7 = BK - 1; dilation ignored at R=S=1
    ("64x64", (2, 7, 5, 5), (1, 7, 1, 1), dict(dilation=2), f64),
    # groups 2 with 33 = 32 + 1 channels a group, stride 2, reduction 9 = BK + 1
    ("32x32", (1, 2, 6, 6), (66, 1, 3, 3), dict(stride=2, padding=1, groups=2), f64),
]


@pytest.mark.parametrize("tile, xs, ws, opts, dtype", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_conv2d_every_tile_variant(monkeypatch, tile, xs, ws, opts, dtype):
    from numba_cnn.kernels.cuda import _gemm_core

    monkeypatch.setattr(_gemm_core, "FORCE", tile)
    x = randn(xs, dtype, seed=21)
    w = randn(ws, dtype, seed=22)
    b = randn((ws[0],), dtype, seed=23)
    check(F.conv2d, R.conv2d, x, w, b, device="cuda", **opts)
    y = R.conv2d(x, w, **opts)
    dy = randn(y.shape, dtype, seed=24)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cuda", **opts)


def test_conv2d_one_by_one_everything(monkeypatch):
    # M = N = K = 1 for every GEMM: one pixel, one channel in and out
    from numba_cnn.kernels.cuda import _gemm_core

    monkeypatch.setattr(_gemm_core, "FORCE", "64x32")
    x = randn((1, 1, 1, 1), f32, seed=25)
    w = randn((1, 1, 1, 1), f32, seed=26)
    check(F.conv2d, R.conv2d, x, w, randn((1,), f32, seed=27), device="cuda")
    dy = randn((1, 1, 1, 1), f32, seed=28)
    check(F.conv2d_backward, R.conv2d_backward, dy, x, w, device="cuda")


def test_ptx_specs_name_every_gemm_variant():
    from numba_cnn.kernels.cuda import conv2d as K
    from numba_cnn.kernels.cuda._gemm_core import TILES

    names = {s[0] for s in K.ptx_specs()}
    assert K.GEMM_KERNELS <= names
    for dt in TILES:
        for t in TILES[dt]:
            for k in ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight"):
                assert f"{k}_{t.name}_{dt}" in K.GEMM_KERNELS
    assert all(n.endswith(("_float32", "_float64")) for n in names)


def test_conv2d_backward_weight_split_k_is_deterministic():
    # 2*9*9 = 162 output pixels: the weight gradient is summed in 3 chunks (of 56: slices of 8)
    from numba_cnn.kernels.cuda import conv2d as K

    assert K._chunking(162, 1) == (56, 3)
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
