"""im2col / col2im and the small layout kernels of the general (im2col + BLAS) conv path.

Column layout: ``col[(c*R + r)*S + s, (i*P + p)*Q + q] = xpad[n0 + i, c, p*sh + r*dh, q*sw + s*dw]``
for the ``m`` samples ``n0 .. n0+m-1`` of a chunk; rows of group ``g`` are the contiguous block
``g*Cg*R*S .. (g+1)*Cg*R*S``, so ``col`` reshaped ``(G, Cg*R*S, m*P*Q)`` feeds one GEMM per group.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._gemm import workspace


@njit(cache=True, inline="always")
def _qrange(Q, W, sw, pw, off):
    # valid q: 0 <= q*sw - pw + off < W
    lo = 0
    t = pw - off
    if t > 0:
        lo = (t + sw - 1) // sw
    hi = (W - 1 + pw - off) // sw + 1 if W - 1 + pw - off >= 0 else 0
    if lo > Q:
        lo = Q
    if hi > Q:
        hi = Q
    if hi < lo:
        hi = lo
    return lo, hi


# x (N,C,H,W); col (C*R*S, m*P*Q); one pass per row (c, r, s)
@njit(cache=True)  # serial: runs between multi-threaded BLAS calls
def im2col(x, n0, m, col, R, S, sh, sw, ph, pw, dh, dw, P, Q):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    zero = x.dtype.type(0)
    for row in range(C * R * S):
        c = row // (R * S)
        r = (row // S) % R
        s = row % S
        lo, hi = _qrange(Q, W, sw, pw, s * dw)
        w0 = s * dw - pw
        for i in range(m):
            for p in range(P):
                h = p * sh - ph + r * dh
                dst = col[row, (i * P + p) * Q : (i * P + p + 1) * Q]
                if h < 0 or h >= H:
                    for q in range(Q):
                        dst[q] = zero
                    continue
                for q in range(lo):
                    dst[q] = zero
                # views with non-negative loop indices: no wraparound checks, vectorised copy
                d = dst[lo:]
                src = x[n0 + i, c, h, lo * sw + w0 :]
                if sw == 1:
                    for q in range(hi - lo):
                        d[q] = src[q]
                else:
                    for q in range(hi - lo):
                        d[q] = src[q * sw]
                for q in range(hi, Q):
                    dst[q] = zero


# dcol (C*R*S, m*P*Q) -> dx (N,C,H,W) samples n0..n0+m-1; one pass per (i, c) plane
@njit(cache=True)  # serial: runs between multi-threaded BLAS calls
def col2im(dcol, dx, n0, m, R, S, sh, sw, ph, pw, dh, dw, P, Q):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for ic in range(m * C):
        i = ic // C
        c = ic % C
        n = n0 + i
        dx[n, c, :, :] = 0
        for r in range(R):
            for s in range(S):
                row = (c * R + r) * S + s
                lo, hi = _qrange(Q, W, sw, pw, s * dw)
                w0 = s * dw - pw
                for p in range(P):
                    h = p * sh - ph + r * dh
                    if h < 0 or h >= H or hi <= lo:
                        continue
                    base = (i * P + p) * Q
                    src = dcol[row, base + lo : base + hi]
                    dst = dx[n, c, h, lo * sw + w0 :]
                    if sw == 1:
                        for q in range(hi - lo):
                            dst[q] += src[q]
                    else:
                        for q in range(hi - lo):
                            dst[q * sw] += src[q]


# t (K, m*PQ) -> y (N,K,P*Q) samples n0.. (y given as (N,K,PQ)); one iteration per (i, k)
@njit(cache=True)  # serial: runs between multi-threaded BLAS calls
def scatter_rows(t, y, n0, m):
    K, PQ = y.shape[1], y.shape[2]
    for ik in range(m * K):
        i = ik // K
        k = ik % K
        for j in range(PQ):
            y[n0 + i, k, j] = t[k, i * PQ + j]


# dy (N,K,PQ) samples n0.. -> t (K, m*PQ); one iteration per (i, k)
@njit(cache=True)  # serial: runs between multi-threaded BLAS calls
def gather_rows(dy, t, n0, m):
    K, PQ = dy.shape[1], dy.shape[2]
    for ik in range(m * K):
        i = ik // K
        k = ik % K
        for j in range(PQ):
            t[k, i * PQ + j] = dy[n0 + i, k, j]


# y (N,K,PQ) += b (K,); one iteration per (n, k)
@njit(cache=True)  # serial: runs between multi-threaded BLAS calls
def add_bias(y, b):
    N, K, PQ = y.shape
    for nk in range(N * K):
        bk = b[nk % K]
        n = nk // K
        k = nk % K
        for j in range(PQ):
            y[n, k, j] += bk


# dy (N,K,PQ) -> db (K,) = sum over n, pq; one iteration per k (reassociated: vector lanes)
@njit(parallel=True, cache=True, fastmath={"reassoc"})
def bias_grad(dy, db):
    N, K, PQ = dy.shape
    for k in prange(K):
        acc = dy.dtype.type(0)
        for n in range(N):
            for j in range(PQ):
                acc += dy[n, k, j]
        db[k] = acc


# ---- the forced "im2col" path of conv2d: an explicit column matrix + BLAS (np.matmul) ----
_WS_BYTES = 8 << 20  # target size of one im2col workspace


def _ws(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    return workspace("i2c_" + name, math.prod(shape), dtype).reshape(shape)


def _chunk(N: int, PQ: int, CRS: int, itemsize: int) -> int:
    """Samples per chunk: whole planes of >= 512 outputs go one by one."""
    if PQ >= 512:
        return 1
    m = max(1, -(-4096 // PQ))
    m = min(m, max(1, _WS_BYTES // max(1, CRS * PQ * itemsize)))
    return max(1, min(N, m))


def blas_forward(x, w, b, y, stride, pad, dilation, groups) -> None:
    """y = conv(x, w) + b: im2col per chunk of samples, then np.matmul per group."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    m = _chunk(N, PQ, C * R * S, x.itemsize)
    wg = w.reshape(G, Kg, CRS)
    y3 = y.reshape(N, K, PQ)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        col = _ws("col", (G * CRS, mm * PQ), x.dtype)
        im2col(x, n0, mm, col, R, S, sh, sw, ph, pw, dh, dw, P, Q)
        colg = col.reshape(G, CRS, mm * PQ)
        if mm == 1:
            np.matmul(wg, colg, out=y3[n0].reshape(G, Kg, PQ))
        else:
            t = _ws("out", (G, Kg, mm * PQ), x.dtype)
            np.matmul(wg, colg, out=t)
            scatter_rows(t.reshape(K, mm * PQ), y3, n0, mm)
    if b is not None:
        add_bias(y3, b)


