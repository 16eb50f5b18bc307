"""The GEMM core through the dense layer's kernels: every tile variant at tile edges.

Each variant of ``_gemm_core.TILES`` is forced (``launch_gemm(tile=...)``) on shapes that are
no multiple of any tile: M, N, K of 1, BK - 1, BK + 1, 2*BK + 1 and tile + 1 (two blocks on
that axis), every transpose, K = 0 (the bias alone). Kept to one or two blocks: under the
simulator every CUDA thread is a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn._cuda as _cuda
from numba_cnn.testing import assert_close, randn

pytestmark = pytest.mark.skipif(not _cuda.available(), reason="no CUDA GPU and no simulator")

f32, f64 = np.float32, np.float64


def _tiles():
    from numba_cnn.kernels.cuda._gemm_core import TILES

    return [(np.dtype(dt).type, t) for dt in TILES for t in TILES[dt]]


def _run(M, N, K, ta, tb, bias, dtype, tile=None):
    from numba_cnn.kernels.cuda.gemm import launch_gemm

    a = randn((K, M) if ta else (M, K), dtype, 1)
    b = randn((N, K) if tb else (K, N), dtype, 2)
    bv = randn((N,), dtype, 3) if bias else None
    c = _cuda.cuda.to_device(np.full((M, N), np.nan, dtype))
    dev = [None if v is None else _cuda.to_device(v) for v in (a, b, bv)]
    launch_gemm(*dev, c, ta=ta, tb=tb, tile=tile)
    a64, b64 = a.astype(f64), b.astype(f64)
    exp = (a64.T if ta else a64) @ (b64.T if tb else b64)
    if bias:
        exp = exp + bv
    assert_close(_cuda.to_host(c), exp, name=f"gemm {tile.name if tile else ''}")


def _cases(tile):
    """(M, N, K, ta, tb, bias) for ``tile``; tiles of 128 threads and more (slow under the
    simulator) get one two-block launch each, the small tiles the full set."""
    bk, bm, bn = tile.bk, tile.bm, tile.bn
    if tile.threads >= 256:  # rows one past the tile (2 row blocks), K = BK + 1 (2 slices)
        return [(bm + 1, 3, bk + 1, False, True, True)]  # nt + bias: y = x @ w.T + b
    if tile.threads >= 128:  # columns one past the tile, K = 2*BK + 1: both buffers reused
        return [(2, bn + 1, 2 * bk + 1, True, False, False)]  # tn: dw = dy.T @ x
    return [
        (bm + 1, 3, bk + 1, False, True, True),
        (2, bn + 1, bk - 1, True, False, False),  # K = BK - 1: one partial slice
        (7, 5, 2 * bk + 1, False, False, False),  # nn: dx = dy @ w
        (1, 1, 1, True, True, False),  # both transposed, 1x1x1
    ]


@pytest.mark.parametrize("dtype,tile", _tiles(), ids=lambda v: getattr(v, "name", str(v)))
def test_gemm_tile_variants(dtype, tile):
    for M, N, K, ta, tb, bias in _cases(tile):
        _run(M, N, K, ta, tb, bias, dtype, tile)


@pytest.mark.parametrize(
    "M,N,K,bias,dtype", [(7, 9, 0, True, f64), (3, 2, 0, True, f32), (0, 3, 4, False, f32)]
)
def test_gemm_empty_reduction(M, N, K, bias, dtype):
    # K = 0: the bias alone (no slice); M = 0: nothing launched
    _run(M, N, K, False, True, bias, dtype)


def test_pick_tile_prefers_small_tiles_for_small_problems():
    from numba_cnn.kernels.cuda import _gemm_core as core

    big, mid, small = core.TILES["float32"]
    assert core.pick_tile(f32, 4096, 4096) == big
    assert core.pick_tile(f32, 50176, 64) == mid  # 64 columns: half of a 128-wide tile idle
    assert core.pick_tile(f32, 50176, 6) == small  # LeNet conv1: 6 output channels
    assert core.pick_tile(f32, 64, 120) == small  # a dense layer at batch 64: too few blocks
    assert core.pick_tile(f64, 64, 120) == core.TILES["float64"][-1]


@pytest.mark.parametrize("M,N,dtype", [(1, 5, f32), (33, 17, f64), (0, 3, f32)])
def test_colsum(M, N, dtype):
    from numba_cnn.kernels.cuda.gemm import launch_colsum

    a = randn((M, N), dtype, 4)
    out = _cuda.cuda.to_device(np.full((N,), np.nan, dtype))
    launch_colsum(_cuda.to_device(a), out)
    assert_close(_cuda.to_host(out), a.astype(f64).sum(0), name="colsum")


def test_ptx_specs_cover_every_variant():
    from numba_cnn.kernels.cuda import gemm
    from numba_cnn.kernels.cuda._gemm_core import TILES

    specs = gemm.ptx_specs()
    names = {s[0] for s in specs}
    for dt in ("float32", "float64"):
        for v in ("gemm_nt_bias", "gemm_nt", "gemm_nn", "gemm_tn"):
            for t in TILES[dt]:
                assert f"{v}_{t.name}_{dt}" in names
                assert f"{v}_{t.name}_{dt}" in gemm.GEMM_KERNELS
        assert f"colsum_{dt}" in names and f"colsum_{dt}" not in gemm.GEMM_KERNELS
    assert all(s[0].endswith(("_float32", "_float64")) for s in specs)
    assert all(s[3]["launch_bounds"][0] > 0 for s in specs if s[0] in gemm.GEMM_KERNELS)
