"""assert_close: passes within the table's tolerance, fails naming the worst element."""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn.testing import TOLERANCES, assert_close, on


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_table_covers_both_float_dtypes():
    r32, a32 = TOLERANCES[np.dtype(np.float32)]
    r64, a64 = TOLERANCES[np.dtype(np.float64)]
    assert 0 < r64 < r32 < 1e-2 and 0 < a64 < a32 < 1e-2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_passes_within_tolerance(dtype):
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    e = rnd(3, 4, seed=1)
    a = (e + np.sign(e) * 0.5 * (atol + rtol * np.abs(e))).astype(dtype)
    assert_close(a, e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fails_outside_tolerance_naming_the_worst_element(dtype):
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    e = rnd(3, 4, seed=2)
    a = e.copy()
    a[0, 3] += 3 * (atol + rtol * abs(e[0, 3]))
    a[2, 1] += 100 * (atol + rtol * abs(e[2, 1]))
    with pytest.raises(AssertionError, match=r"conv: 2 of 12 elements .* worst at \(2, 1\)"):
        assert_close(a.astype(dtype), e, name="conv")


def test_tolerance_follows_the_actual_dtype_and_can_be_overridden():
    e = rnd(5, seed=3)
    a = e * (1 + 3e-5)
    assert_close(a.astype(np.float32), e)  # float32 tolerance
    with pytest.raises(AssertionError, match="out of tolerance"):
        assert_close(a, e)  # float64 tolerance
    assert_close(a, e, rtol=1e-4)
    with pytest.raises(AssertionError, match="rtol=1e-06"):
        assert_close(a.astype(np.float32), e, rtol=1e-6, atol=0.0)


def test_nan_placement_must_match():
    e = rnd(2, 3, seed=4)
    e[1, 1] = np.nan
    a = e.copy()
    assert_close(a, e)  # NaN in the same places
    a[1, 1] = 0.5
    with pytest.raises(AssertionError, match=r"NaN mismatch .* first at \(1, 1\)"):
        assert_close(a, e)
    a = e.copy()
    a[0, 2] = np.nan
    with pytest.raises(AssertionError, match=r"NaN mismatch .* first at \(0, 2\)"):
        assert_close(a, e)


def test_infinities_must_match_exactly():
    e = np.array([1.0, np.inf, -np.inf])
    assert_close(e.copy(), e)
    with pytest.raises(AssertionError, match=r"worst at \(2,\)"):
        assert_close(np.array([1.0, np.inf, np.inf]), e)
    with pytest.raises(AssertionError, match=r"worst at \(1,\)"):
        assert_close(np.array([1.0, 1e30, -np.inf]), e)


def test_shape_mismatch_fails_without_broadcasting():
    e = rnd(3, seed=5)
    with pytest.raises(AssertionError, match=r"shape \(1, 3\) != expected shape \(3,\)"):
        assert_close(e[None], e)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.full((3, 3), e[0]), np.float64(e[0]))


def test_integers_compare_exactly():
    idx = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert_close(idx.copy(), idx)
    bad = idx.copy()
    bad[1, 2] += 1
    with pytest.raises(AssertionError, match=r"idx: 1 of 12 elements differ; first at \(1, 2\)"):
        assert_close(bad, idx, name="idx")


def test_scalars_lists_and_empty_arrays():
    assert_close(np.float64(2.5), 2.5)
    assert_close(np.array([1.0, 2.0]), [1.0, 2.0])
    assert_close(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(AssertionError, match="out of tolerance"):
        assert_close(np.array(1.25), 1.5)


def test_device_arrays_are_copied_back(device):
    e = rnd(4, 3, seed=6)
    assert_close(on(device, e.copy()), e)
    with pytest.raises(AssertionError, match=r"worst at \(3, 0\)"):
        bad = e.copy()
        bad[3, 0] += 1.0
        assert_close(on(device, bad), e)
