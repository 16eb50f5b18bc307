"""``conv2d_direct.pad_planes``: padded planes equal NumPy's ``np.pad`` and the non-finite count
is exact, also when a workspace's zeros are kept from its last call of the same geometry
(only x's values are copied then) and after other geometries have used the same memory."""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn.kernels.cpu import conv2d_direct as d_
from numba_cnn.testing import randn


def _expect(x, top, left, Hp, Wp, tail):
    N, C, H, W = x.shape
    e = np.zeros((N, C, Hp + H + abs(top), Wp + W + abs(left)), x.dtype)
    e[:, :, max(top, 0) : max(top, 0) + H, max(left, 0) : max(left, 0) + W] = x
    e = e[:, :, max(-top, 0) :, max(-left, 0) :][:, :, :Hp, :Wp].reshape(N, -1)
    return np.concatenate([e, np.zeros((N, tail), x.dtype)], axis=1)


# (x shape, top, left, Hp, Wp, tail): padding on every side, a crop (negative top/left),
# a tail past the planes (the direct kernels' wide columns)
GEOMETRIES = [
    ((2, 3, 5, 7), 2, 1, 10, 11, 0),
    ((2, 3, 5, 7), -1, 0, 4, 9, 5),
    ((3, 2, 5, 7), 1, 1, 7, 9, 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pad_planes_keeps_zeros_only_for_the_same_geometry(dtype):
    buf = np.empty(4096, dtype)
    buf.fill(np.nan)  # poison: anything not written is seen
    for step, (xs, top, left, Hp, Wp, tail) in enumerate(GEOMETRIES + GEOMETRIES[::-1]):
        x = randn(xs, dtype, seed=step)
        N, C = xs[0], xs[1]
        xp = buf[: N * (C * Hp * Wp + tail)].reshape(N, C * Hp * Wp + tail)
        for _ in range(2):  # the second call copies x's values only
            assert d_.pad_planes(x, xp, top, left, Hp, Wp) == 0
            np.testing.assert_array_equal(xp, _expect(x, top, left, Hp, Wp, tail))
            x = x + dtype(1)


def test_pad_planes_counts_non_finite_on_both_calls():
    x = randn((2, 3, 5, 7), np.float32, seed=3)
    x[0, 1, 2, 3], x[1, 2, 4, 6] = np.nan, -np.inf
    xp = np.empty((2, 3 * 8 * 9), np.float32)
    assert d_.pad_planes(x, xp, 1, 1, 8, 9) == 2
    assert d_.pad_planes(x, xp, 1, 1, 8, 9) == 2
