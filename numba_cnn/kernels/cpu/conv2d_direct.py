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
# negative top/left crop. Returns how many copied values are not finite. One prange
# iteration per (n, c) plane.
@njit(parallel=True, cache=True)
def pad_planes(x, xp, top, left, Hp, Wp):
    N, C, H, W = x.shape
    zero = x.dtype.type(0)
    nonfinite = 0
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
                v = x[n, c, h, w] if 0 <= w < W else zero
                xp[n, row + wp] = v
                if not np.isfinite(v):
                    nonfinite += 1
        if c == C - 1:  # the tail read by discarded wide columns: keep it finite
            for t in range(C * Hp * Wp, xp.shape[1]):
                xp[n, t] = zero
    return nonfinite


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
        tl = (pn * Wp + 15) // 16 * 16  # whole 16-lane vectors: no scalar remainder loop
        j0 = p0 * Wp
        acc = np.empty((4, (rows * Wp + 15) // 16 * 16), dtype=y.dtype)
        xs = xp[n]
        for g in range(G):
            base = g * CRS
            k = g * Kg
            while k + 4 <= (g + 1) * Kg:  # four output channels share every x load
                _rows4(xs, wm, b, has_b, offs, base, k, j0, tl, acc, y, n, p0, pn, Wp)
                k += 4
            while k + 2 <= (g + 1) * Kg:
                _rows2(xs, wm, b, has_b, offs, base, k, j0, tl, acc, y, n, p0, pn, Wp)
                k += 2
            if k < (g + 1) * Kg:
                _rows1(xs, wm, b, has_b, offs, base, k, j0, tl, acc, y, n, p0, pn, Wp)


@njit(cache=True, fastmath=_FM, inline="always")
def _rows1(xs, wm, b, has_b, offs, base, k, j0, tl, acc, y, n, p0, pn, Wp):
    CRS = wm.shape[1]
    Q = y.shape[3]
    a0 = acc[0]
    bk = b[k] if has_b else y.dtype.type(0)
    for j in range(tl):
        a0[j] = bk
    i = 0
    while i + 8 <= CRS:  # slices: non-negative loop indices vectorise
        x0 = xs[offs[base + i] + j0 :]
        x1 = xs[offs[base + i + 1] + j0 :]
        x2 = xs[offs[base + i + 2] + j0 :]
        x3 = xs[offs[base + i + 3] + j0 :]
        x4 = xs[offs[base + i + 4] + j0 :]
        x5 = xs[offs[base + i + 5] + j0 :]
        x6 = xs[offs[base + i + 6] + j0 :]
        x7 = xs[offs[base + i + 7] + j0 :]
        w0, w1, w2, w3 = wm[k, i], wm[k, i + 1], wm[k, i + 2], wm[k, i + 3]
        w4, w5, w6, w7 = wm[k, i + 4], wm[k, i + 5], wm[k, i + 6], wm[k, i + 7]
        for j in range(tl):
            a0[j] += (w0 * x0[j] + w1 * x1[j] + w2 * x2[j] + w3 * x3[j]) + (
                w4 * x4[j] + w5 * x5[j] + w6 * x6[j] + w7 * x7[j]
            )
        i += 8
    while i < CRS:
        x0 = xs[offs[base + i] + j0 :]
        w0 = wm[k, i]
        for j in range(tl):
            a0[j] += w0 * x0[j]
        i += 1
    for pp in range(pn):
        for q in range(Q):
            y[n, k, p0 + pp, q] = a0[pp * Wp + q]


@njit(cache=True, fastmath=_FM, inline="always")
def _rows2(xs, wm, b, has_b, offs, base, k, j0, tl, acc, y, n, p0, pn, Wp):
    CRS = wm.shape[1]
    Q = y.shape[3]
    a0 = acc[0]
    a1 = acc[1]
    b0 = b[k] if has_b else y.dtype.type(0)
    b1 = b[k + 1] if has_b else y.dtype.type(0)
    for j in range(tl):
        a0[j] = b0
        a1[j] = b1
    i = 0
    while i + 4 <= CRS:
        x0 = xs[offs[base + i] + j0 :]
        x1 = xs[offs[base + i + 1] + j0 :]
        x2 = xs[offs[base + i + 2] + j0 :]
        x3 = xs[offs[base + i + 3] + j0 :]
        u0, u1, u2, u3 = wm[k, i], wm[k, i + 1], wm[k, i + 2], wm[k, i + 3]
        v0, v1, v2, v3 = wm[k + 1, i], wm[k + 1, i + 1], wm[k + 1, i + 2], wm[k + 1, i + 3]
        for j in range(tl):
            e0, e1, e2, e3 = x0[j], x1[j], x2[j], x3[j]
            a0[j] += u0 * e0 + u1 * e1 + u2 * e2 + u3 * e3
            a1[j] += v0 * e0 + v1 * e1 + v2 * e2 + v3 * e3
        i += 4
    while i < CRS:
        x0 = xs[offs[base + i] + j0 :]
        u0, v0 = wm[k, i], wm[k + 1, i]
        for j in range(tl):
            e0 = x0[j]
            a0[j] += u0 * e0
            a1[j] += v0 * e0
        i += 1
    for pp in range(pn):
        for q in range(Q):
            y[n, k, p0 + pp, q] = a0[pp * Wp + q]
            y[n, k + 1, p0 + pp, q] = a1[pp * Wp + q]


@njit(cache=True, fastmath=_FM, inline="always")
def _rows4(xs, wm, b, has_b, offs, base, k, j0, tl, acc, y, n, p0, pn, Wp):
    CRS = wm.shape[1]
    Q = y.shape[3]
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    zero = y.dtype.type(0)
    b0 = b[k] if has_b else zero
    b1 = b[k + 1] if has_b else zero
    b2 = b[k + 2] if has_b else zero
    b3 = b[k + 3] if has_b else zero
    for j in range(tl):
        a0[j] = b0
        a1[j] = b1
        a2[j] = b2
        a3[j] = b3
    i = 0
    while i + 4 <= CRS:
        x0 = xs[offs[base + i] + j0 :]
        x1 = xs[offs[base + i + 1] + j0 :]
        x2 = xs[offs[base + i + 2] + j0 :]
        x3 = xs[offs[base + i + 3] + j0 :]
        u0, u1, u2, u3 = wm[k, i], wm[k, i + 1], wm[k, i + 2], wm[k, i + 3]
        v0, v1, v2, v3 = wm[k + 1, i], wm[k + 1, i + 1], wm[k + 1, i + 2], wm[k + 1, i + 3]
        s0, s1, s2, s3 = wm[k + 2, i], wm[k + 2, i + 1], wm[k + 2, i + 2], wm[k + 2, i + 3]
        t0, t1, t2, t3 = wm[k + 3, i], wm[k + 3, i + 1], wm[k + 3, i + 2], wm[k + 3, i + 3]
        for j in range(tl):
            e0, e1, e2, e3 = x0[j], x1[j], x2[j], x3[j]
            a0[j] += u0 * e0 + u1 * e1 + u2 * e2 + u3 * e3
            a1[j] += v0 * e0 + v1 * e1 + v2 * e2 + v3 * e3
            a2[j] += s0 * e0 + s1 * e1 + s2 * e2 + s3 * e3
            a3[j] += t0 * e0 + t1 * e1 + t2 * e2 + t3 * e3
        i += 4
    while i < CRS:
        x0 = xs[offs[base + i] + j0 :]
        u0, v0, s0, t0 = wm[k, i], wm[k + 1, i], wm[k + 2, i], wm[k + 3, i]
        for j in range(tl):
            e0 = x0[j]
            a0[j] += u0 * e0
            a1[j] += v0 * e0
            a2[j] += s0 * e0
            a3[j] += t0 * e0
        i += 1
    for pp in range(pn):
        for q in range(Q):
            o = pp * Wp + q
            y[n, k, p0 + pp, q] = a0[o]
            y[n, k + 1, p0 + pp, q] = a1[o]
            y[n, k + 2, p0 + pp, q] = a2[o]
            y[n, k + 3, p0 + pp, q] = a3[o]


# dy (N,K,P,Q) -> dyw (N, K, L16): row p at p*Wp, zeros at q >= Q and past P*Wp; per (n, k)
@njit(parallel=True, cache=True)
def widen(dy, dyw, Wp):
    N, K, P, Q = dy.shape
    L16 = dyw.shape[2]
    zero = dy.dtype.type(0)
    for nk in prange(N * K):
        n = nk // K
        k = nk % K
        for t in range(L16):
            dyw[n, k, t] = zero
        for p in range(P):
            for q in range(Q):
                dyw[n, k, p * Wp + q] = dy[n, k, p, q]


# dyw (N, K, L16) wide dy; xp as direct_fwd; part (nchunk, K, Cg*R*S) partial sums over the
# samples of each chunk. One prange iteration per (chunk, four output channels of a group):
# 4 channels x 4 taps = 16 dot products share every load.
@njit(parallel=True, cache=True, fastmath=_FM)
def direct_dw(dyw, xp, offs, part, nchunk):
    N, K, L = dyw.shape
    CRS = part.shape[2]
    G = offs.shape[0] // CRS
    Kg = K // G
    nq = (Kg + 3) // 4
    per = (N + nchunk - 1) // nchunk
    zero = dyw.dtype.type(0)
    for it in prange(nchunk * G * nq):
        ci = it // (G * nq)
        g = (it // nq) % G
        last = (g + 1) * Kg - 1
        k0 = g * Kg + 4 * (it % nq)
        k1, k2, k3 = min(k0 + 1, last), min(k0 + 2, last), min(k0 + 3, last)  # repeats: no store
        base = g * CRS
        for i in range(CRS):
            part[ci, k0, i] = zero
            part[ci, k1, i] = zero
            part[ci, k2, i] = zero
            part[ci, k3, i] = zero
        for n in range(ci * per, min(N, (ci + 1) * per)):
            d0, d1, d2, d3 = dyw[n, k0], dyw[n, k1], dyw[n, k2], dyw[n, k3]
            xs = xp[n]
            i = 0
            while i < CRS:  # slices: non-negative loop indices vectorise
                i1, i2, i3 = min(i + 1, CRS - 1), min(i + 2, CRS - 1), min(i + 3, CRS - 1)
                x0 = xs[offs[base + i] :]
                x1 = xs[offs[base + i1] :]
                x2 = xs[offs[base + i2] :]
                x3 = xs[offs[base + i3] :]
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                c0 = c1 = c2 = c3 = e0 = e1 = e2 = e3 = zero
                for j in range(L):
                    u0, u1, u2, u3 = x0[j], x1[j], x2[j], x3[j]
                    f = d0[j]
                    a0 += f * u0
                    a1 += f * u1
                    a2 += f * u2
                    a3 += f * u3
                    f = d1[j]
                    b0 += f * u0
                    b1 += f * u1
                    b2 += f * u2
                    b3 += f * u3
                    f = d2[j]
                    c0 += f * u0
                    c1 += f * u1
                    c2 += f * u2
                    c3 += f * u3
                    f = d3[j]
                    e0 += f * u0
                    e1 += f * u1
                    e2 += f * u2
                    e3 += f * u3
                _store4(part, ci, k0, i, i1, i2, i3, a0, a1, a2, a3)
                if k1 != k0:
                    _store4(part, ci, k1, i, i1, i2, i3, b0, b1, b2, b3)
                if k2 != k1:
                    _store4(part, ci, k2, i, i1, i2, i3, c0, c1, c2, c3)
                if k3 != k2:
                    _store4(part, ci, k3, i, i1, i2, i3, e0, e1, e2, e3)
                i += 4


@njit(cache=True, inline="always")
def _store4(part, ci, k, i, i1, i2, i3, v0, v1, v2, v3):
    # taps past the end repeat the last one (i1..i3 clipped): add each distinct tap once
    part[ci, k, i] += v0
    if i1 != i:
        part[ci, k, i1] += v1
    if i2 != i1:
        part[ci, k, i2] += v2
    if i3 != i2:
        part[ci, k, i3] += v3


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
