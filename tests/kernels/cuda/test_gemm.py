"""The tiled GEMM and column-sum kernels directly: every transpose variant at tile boundaries.

Tiles are 64x64 outputs per block with K-tiles of 16. Shapes sit exactly on a tile, one past
it, and far below it; K = 0 (bias only) and K not a multiple of 16. Kept to one or a few
blocks: under the simulator every CUDA thread is a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn._cuda as _cuda
from numba_cnn.testing import assert_close, randn

pytestmark = pytest.mark.skipif(not _cuda.available(), reason="no CUDA GPU and no simulator")

f32, f64 = np.float32, np.float64


# (M, N, K, ta, tb, bias, dtype); C (M, N) = op(A) @ op(B) + bias
CASES = [
    (64, 64, 16, False, True, True, f32),  # exactly one tile, one K-tile
    (65, 3, 17, False, False, False, f64),  # one row past the tile, one K past the K-tile
    (5, 65, 40, True, False, False, f32),  # one column past the tile, three K-tiles
    (7, 9, 0, False, True, True, f64),  # K = 0: the bias alone
    (2, 3, 1, True, True, False, f32),  # both transposed (not launched by linear, still valid)
]


@pytest.mark.parametrize("M,N,K,ta,tb,bias,dtype", CASES)
def test_gemm_variants(M, N, K, ta, tb, bias, dtype):
    from numba_cnn.kernels.cuda.gemm import launch_gemm

    a = randn((K, M) if ta else (M, K), dtype, 1)
    b = randn((N, K) if tb else (K, N), dtype, 2)
    bv = randn((N,), dtype, 3) if bias else None
    c = _cuda.cuda.to_device(np.full((M, N), np.nan, dtype))
    dev = [None if v is None else _cuda.to_device(v) for v in (a, b, bv)]
    launch_gemm(*dev, c, ta=ta, tb=tb)
    a64, b64 = a.astype(f64), b.astype(f64)
    exp = (a64.T if ta else a64) @ (b64.T if tb else b64)
    if bias:
        exp = exp + bv
    assert_close(_cuda.to_host(c), exp, name="gemm")


@pytest.mark.parametrize("M,N,dtype", [(1, 5, f32), (33, 17, f64), (0, 3, f32)])
def test_colsum(M, N, dtype):
    from numba_cnn.kernels.cuda.gemm import launch_colsum

    a = randn((M, N), dtype, 4)
    out = _cuda.cuda.to_device(np.full((N,), np.nan, dtype))
    launch_colsum(_cuda.to_device(a), out)
    assert_close(_cuda.to_host(out), a.astype(f64).sum(0), name="colsum")


def test_ptx_specs_cover_every_variant():
    from numba_cnn.kernels.cuda import gemm

    names = {n for n, _, _ in gemm.ptx_specs()}
    for dt in ("float32", "float64"):
        for v in ("gemm_nt_bias", "gemm_nt", "gemm_nn", "gemm_tn", "colsum"):
            assert f"{v}_{dt}" in names
