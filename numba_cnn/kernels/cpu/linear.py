"""CPU kernels for linear (dense) layers: BLAS GEMM called from @njit, bias and db fused.

Layouts as PyTorch: x (M, I) rows of features, weight (O, I), bias (O,), y (M, O).
The op flattens leading dimensions to M before calling here. Measured on the project machine
(2 cores, float32, best of 5 runs) for (64, 400) -> 120: forward 45 us through the op (NumPy
``x @ w.T + b`` 35 us, torch 2 threads 37 us), backward 85 us (NumPy 66, torch 75); a
``prange`` kernel vectorised over the output row was about twice as slow as BLAS here.
"""

from __future__ import annotations

import numpy as np
from numba import njit


# x (M, I); w (O, I); b (O,); y (M, O) = x @ w.T + b
@njit(cache=True)
def linear_forward(x, w, b, y):
    np.dot(x, w.T, y)
    M, O = y.shape
    for m in range(M):
        for o in range(O):
            y[m, o] += b[o]


# x (M, I); w (O, I); y (M, O) = x @ w.T
@njit(cache=True)
def linear_forward_nobias(x, w, y):
    np.dot(x, w.T, y)


# dy (M, O) -> db (O,) = dy summed over rows (row-major sweep, vectorised over O)
@njit(cache=True)
def _column_sum(dy, db):
    M, O = dy.shape
    for o in range(O):
        db[o] = 0
    for m in range(M):
        for o in range(O):
            db[o] += dy[m, o]


# dy (M, O); x (M, I); w (O, I) -> dx (M, I) = dy @ w, dw (O, I) = dy.T @ x, db (O,)
@njit(cache=True)
def linear_backward(dy, x, w, dx, dw, db):
    np.dot(dy, w, dx)
    np.dot(dy.T, x, dw)
    _column_sum(dy, db)


# as linear_backward without dx
@njit(cache=True)
def linear_backward_nodx(dy, x, dw, db):
    np.dot(dy.T, x, dw)
    _column_sum(dy, db)
