"""CPU kernels for linear (dense) layers, on the packed GEMM of ``_gemm`` for every shape.

Layouts as PyTorch: x (M, I) rows of features, weight (O, I), bias (O,), y (M, O); the op
flattens leading dimensions into M. The three products as index-vector GEMMs:

    y  = x @ w.T + b    A = x (k along rows), B[k, o] = w[o, k] (k contiguous), bias per column
    dx = dy @ w         A = dy, B = w (o rows of I contiguous columns)
    dw = dy.T @ x       A[o, m] = dy[m, o] (read along o), B = x

Why not BLAS (``np.dot`` in njit, tried first): OpenBLAS's threads keep spinning after a
call, and the next ``prange`` region (any other op of the network) then crawls (a (64, 400)
-> 120 forward followed by a batch norm took 8.2 ms against 0.1 ms for the two alone). The
GEMM shares Numba's thread pool instead and runs on one thread below ``_gemm.SERIAL_FMA``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._gemm import gemm, ramp


# dy (M, O) -> db (O,) = dy summed over rows; prange over blocks of 64 columns
@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _column_sum(dy, db):
    M, O = dy.shape
    for t in prange((O + 63) // 64):
        o0, o1 = t * 64, min(O, t * 64 + 64)
        for o in range(o0, o1):
            db[o] = 0
        for m in range(M):
            row = dy[m, o0:o1]
            acc = db[o0:o1]
            for j in range(o1 - o0):
                acc[j] += row[j]


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, y: np.ndarray) -> None:
    """y (M, O) = x (M, I) @ w (O, I).T + b (O,)."""
    M, I = x.shape
    O = w.shape[0]
    gemm(
        x.reshape(-1), ramp(M, I), ramp(I, 1), True,
        w.reshape(-1), ramp(I, 1), ramp(O, I), True,
        y.reshape(-1), ramp(M, O), ramp(O, 1), b, 2,
    )  # fmt: skip


def linear_forward_nobias(x: np.ndarray, w: np.ndarray, y: np.ndarray) -> None:
    """y (M, O) = x (M, I) @ w (O, I).T."""
    linear_forward(x, w, None, y)


def linear_backward(dy, x, w, dx, dw, db) -> None:
    """dy (M, O); x (M, I); w (O, I) -> dx (M, I) = dy @ w, dw (O, I) = dy.T @ x, db (O,)."""
    M, O = dy.shape
    I = w.shape[1]
    gemm(
        dy.reshape(-1), ramp(M, O), ramp(O, 1), True,
        w.reshape(-1), ramp(O, I), ramp(I, 1), False,
        dx.reshape(-1), ramp(M, I), ramp(I, 1),
    )  # fmt: skip
    linear_backward_nodx(dy, x, dw, db)


def linear_backward_nodx(dy, x, dw, db) -> None:
    """As ``linear_backward`` without dx."""
    M, O = dy.shape
    I = x.shape[1]
    gemm(
        dy.reshape(-1), ramp(O, 1), ramp(M, O), False,
        x.reshape(-1), ramp(M, I), ramp(I, 1), False,
        dw.reshape(-1), ramp(O, I), ramp(I, 1),
    )  # fmt: skip
    if M == 0:
        db[:] = 0
    else:
        _column_sum(dy, db)
