"""Direct stride-1 conv kernels for small channel counts (no im2col matrix, no BLAS).

With stride 1 the im2col row of tap (c, r, s) is a shifted window of the padded input: over
the "wide" output plane (P rows of Wp columns, the columns q >= Q being discarded)

    y_wide[k, j] = sum_{c,r,s} w[k, c, r, s] * xp[c*Hp*Wp + r*dh*Wp + s*dw + j],  j < P*Wp

so a conv is a GEMM whose right operand is read straight from the padded input (kept in L1/L2
for small C). The backward data pass is the same kernel on dy padded by the kernel extent with
flipped, transposed weights; the weight gradient is the same GEMM transposed (dot products).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_FM = {"reassoc", "contract"}  # lets LLVM vectorise dot-product reductions (NaN still propagates)


# x (N,C,H,W) -> xp (N, >= C*Hp*Wp): zero-padded planes, x[.., h, w] at (h+top, w+left);
# negative top/left crop. One prange iteration per (n, c) plane.
@njit(parallel=True, cache=True)
def pad_planes(x, xp, top, left, Hp, Wp):
    N, C, H, W = x.shape
    zero = x.dtype.type(0)
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        base = c * Hp * Wp
        for hp in range(Hp):
            h = hp - top
            row = base + hp * Wp
            if h < 0 or h >= H:
                for wp in range(Wp):
                    xp[n, row + wp] = zero
                continue
            for wp in range(Wp):
                w = wp - left
                xp[n, row + wp] = x[n, c, h, w] if 0 <= w < W else zero
        if c == C - 1:  # the tail read by discarded wide columns: keep it finite
            for t in range(C * Hp * Wp, xp.shape[1]):
                xp[n, t] = zero


# xp (N, Ci*Hp*Wp + tail); wm (Ko, Cig*R*S); b (Ko,) (used if has_b); offs (Ci*R*S,) window
# offsets; y (N,Ko,P,Q). One prange iteration per (n, tile of output rows); the tile's wide
# accumulator row (<= rows*Wp values) stays in L1.
@njit(parallel=True, cache=True, fastmath=_FM)
def direct_fwd(xp, wm, b, has_b, offs, y, Wp, rows):
    N, Ko, P, Q = y.shape
    CRS = wm.shape[1]
    G = offs.shape[0] // CRS
    Kg = Ko // G
    ntile = (P + rows - 1) // rows
    for it in prange(N * ntile):
        n = it // ntile
        p0 = (it % ntile) * rows
        pn = min(rows, P - p0)
        tl = pn * Wp
        j0 = p0 * Wp
        acc = np.empty(rows * Wp, dtype=y.dtype)
        xs = xp[n]
        for k in range(Ko):
            base = (k // Kg) * CRS
            bk = b[k] if has_b else y.dtype.type(0)
            for j in range(tl):
                acc[j] = bk
            i = 0
            while i + 4 <= CRS:
                o0 = offs[base + i] + j0
                o1 = offs[base + i + 1] + j0
                o2 = offs[base + i + 2] + j0
                o3 = offs[base + i + 3] + j0
                w0, w1, w2, w3 = wm[k, i], wm[k, i + 1], wm[k, i + 2], wm[k, i + 3]
                for j in range(tl):
                    acc[j] += w0 * xs[o0 + j] + w1 * xs[o1 + j] + w2 * xs[o2 + j] + w3 * xs[o3 + j]
                i += 4
            while i < CRS:
                o0 = offs[base + i] + j0
                w0 = wm[k, i]
                for j in range(tl):
                    acc[j] += w0 * xs[o0 + j]
                i += 1
            for pp in range(pn):
                for q in range(Q):
                    y[n, k, p0 + pp, q] = acc[pp * Wp + q]


# dyw (N, K, P*Wp) wide dy (zeros at q >= Q); xp as direct_fwd; part (nchunk, K, Cg*R*S)
# partial sums over the samples of each chunk; one prange iteration per (chunk, k).
@njit(parallel=True, cache=True, fastmath=_FM)
def direct_dw(dyw, xp, offs, part, nchunk):
    N, K, L = dyw.shape
    CRS = part.shape[2]
    G = offs.shape[0] // CRS
    Kg = K // G
    per = (N + nchunk - 1) // nchunk
    for it in prange(nchunk * K):
        ci = it // K
        k = it % K
        base = (k // Kg) * CRS
        for i in range(CRS):
            part[ci, k, i] = 0
        for n in range(ci * per, min(N, (ci + 1) * per)):
            d = dyw[n, k]
            xs = xp[n]
            i = 0
            while i + 4 <= CRS:
                o0, o1, o2, o3 = (
                    offs[base + i],
                    offs[base + i + 1],
                    offs[base + i + 2],
                    offs[base + i + 3],
                )
                a0 = a1 = a2 = a3 = dyw.dtype.type(0)
                for j in range(L):
                    dj = d[j]
                    a0 += dj * xs[o0 + j]
                    a1 += dj * xs[o1 + j]
                    a2 += dj * xs[o2 + j]
                    a3 += dj * xs[o3 + j]
                part[ci, k, i] += a0
                part[ci, k, i + 1] += a1
                part[ci, k, i + 2] += a2
                part[ci, k, i + 3] += a3
                i += 4
            while i < CRS:
                o0 = offs[base + i]
                a0 = dyw.dtype.type(0)
                for j in range(L):
                    a0 += d[j] * xs[o0 + j]
                part[ci, k, i] += a0
                i += 1


# part (nchunk, K, CRS) -> dw (K, CRS), summed in chunk order (deterministic)
@njit(cache=True)
def sum_parts(part, dw):
    nchunk, K, CRS = part.shape
    for k in range(K):
        for i in range(CRS):
            acc = part[0, k, i]
            for ci in range(1, nchunk):
                acc += part[ci, k, i]
            dw[k, i] = acc


# w (K, Cg, R, S) -> wf (C, Kg*R*S): wf[g*Cg + c, (kl*R + r)*S + s] = w[g*Kg + kl, c, R-1-r, S-1-s]
@njit(cache=True)
def flip_weights(w, wf, G):
    K, Cg, R, S = w.shape
    Kg = K // G
    for g in range(G):
        for c in range(Cg):
            for kl in range(Kg):
                for r in range(R):
                    for s in range(S):
                        wf[g * Cg + c, (kl * R + r) * S + s] = w[
                            g * Kg + kl, c, R - 1 - r, S - 1 - s
                        ]
