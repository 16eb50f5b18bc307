"""Softmax, log-softmax and cross-entropy on the CPU.

An input of any rank is viewed as ``(outer, D, inner)`` with the reduced dim in the middle
(no transposes). ``inner == 1`` (the last dim) takes the row kernels, rows in parallel; other
dims take the line kernels: parallel over ``(outer, block of CHUNK inner positions)``, each
pass sweeping ``d`` with the inner block contiguous, so loads stay unit-stride.
Stable for any finite input: the row maximum is subtracted before ``exp``; a NaN anywhere in a
row makes the whole row NaN (the sum turns NaN), as in PyTorch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._rowmath import row_dot, row_exp, row_max, row_sum, row_sum_exp, vexp
from ._serial import serial_twin
from ._threads import use_parallel

_JIT = dict(cache=True, parallel=True, error_model="numpy")
CHUNK = 256  # inner positions per task of the line kernels


# x, y (R, D): y[r] = softmax(x[r]) or log_softmax(x[r]); rows in parallel
@njit(**_JIT)
def _rows_forward(x, y, log):
    R, D = x.shape
    for r in prange(R):
        m = row_max(x, r)
        s = row_exp(x, y, r, m)
        if log:
            ls = math.log(s)
            for d in range(D):
                y[r, d] = (x[r, d] - m) - ls
        else:
            inv = x.dtype.type(1) / s
            for d in range(D):
                y[r, d] *= inv


# dy, y, dx (R, D): softmax: dx = y * (dy - sum(dy * y)); log: dx = dy - exp(y) * sum(dy)
@njit(**_JIT)
def _rows_backward(dy, y, dx, log):
    R, D = y.shape
    for r in prange(R):
        if log:
            s = row_sum(dy, r)
            for d in range(D):
                dx[r, d] = dy[r, d] - vexp(y[r, d]) * s
        else:
            s = row_dot(dy, y, r)
            for d in range(D):
                dx[r, d] = y[r, d] * (dy[r, d] - s)


# x, y (outer, D, inner): softmax over axis 1; one task per (outer, CHUNK of inner)
@njit(**_JIT)
def _lines_forward(x, y, log):
    outer, D, inner = x.shape
    nchunk = (inner + CHUNK - 1) // CHUNK
    for t in prange(outer * nchunk):
        o = t // nchunk
        j0 = (t % nchunk) * CHUNK
        n = min(CHUNK, inner - j0)
        m = np.full(n, -np.inf, dtype=x.dtype)
        s = np.zeros(n, dtype=x.dtype)
        for d in range(D):
            for j in range(n):
                v = x[o, d, j0 + j]
                m[j] = v if v > m[j] else m[j]
        for d in range(D):
            for j in range(n):
                e = vexp(x[o, d, j0 + j] - m[j])
                y[o, d, j0 + j] = e
                s[j] += e
        if log:
            for j in range(n):
                s[j] = math.log(s[j])
            for d in range(D):
                for j in range(n):
                    y[o, d, j0 + j] = (x[o, d, j0 + j] - m[j]) - s[j]
        else:
            for j in range(n):
                s[j] = x.dtype.type(1) / s[j]
            for d in range(D):
                for j in range(n):
                    y[o, d, j0 + j] *= s[j]


# dy, y, dx (outer, D, inner): the row backward over axis 1, tasks as _lines_forward
@njit(**_JIT)
def _lines_backward(dy, y, dx, log):
    outer, D, inner = y.shape
    nchunk = (inner + CHUNK - 1) // CHUNK
    for t in prange(outer * nchunk):
        o = t // nchunk
        j0 = (t % nchunk) * CHUNK
        n = min(CHUNK, inner - j0)
        s = np.zeros(n, dtype=y.dtype)
        for d in range(D):
            for j in range(n):
                if log:
                    s[j] += dy[o, d, j0 + j]
                else:
                    s[j] += dy[o, d, j0 + j] * y[o, d, j0 + j]
        for d in range(D):
            for j in range(n):
                g = dy[o, d, j0 + j]
                v = y[o, d, j0 + j]
                if log:
                    dx[o, d, j0 + j] = g - vexp(v) * s[j]
                else:
                    dx[o, d, j0 + j] = v * (g - s[j])


# logits (N, C), labels (N,) int64, loss (1,): loss[0] = mean_n(lse(x[n]) - x[n, labels[n]])
@njit(**_JIT)
def _cross_entropy(x, labels, loss, rows):
    N, C = x.shape
    for n in prange(N):
        m = row_max(x, n)
        s = row_sum_exp(x, n, m)
        rows[n] = (m - x[n, labels[n]]) + math.log(s)
    total = x.dtype.type(0)
    for n in range(N):  # serial, fixed order: deterministic
        total += rows[n]
    loss[0] = total / x.dtype.type(N)


# logits, dx (N, C), labels (N,) int64: dx = (softmax(x) - onehot(labels)) / N
@njit(**_JIT)
def _cross_entropy_backward(x, labels, dx):
    N, C = x.shape
    inv_n = x.dtype.type(1) / x.dtype.type(N)
    for n in prange(N):
        m = row_max(x, n)
        s = row_exp(x, dx, n, m)
        scale = inv_n / s
        for c in range(C):
            dx[n, c] *= scale
        dx[n, labels[n]] -= inv_n


_SERIAL = {
    k: serial_twin(k)
    for k in (_rows_forward, _rows_backward, _lines_forward, _lines_backward, _cross_entropy)
}
_SERIAL[_cross_entropy_backward] = serial_twin(_cross_entropy_backward)


def _pick(kernel, size: int):
    return kernel if use_parallel(size) else _SERIAL[kernel]


def softmax(x: np.ndarray, y: np.ndarray, log: bool) -> None:
    """x, y (outer, D, inner): softmax (or log-softmax) over axis 1."""
    if x.shape[2] == 1:
        s = x.shape[:2]
        _pick(_rows_forward, x.size)(x.reshape(s), y.reshape(s), log)
    else:
        _pick(_lines_forward, x.size)(x, y, log)


def softmax_backward(dy: np.ndarray, y: np.ndarray, dx: np.ndarray, log: bool) -> None:
    """dy, y, dx (outer, D, inner): the backward of ``softmax`` over axis 1."""
    if y.shape[2] == 1:
        s = y.shape[:2]
        _pick(_rows_backward, y.size)(dy.reshape(s), y.reshape(s), dx.reshape(s), log)
    else:
        _pick(_lines_backward, y.size)(dy, y, dx, log)


def labels_int64(labels: np.ndarray) -> np.ndarray:
    """Labels of any integer dtype as int64 (no copy when they already are)."""
    return labels.astype(np.int64, copy=False)


def cross_entropy(logits: np.ndarray, labels: np.ndarray, loss: np.ndarray) -> None:
    """logits (N, C), labels (N,) int64 in range, loss (1,): the mean cross-entropy."""
    rows = np.empty(logits.shape[0], dtype=logits.dtype)
    _pick(_cross_entropy, logits.size)(logits, labels, loss, rows)


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray, dx: np.ndarray) -> None:
    """logits, dx (N, C), labels (N,) int64 in range: dlogits."""
    _pick(_cross_entropy_backward, logits.size)(logits, labels, dx)
