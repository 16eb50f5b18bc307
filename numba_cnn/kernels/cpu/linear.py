"""CPU kernels for linear (dense) layers: register-blocked @njit GEMMs, parallel with prange.

Layouts as PyTorch: x (M, I) rows of features, weight (O, I), bias (O,), y (M, O); the op
flattens leading dimensions into M. Two loop shapes cover the three products:

    y  = x @ w.T + b   gemm_nt: 4x4 blocks of dot products along I (both operands row-major)
    dx = dy @ w        gemm_tn(dy.T, w): rank-4 updates of 4 output rows, vectorised along I
    dw = dy.T @ x      gemm_tn(dy, x)

Why not BLAS (``np.dot`` in njit, tried first): OpenBLAS's threads keep spinning after a
call, and the next ``prange`` region (any other op of the network) then crawls; measured on
the project machine (2 cores), a (64, 400) -> 120 forward followed by a batch norm took 8.2 ms
against 0.1 ms for the two alone. These kernels share Numba's thread pool instead. Measured
through the op, float32, best of 5 runs: forward 25 us (BLAS from njit 45 us, NumPy
``x @ w.T + b`` 34 us, torch 2 threads 35 us); backward 91-99 us (NumPy 65 us, torch 74 us;
the rank-4 updates are bound by stores to the output rows). Reductions may be reassociated
(fastmath ``reassoc``/``contract`` only, so NaN and inf still propagate) for vectorisation.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_REDUCE = {"reassoc", "contract"}


# a (M, K), b (N, K) -> c (M, N) = a @ b.T (+ bias (N,) when has_bias); prange over 4x4 blocks
@njit(cache=True, parallel=True, fastmath=_REDUCE)
def _gemm_nt(a, b, bias, has_bias, c):
    M, K = a.shape
    N = b.shape[0]
    nb = (N + 3) // 4
    z = c.dtype.type(0)
    for t in prange(((M + 3) // 4) * nb):
        m0 = (t // nb) * 4
        n0 = (t % nb) * 4
        if m0 + 4 <= M and n0 + 4 <= N:
            c00 = c01 = c02 = c03 = z
            c10 = c11 = c12 = c13 = z
            c20 = c21 = c22 = c23 = z
            c30 = c31 = c32 = c33 = z
            for k in range(K):
                a0, a1, a2, a3 = a[m0, k], a[m0 + 1, k], a[m0 + 2, k], a[m0 + 3, k]
                b0, b1, b2, b3 = b[n0, k], b[n0 + 1, k], b[n0 + 2, k], b[n0 + 3, k]
                c00 += a0 * b0
                c01 += a0 * b1
                c02 += a0 * b2
                c03 += a0 * b3
                c10 += a1 * b0
                c11 += a1 * b1
                c12 += a1 * b2
                c13 += a1 * b3
                c20 += a2 * b0
                c21 += a2 * b1
                c22 += a2 * b2
                c23 += a2 * b3
                c30 += a3 * b0
                c31 += a3 * b1
                c32 += a3 * b2
                c33 += a3 * b3
            _store_row(c, m0, n0, c00, c01, c02, c03, bias, has_bias)
            _store_row(c, m0 + 1, n0, c10, c11, c12, c13, bias, has_bias)
            _store_row(c, m0 + 2, n0, c20, c21, c22, c23, bias, has_bias)
            _store_row(c, m0 + 3, n0, c30, c31, c32, c33, bias, has_bias)
        else:  # edge block: plain dot products
            for m in range(m0, min(m0 + 4, M)):
                for n in range(n0, min(n0 + 4, N)):
                    s = z
                    for k in range(K):
                        s += a[m, k] * b[n, k]
                    c[m, n] = s + bias[n] if has_bias else s


@njit(cache=True, inline="always")
def _store_row(c, m, n0, v0, v1, v2, v3, bias, has_bias):
    if has_bias:
        v0 += bias[n0]
        v1 += bias[n0 + 1]
        v2 += bias[n0 + 2]
        v3 += bias[n0 + 3]
    c[m, n0] = v0
    c[m, n0 + 1] = v1
    c[m, n0 + 2] = v2
    c[m, n0 + 3] = v3


# a (K, P), b (K, Q) -> c (P, Q) = a.T @ b; prange over blocks of 4 rows of c, each a sum of
# rank-4 updates c[p0:p0+4, :] += a[k, p0:p0+4, None] * b[k, None, :] vectorised along Q
@njit(cache=True, parallel=True, fastmath=_REDUCE)
def _gemm_tn(a, b, c):
    K, P = a.shape
    Q = b.shape[1]
    for t in prange((P + 3) // 4):
        p0 = t * 4
        p1 = min(p0 + 4, P)
        for p in range(p0, p1):
            for q in range(Q):
                c[p, q] = 0
        if p1 - p0 == 4:
            for k in range(K):
                a0, a1, a2, a3 = a[k, p0], a[k, p0 + 1], a[k, p0 + 2], a[k, p0 + 3]
                for q in range(Q):
                    bv = b[k, q]
                    c[p0, q] += a0 * bv
                    c[p0 + 1, q] += a1 * bv
                    c[p0 + 2, q] += a2 * bv
                    c[p0 + 3, q] += a3 * bv
        else:
            for k in range(K):
                for p in range(p0, p1):
                    av = a[k, p]
                    for q in range(Q):
                        c[p, q] += av * b[k, q]


# dy (M, O) -> db (O,) = dy summed over rows (row-major sweep, vectorised over O)
@njit(cache=True)
def _column_sum(dy, db):
    M, O = dy.shape
    for o in range(O):
        db[o] = 0
    for m in range(M):
        for o in range(O):
            db[o] += dy[m, o]


# x (M, I); w (O, I); b (O,) -> y (M, O) = x @ w.T + b
@njit(cache=True)
def linear_forward(x, w, b, y):
    _gemm_nt(x, w, b, True, y)


# x (M, I); w (O, I) -> y (M, O) = x @ w.T
@njit(cache=True)
def linear_forward_nobias(x, w, y):
    _gemm_nt(x, w, np.empty(0, y.dtype), False, y)  # an empty bias, never read


# dy (M, O); x (M, I); w (O, I) -> dx (M, I) = dy @ w, dw (O, I) = dy.T @ x, db (O,)
@njit(cache=True)
def linear_backward(dy, x, w, dx, dw, db):
    _gemm_tn(dy.T, w, dx)
    _gemm_tn(dy, x, dw)
    _column_sum(dy, db)


# as linear_backward without dx
@njit(cache=True)
def linear_backward_nodx(dy, x, dw, db):
    _gemm_tn(dy, x, dw)
    _column_sum(dy, db)
