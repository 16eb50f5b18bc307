"""im2col / col2im and the small layout kernels of the general (im2col + BLAS) conv path.

Column layout: ``col[(c*R + r)*S + s, (i*P + p)*Q + q] = xpad[n0 + i, c, p*sh + r*dh, q*sw + s*dw]``
for the ``m`` samples ``n0 .. n0+m-1`` of a chunk; rows of group ``g`` are the contiguous block
``g*Cg*R*S .. (g+1)*Cg*R*S``, so ``col`` reshaped ``(G, Cg*R*S, m*P*Q)`` feeds one GEMM per group.
"""

from __future__ import annotations

from numba import njit, prange


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


# dy (N,K,PQ) -> db (K,) = sum over n, pq; one iteration per k
@njit(parallel=True, cache=True)
def bias_grad(dy, db):
    N, K, PQ = dy.shape
    for k in prange(K):
        acc = dy.dtype.type(0)
        for n in range(N):
            for j in range(PQ):
                acc += dy[n, k, j]
        db[k] = acc
