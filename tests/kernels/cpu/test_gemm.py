"""The CPU GEMM (``kernels/cpu/_gemm``): every driver variant at tile and block edges.

Shapes are no multiple of the micro-tile (MR x NR), of kc or of the blocks: 1, tile +- 1,
several K blocks, K split across threads (partial sums), B packed or read in place, operands
read along rows or columns (transposes), bias per row or column, accumulation, K = 0;
serial and parallel kernels; float32 and float64, against float64 NumPy products.
"""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn.kernels.cpu import _gemm as G
from numba_cnn.kernels.cpu._gemm_micro import TILES
from numba_cnn.testing import assert_close, randn

f32, f64 = np.float32, np.float64


def _run(M, N, K, dtype, ta=False, tb=False, bias_mode=0, accumulate=False, in_place=None):
    """C (+)= op(A) @ op(B) (+ bias) through index vectors; returns (C, float64 expected)."""
    a = randn((K, M) if ta else (M, K), dtype, 1)
    b = randn((N, K) if tb else (K, N), dtype, 2)
    bias = randn((M if bias_mode == 1 else N,), dtype, 3) if bias_mode else None
    c0 = randn((M, N), dtype, 4)
    c = c0.copy() if accumulate else np.full((M, N), np.nan, dtype)
    # A[m, k] = af[arow[m] + acol[k]]: row-major (M, K), or (K, M) read as its transpose
    arow, acol = (G.ramp(M, 1), G.ramp(K, M)) if ta else (G.ramp(M, K), G.ramp(K, 1))
    brow, bcol = (G.ramp(K, 1), G.ramp(N, K)) if tb else (G.ramp(K, N), G.ramp(N, 1))
    G.gemm(
        a.reshape(-1), arow, acol, not ta, b.reshape(-1), brow, bcol, tb,
        c.reshape(-1), G.ramp(M, N), G.ramp(N, 1), bias, bias_mode, accumulate, in_place,
    )  # fmt: skip
    a64, b64 = a.astype(f64), b.astype(f64)
    exp = (a64.T if ta else a64) @ (b64.T if tb else b64)
    if bias_mode == 1:
        exp += bias[:, None]
    elif bias_mode == 2:
        exp += bias[None, :]
    if accumulate:
        exp += c0
    return c, exp


def _shapes(dtype):
    mr, nr = TILES[np.dtype(dtype)]
    return [
        (1, 1, 1),
        (mr + 1, nr - 1, 3),
        (mr - 1, nr + 1, 321),  # two K blocks (kc <= 320)
        (2 * mr + 1, 3 * nr + 5, 700),  # three K blocks
        (149, 37, 17),  # two M blocks (mc <= 144)
        (5, 290, 9),  # N past one 256-wide block
    ]


@pytest.mark.parametrize("a_in_place", [True, False])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [f32, f64])
def test_gemm_shapes_transposes(dtype, parallel, a_in_place, monkeypatch):
    """Rows of A read where they lie (contiguous along K) or packed, B packed or in place."""
    monkeypatch.setattr(G, "A_IN_PLACE", a_in_place)
    if parallel:  # every size through the prange kernel
        monkeypatch.setattr(G, "SERIAL_FMA", 0)
    for M, N, K in _shapes(dtype):
        for ta in (False, True):
            for tb in (False, True):
                c, exp = _run(M, N, K, dtype, ta, tb)
                assert_close(c, exp, name=f"C {M}x{N}x{K} ta={ta} tb={tb}")


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("dtype", [f32, f64])
def test_gemm_bias_accumulate_in_place(dtype, in_place, monkeypatch):
    monkeypatch.setattr(G, "SERIAL_FMA", 0)
    for M, N, K in _shapes(dtype):
        for bias_mode in (1, 2):
            c, exp = _run(M, N, K, dtype, bias_mode=bias_mode, in_place=in_place)
            assert_close(c, exp, name=f"C {M}x{N}x{K} bias_mode={bias_mode}")
        c, exp = _run(M, N, K, dtype, accumulate=True, in_place=in_place)
        assert_close(c, exp, name=f"C += {M}x{N}x{K}")


@pytest.mark.parametrize("dtype", [f32, f64])
def test_gemm_split_k(dtype, monkeypatch):
    """Few output blocks, long K: K chunks summed through the partial buffer (ksplit > 1)."""
    monkeypatch.setattr(G, "SERIAL_FMA", 0)
    monkeypatch.setattr(G, "_threads", lambda: 3)  # more threads than blocks on any machine
    for M, N, K in [(5, 7, 1290), (7, 9, 1500)]:
        assert G.blocking(dtype, M, N, K, 3)[3] == 3
        for bias_mode in (0, 1, 2):
            c, exp = _run(M, N, K, dtype, bias_mode=bias_mode)
            assert_close(c, exp, name=f"C {M}x{N}x{K} split K, bias_mode={bias_mode}")
        c, exp = _run(M, N, K, dtype, ta=True, accumulate=True)
        assert_close(c, exp, name=f"C += {M}x{N}x{K} split K")


@pytest.mark.parametrize("bias_mode", [0, 1, 2])
def test_gemm_empty_k_gives_bias(bias_mode):
    c, exp = _run(4, 5, 0, f64, bias_mode=bias_mode)
    assert_close(c, exp, name="K = 0")


def test_gemm_workspaces_reused():
    """A second call of the same shape allocates no new packing buffers."""
    _run(33, 65, 400, f32)
    before = {k: v.ctypes.data for k, v in G._LOCAL.ws.items()}
    _run(33, 65, 400, f32)
    assert {k: v.ctypes.data for k, v in G._LOCAL.ws.items()} == before


@pytest.mark.parametrize("dtype", [f32, f64])
def test_gemm_b_in_place_runs(dtype, monkeypatch):
    """B read in place from runs of columns with gaps between them (image rows of a padded
    plane): panels of one run, of two half-panel runs (two loads) and of runs that split
    elsewhere (packed). The gaps hold NaN, so a read of one shows up in C."""
    monkeypatch.setattr(G, "SERIAL_FMA", 0)
    mr, nr = TILES[np.dtype(dtype)]
    for run, (M, N, K) in [(nr // 2, (mr + 1, 3 * nr + 2, 40)), (nr // 2 + 3, (5, 2 * nr, 7)),
                           (3 * nr // 2, (2 * mr, 4 * nr - 1, 330))]:  # fmt: skip
        gap = 2
        rows = -(-N // run) * (run + gap)
        b = np.full((K, rows), np.nan, dtype)
        bcol = (np.arange(N) // run) * (run + gap) + np.arange(N) % run
        b[:, bcol] = randn((K, N), dtype, 2)
        a = randn((M, K), dtype, 1)
        c = np.full((M, N), np.nan, dtype)
        G.gemm(
            a.reshape(-1), G.ramp(M, K), G.ramp(K, 1), True,
            b.reshape(-1), G.ramp(K, rows), bcol.astype(np.int64), False,
            c.reshape(-1), G.ramp(M, N), G.ramp(N, 1), b_in_place=True,
        )  # fmt: skip
        exp = a.astype(f64) @ b[:, bcol].astype(f64)
        assert_close(c, exp, name=f"C {M}x{N}x{K}, B in runs of {run}")
