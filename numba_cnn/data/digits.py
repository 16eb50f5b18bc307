"""The embedded default data set: 8x8 handwritten digits.

Origin: the "Optical Recognition of Handwritten Digits" data set from the UCI Machine
Learning Repository (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0), as shipped by scikit-learn
(``sklearn.datasets.load_digits``, BSD-3-Clause licence). 1797 grey images of 8x8 pixels,
values 0-16, digits 0-9, about 180 of each.

``digits.npz`` next to this file was written once from scikit-learn 1.9.1 (numba_cnn does not
use scikit-learn at run time) and holds ``images`` (1797, 8, 8) uint8 in 0..16, ``labels``
(1797,) int64 and ``test`` (1797,) uint8: the fixed, stratified split (1 = test). The split
takes round(20%) of every class for the test set (359 images; 1438 for training), chosen by
``numpy.random.default_rng(0).permutation`` of each class's indices, class by class 0..9; it
is stored in the file so it never changes with NumPy's random streams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_digits", "DIGITS_FILE"]

DIGITS_FILE = Path(__file__).with_name("digits.npz")


def load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embedded 8x8 digits with their fixed stratified train/test split.

    Returns ``(x_train, y_train, x_test, y_test)``: x ``(N, 1, 8, 8)`` float32 in [0, 1]
    (pixel / 16), y int64 in 0..9.

    >>> x_train, y_train, x_test, y_test = load_digits()
    >>> x_train.shape, x_test.shape, x_train.dtype, y_train.dtype
    ((1438, 1, 8, 8), (359, 1, 8, 8), dtype('float32'), dtype('int64'))
    """
    with np.load(DIGITS_FILE) as f:
        images, labels, test = f["images"], f["labels"], f["test"].astype(bool)
    x = (images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = labels.astype(np.int64)
    return (
        np.ascontiguousarray(x[~test]),
        y[~test].copy(),
        np.ascontiguousarray(x[test]),
        y[test].copy(),
    )
