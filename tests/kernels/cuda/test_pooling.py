"""CUDA max-pool backward in one launch: the per-plane block gathers over the windows it is
told or guesses, and redoes exactly the planes whose idx contradicts them by a scan; both
paths add the same terms in the same order, so they give the same bits."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.kernels.cuda import pooling as K
from numba_cnn.testing import host, on, randn
from numba_cnn.testing import reference as R
from numba_cnn.testing.tolerances import assert_close

pytestmark = pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")


class _Launches:
    """Records the names of the pooling kernels launched (patches the kernel class's
    ``__getitem__``; other kernels, e.g. the tests' NaN poisoning, are not counted)."""

    def __init__(self, monkeypatch):
        self.names: list[str] = []
        kern = K._max_bwd(K._FT[np.dtype(np.float32)])
        orig = type(kern).__getitem__

        def counted(k, cfg):
            fn = getattr(k, "py_func", None)
            if fn is not None and fn.__module__ == K.__name__:
                self.names.append(fn.__name__)
            return orig(k, cfg)

        monkeypatch.setattr(type(kern), "__getitem__", counted)


@pytest.mark.parametrize(
    "shape, k, kw, window_args",
    [
        ((2, 2, 8, 7), 2, {}, False),  # non-overlapping: the guess holds
        ((1, 3, 9, 7), 3, dict(stride=2, padding=1), True),  # overlapping, told
        ((1, 3, 9, 7), 3, dict(stride=2, padding=1), False),  # overlapping, guess fails: scan
        ((2, 1, 5, 11), (2, 3), dict(stride=1, dilation=(2, 1), ceil_mode=True), True),
        ((1, 2, 3, 4), 2, dict(stride=1, padding=1), False),  # P > H: no guess, scan only
        ((1, 5, 6, 6), 3, dict(stride=3, dilation=2, padding=1), True),
    ],
)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_max_pool2d_backward_one_launch(monkeypatch, shape, k, kw, window_args, dt):
    x = randn(shape, dt, seed=1)
    y, idx = F.max_pool2d(on("cuda", x), k, **kw, return_indices=True)
    dy = randn(y.shape, dt, seed=2)
    extra = dict(kernel_size=k, **kw) if window_args else {}
    count = _Launches(monkeypatch)
    dx = F.max_pool2d_backward(on("cuda", dy), idx, shape, **extra)
    assert count.names == ["max_pool2d_bwd"]
    assert_close(host(dx), R.max_pool2d_backward(dy, host(idx), shape), name="dx")
    # gather, scan and the CPU path add the same terms in the same order: the same bits
    np.testing.assert_array_equal(host(dx), F.max_pool2d_backward(dy, host(idx), shape))


def test_foreign_idx_in_some_planes():
    x = randn((1, 3, 6, 6), np.float32, seed=3)
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    idx[0, 1, 0, 0] = 35  # plane 1: an index outside its window (still inside the plane)
    idx[0, 2, 1, 1] = 36  # plane 2: outside the plane, skipped on the GPU
    dy = randn(idx.shape, np.float32, seed=4)
    dx = host(F.max_pool2d_backward(*on("cuda", dy, idx), x.shape))
    exp = np.zeros(x.shape, np.float32)  # the CPU path raises on idx 36: add up by hand
    for c in range(3):
        for (i, j), v in np.ndenumerate(idx[0, c]):
            if 0 <= v < 36:
                exp[0, c].flat[v] += dy[0, c, i, j]
    np.testing.assert_array_equal(dx, exp)


def test_more_planes_than_blocks():
    # block-stride over planes (the simulator caps the grid at BWD_BLOCKS)
    shape = (3, K.BWD_BLOCKS + 1, 5, 7)
    x = randn(shape, np.float64, seed=5)
    y, idx = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    dy = randn(y.shape, np.float64, seed=6)
    for extra in ({}, dict(kernel_size=3, stride=2, padding=1)):
        dx = F.max_pool2d_backward(*on("cuda", dy, idx), shape, **extra)
        np.testing.assert_array_equal(host(dx), F.max_pool2d_backward(dy, idx, shape))