def blas_backward_data(dy, w, dx, stride, pad, dilation, groups) -> None:
    """dx: dcol = W_g^T @ dY_g per chunk (np.matmul), then col2im."""
    N, C, H, W = dx.shape
    K, Cg, R, S = w.shape
    P, Q = dy.shape[2], dy.shape[3]
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    m = _chunk(N, PQ, C * R * S, dx.itemsize)
    wt = w.reshape(G, Kg, CRS).transpose(0, 2, 1)  # (G, CRS, Kg)
    dy3 = dy.reshape(N, K, PQ)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        if mm == 1:
            dyg = dy3[n0].reshape(G, Kg, PQ)
        else:
            t = _ws("dyt", (K, mm * PQ), dx.dtype)
            gather_rows(dy3, t, n0, mm)
            dyg = t.reshape(G, Kg, mm * PQ)
        dcol = _ws("col", (G, CRS, mm * PQ), dx.dtype)
        np.matmul(wt, dyg, out=dcol)
        col2im(dcol.reshape(G * CRS, mm * PQ), dx, n0, mm, R, S, sh, sw, ph, pw, dh, dw, P, Q)


def blas_backward_weight(dy, x, dw, stride, pad, dilation, groups) -> None:
    """dw = sum over chunks of dY_g @ col_g^T (np.matmul); the bias gradient is the caller's."""
    N, C, H, W = x.shape
    K, Cg, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw_) = stride, pad, dilation
    dy3 = dy.reshape(N, K, PQ)
    m = _chunk(N, PQ, C * R * S, x.itemsize)
    dw3 = dw.reshape(G, Kg, CRS)
    part = _ws("dwpart", (G, Kg, CRS), x.dtype)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        if mm == 1:
            dyg = dy3[n0].reshape(G, Kg, PQ)
        else:
            t = _ws("dyt", (K, mm * PQ), x.dtype)
            gather_rows(dy3, t, n0, mm)
            dyg = t.reshape(G, Kg, mm * PQ)
        col = _ws("col", (G * CRS, mm * PQ), x.dtype)
        im2col(x, n0, mm, col, R, S, sh, sw, ph, pw, dh, dw_, P, Q)
        colt = col.reshape(G, CRS, mm * PQ).transpose(0, 2, 1)
        if n0 == 0:
            np.matmul(dyg, colt, out=dw3)
        else:
            np.matmul(dyg, colt, out=part)
            dw3 += part
    if N == 0:
        dw[...] = 0
