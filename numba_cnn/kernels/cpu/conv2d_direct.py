"""Direct stride-1 conv kernels for small channel counts (no im2col matrix, no BLAS).

With stride 1 the im2col row of tap (c, r, s) is a shifted window of the padded input: over
the "wide" output plane (P rows of Wp columns, the columns q >= Q being discarded)

    y_wide[k, j] = sum_{c,r,s} w[k, c, r, s] * xp[c*Hp*Wp + r*dh*Wp + s*dw + j],  j < P*Wp

so a conv is a GEMM whose right operand is read straight from the padded input (kept in L1/L2
for small C). The backward data pass is the same kernel on dy padded by the kernel extent with
flipped, transposed weights; the weight gradient (``conv2d_direct_dw``) is the same GEMM
transposed (dot products).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._serial import serial_twin
from ._threads import use_parallel

_FM = {"reassoc", "contract"}  # lets LLVM vectorise dot-product reductions (NaN still propagates)


# x (N,C,H,W) -> xp (N, >= C*Hp*Wp): zero-padded planes, x[.., h, w] at (h+top, w+left);
# negative top/left crop; with full False only x's values are written (the zeros are in place
# from an earlier call of the same geometry). Returns how many copied values are not finite.
# One prange iteration per (n, c) plane.
@njit(parallel=True, cache=True)
def pad_planes_kernel(x, xp, top, left, Hp, Wp, full):
    N, C, H, W = x.shape
    zero = x.dtype.type(0)
    nonfinite = 0
    w0, w1 = max(0, left), min(Wp, left + W)  # the columns that take x
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        base = c * Hp * Wp
        bad = 0
        for hp in range(Hp):
            h = hp - top
            dst = xp[n, base + hp * Wp : base + (hp + 1) * Wp]
            if h < 0 or h >= H:
                if full:
                    for wp in range(Wp):
                        dst[wp] = zero
                continue
            if full:
                for wp in range(w0):
                    dst[wp] = zero
                for wp in range(w1, Wp):
                    dst[wp] = zero
            src = x[n, c, h, w0 - left : w1 - left]
            d = dst[w0:w1]
            for q in range(w1 - w0):  # branch-free, indexed by q alone: copies and counts
                v = src[q]  # in vectors
                d[q] = v
                bad += (v - v) != zero  # inf - inf and NaN - NaN are NaN: not finite
        nonfinite += bad
        if c == C - 1 and full:  # the tail read by discarded wide columns: keep it finite
            for t in range(C * Hp * Wp, xp.shape[1]):
                xp[n, t] = zero
    return nonfinite


pad_planes_serial = serial_twin(pad_planes_kernel)

#: Padded workspaces whose zeros are in place: data address -> (geometry, the array). The
#: array is held so its memory, and so the address, cannot go to another buffer meanwhile.
_ZEROED: dict = {}


def pad_planes(x, xp, top, left, Hp, Wp) -> int:
    """``pad_planes_kernel`` or, with one Numba thread or a small input, its serial twin.

    ``xp`` must be a workspace that only this function writes: when its last call had the
    same geometry, the zeros are still there and only x's values are copied (two threads,
    dy (64,16,10,10) into 18 x 18 planes: 0.182 ms before, 0.145 all written, 0.109 ms with
    the zeros kept)."""
    kern = pad_planes_kernel if use_parallel(x.size) else pad_planes_serial
    key = (x.shape, x.dtype, xp.shape, xp.strides, top, left, Hp, Wp)
    held = _ZEROED.get(xp.ctypes.data)
    full = held is None or held[0] != key
    bad = kern(x, xp, top, left, Hp, Wp, full)
    if full:
        if len(_ZEROED) >= 16:
            _ZEROED.clear()
        _ZEROED[xp.ctypes.data] = (key, xp)
    return bad


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
