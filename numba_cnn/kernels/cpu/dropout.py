"""Inverted dropout on the CPU, with a counter-based random mask.

Element ``i`` is kept when ``splitmix64(key, i) >> 11 >= threshold`` (``threshold =
round(p * 2^53)``): a pure function of ``(key, i)``, so the mask does not depend on the thread
count, needs no generator state, and is the same one the CUDA kernels draw for the same key.
SplitMix64's output function passes BigCrush; its 53 top bits are used, as for a double.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._serial import serial_twin
from ._threads import use_parallel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


@njit(cache=True, inline="always")
def _uniform53(key, i):
    """Counter-based SplitMix64: 53 random bits for element ``i`` of stream ``key``."""
    z = key + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return z >> _S11


# x, y, mask (n,): mask = u(key, i) >= threshold; y = x * (mask ? scale : 0)
@njit(cache=True, parallel=True, error_model="numpy")
def _dropout(x, y, mask, key, threshold, scale):
    zero = x.dtype.type(0)
    a = x.dtype.type(scale)
    for i in prange(x.size):
        keep = _uniform53(key, i) >= threshold
        mask[i] = keep
        y[i] = x[i] * (a if keep else zero)  # x * mask * scale: NaN stays NaN, as torch


# dy, mask, dx (n,): dx = dy * (mask ? scale : 0)
@njit(cache=True, parallel=True, error_model="numpy")
def _dropout_backward(dy, mask, dx, scale):
    zero = dy.dtype.type(0)
    a = dy.dtype.type(scale)
    for i in prange(dy.size):
        dx[i] = dy[i] * (a if mask[i] else zero)


_dropout_serial = serial_twin(_dropout)
_dropout_backward_serial = serial_twin(_dropout_backward)


def dropout(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray, key: int, threshold: int, scale: float
) -> None:
    """x, y (any shape, float), mask (same shape, bool): draw the mask and apply it."""
    k = _dropout if use_parallel(x.size) else _dropout_serial
    k(x.reshape(-1), y.reshape(-1), mask.reshape(-1), np.uint64(key), np.uint64(threshold), scale)


def dropout_backward(dy: np.ndarray, mask: np.ndarray, dx: np.ndarray, scale: float) -> None:
    """dy, dx (any shape, float), mask (same shape, bool): dx = dy * mask * scale."""
    k = _dropout_backward if use_parallel(dy.size) else _dropout_backward_serial
    k(dy.reshape(-1), mask.reshape(-1), dx.reshape(-1), scale)
