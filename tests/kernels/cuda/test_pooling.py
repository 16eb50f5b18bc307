"""CUDA max-pool backward: which path runs. The per-pixel gather must handle the common
cases by itself (no plane sent to the one-thread-per-plane fix-up), and the fix-up must take
exactly the planes the gather cannot."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.kernels.cuda import pooling as K
from numba_cnn.testing import host, on, randn
from numba_cnn.testing import reference as R

pytestmark = pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")


def _flags(n_planes: int) -> np.ndarray:
    return K._flags(n_planes).copy_to_host()  # the planes the last backward sent to fix-up


@pytest.mark.parametrize(
    "shape, k, kw, window_args, fixup",
    [
        ((2, 2, 8, 7), 2, {}, False, False),  # non-overlapping: the guess holds
        ((1, 3, 9, 7), 3, dict(stride=2, padding=1), True, False),  # overlapping, told
        ((1, 3, 9, 7), 3, dict(stride=2, padding=1), False, True),  # overlapping, guessed
    ],
)
def test_max_pool2d_backward_path(shape, k, kw, window_args, fixup):
    x = randn(shape, np.float32, seed=1)
    y, idx = F.max_pool2d(on("cuda", x), k, **kw, return_indices=True)
    dy = randn(y.shape, np.float32, seed=2)
    extra = dict(kernel_size=k, **kw) if window_args else {}
    dx = F.max_pool2d_backward(on("cuda", dy), idx, shape, **extra)
    n_planes = shape[0] * shape[1]
    assert bool(_flags(n_planes).any()) == fixup
    exp = R.max_pool2d_backward(dy, host(idx), shape)
    np.testing.assert_allclose(host(dx), exp, rtol=1e-6, atol=1e-7)


def test_fixup_takes_only_the_planes_with_foreign_idx():
    x = randn((1, 3, 6, 6), np.float32, seed=3)
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    idx[0, 1, 0, 0] = 35  # plane 1: an index outside its window (still inside the plane)
    dy = randn(idx.shape, np.float32, seed=4)
    dx = F.max_pool2d_backward(*on("cuda", dy, idx), x.shape)
    np.testing.assert_array_equal(_flags(3), [0, 1, 0])
    np.testing.assert_allclose(host(dx), R.max_pool2d_backward(dy, idx, x.shape), rtol=1e-6)
