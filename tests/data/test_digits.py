"""The embedded digits: shapes, scaling, the fixed stratified split, and its origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numba_cnn.data import load_digits
from numba_cnn.data.digits import DIGITS_FILE


def test_shapes_dtypes_and_scaling():
    xtr, ytr, xte, yte = load_digits()
    assert xtr.shape == (1438, 1, 8, 8) and xte.shape == (359, 1, 8, 8)
    assert xtr.dtype == xte.dtype == np.float32 and ytr.dtype == yte.dtype == np.int64
    assert xtr.flags.c_contiguous and xte.flags.c_contiguous
    for x in (xtr, xte):
        assert 0.0 == x.min() and x.max() == 1.0
        np.testing.assert_array_equal(x * 16, np.round(x * 16))  # pixel / 16, pixels 0..16
    assert set(np.unique(ytr)) == set(np.unique(yte)) == set(range(10))


def test_split_is_fixed_stratified_and_disjoint():
    a, b = load_digits(), load_digits()
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    _, ytr, _, yte = a
    for c in range(10):
        n_test, n = (yte == c).sum(), (yte == c).sum() + (ytr == c).sum()
        assert n_test == round(0.2 * n), (c, n_test, n)
    with np.load(DIGITS_FILE) as f:
        test = f["test"].astype(bool)
        assert f["images"].dtype == np.uint8 and f["labels"].dtype == np.int64
    assert test.sum() == len(yte) and (~test).sum() == len(ytr)


def test_file_matches_scikit_learn_origin():
    datasets = pytest.importorskip("sklearn.datasets")  # a tool here, never a dependency
    d = datasets.load_digits()
    with np.load(DIGITS_FILE) as f:
        np.testing.assert_array_equal(f["images"], d.images)
        np.testing.assert_array_equal(f["labels"], d.target)
    xtr, ytr, xte, yte = load_digits()
    test = np.load(DIGITS_FILE)["test"].astype(bool)
    np.testing.assert_array_equal(xte[:, 0] * 16, d.images[test])
    np.testing.assert_array_equal(ytr, d.target[~test])


def test_no_scikit_learn_at_run_time():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from numba_cnn.data import load_digits; print(load_digits()[0].shape)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert "(1438, 1, 8, 8)" in out.stdout
