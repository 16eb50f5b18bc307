"""Winograd F(2x2, 3x3) weight gradient of 3x3 stride-1 convs (groups 1), the adjoint of
``conv2d_winograd``'s forward y = A^T [ sum_c u * v ] A with u = G w G^T:

    du_xi (K, C) = sum_t m_xi (K, t) v_xi (C, t)^T,   m = A dy_tile A^T,  v = B^T d B
    dw[k, c] = G^T du[:, k, c] G                       (4x4 -> 3x3)

over the T tiles (2x2 blocks of dy, zero past P and Q): 16 products of 16 multiply-adds a
tile where the direct sum does 36. ``dw_kernel`` splits the chunks of tile rows over NPART
fixed parts (the sum order does not depend on the thread count); a part transforms its
chunks' windows (``conv2d_winograd``'s loops) and dy tiles, packs v's channels in panels and
adds the products into its own du on the micro-kernel; ``finish`` adds the parts in order
and applies G^T . G.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._gemm import ramp, workspace
from ._gemm_micro import TILES, micro, tile
from ._serial import serial_twin
from ._threads import use_parallel
from .conv2d_winograd import _cols, _extent, _mrow, _padded, windows

#: Parts the tiles are summed in (fixed: the same sums on any number of threads).
NPART = 4

#: Tiles a part transforms and multiplies at a time (rounded down to whole tile rows).
CHUNK = 96


# xp (N, C*Hp*Wp) padded x; dy (N,K,P,Q); du (NPART*16*K*Cp,) as (NPART, 16, K, Cp) sums.
# Part p takes chunks p, p + NPART, ...
@njit(parallel=True, cache=True, _nrt=False)
def dw_kernel(xp, Hp, Wp, TH, TW, dy, vbuf, gbuf, grow, pbuf, du, drow, ebuf, RPC, TCp,
              Cp):  # fmt: skip
    N, K, P, Q = dy.shape
    C = xp.shape[1] // (Hp * Wp)
    MR, NR = tile(dy)
    NTR = N * TH
    nchunk = (NTR + RPC - 1) // RPC
    vs = vbuf.shape[0] // (16 * NPART)
    gs = gbuf.shape[0] // (16 * NPART)
    lv, lg, lp = vbuf.shape[0] // NPART, gbuf.shape[0] // NPART, pbuf.shape[0] // NPART
    le, ld = ebuf.shape[0] // NPART, du.shape[0] // NPART
    zero = dy.dtype.type(0)
    for part in prange(NPART):
        v = vbuf[part * lv : (part + 1) * lv]
        g = gbuf[part * lg : (part + 1) * lg]
        pk = pbuf[part * lp : (part + 1) * lp]
        e = ebuf[part * le : (part + 1) * le]
        dup = du[part * ld : (part + 1) * ld]
        for t in range(ld):
            dup[t] = zero
        for ch in range(part, nchunk, NPART):
            ri0 = ch * RPC
            nr = min(RPC, NTR - ri0)
            tc = nr * TW
            for c in range(C):  # v = B^T d B, as in the forward
                windows(xp, Hp, Wp, c, ri0, nr, TH, TW, e, v, vs, TCp)
            for k in range(K):  # m = A dy_tile A^T, dy rows split over the whole chunk first
                for rr in range(nr):
                    n = (ri0 + rr) // TH
                    i = (ri0 + rr) % TH
                    o = rr * TW
                    _split(dy[n, k, 2 * i], e[o:], e[TCp + o :], TW, Q)
                    if 2 * i + 1 < P:
                        _split(dy[n, k, 2 * i + 1], e[2 * TCp + o :], e[3 * TCp + o :], TW, Q)
                    else:
                        for j in range(TW):
                            e[2 * TCp + o + j] = zero
                        for j in range(TW):
                            e[3 * TCp + o + j] = zero
                _tile_a(e, TCp, tc, g[k * TCp :], gs)
            for xi in range(16):  # du[xi] (K, Cp) += m[xi] (K, tc) @ v[xi] (C, tc)^T
                for cp in range(Cp // NR):
                    _pack(v, xi * vs + cp * NR * TCp, TCp, min(NR, C - cp * NR), tc, pk, NR)
                    for p in range((K + MR - 1) // MR):
                        m1 = xi * K + p * MR
                        mp = min(MR, K - p * MR)
                        out = (dup, drow, m1, cp * NR, mp, True, dy[0, 0, 0], 0, 0)
                        micro(g, (grow, m1, mp, 0), pk, 0, tc, dup, out)


# dy row yr -> its even columns at ev[:TW] and odd ones at od[:TW] (0 past Q)
@njit(cache=True, inline="always")
def _split(yr, ev, od, TW, Q):
    for j in range(Q // 2):
        ev[j] = yr[2 * j]
    for j in range(Q // 2):
        od[j] = yr[2 * j + 1]
    if Q % 2:
        ev[TW - 1] = yr[Q - 1]
        od[TW - 1] = yr.dtype.type(0)


# A g A^T of the n tiles: g rows 0 and 1 as (e0, o0) and (e1, o1), es apart in e; A g has
# rows (a, b) = (g0), (g0 + g1), (g0 - g1), (-g1) and each row (a, b) gives a, a+b, a-b, -b
@njit(cache=True, inline="always")
def _tile_a(e, es, n, m, gs):
    e0, o0, e1, o1 = e[:n], e[es : es + n], e[2 * es : 2 * es + n], e[3 * es : 3 * es + n]
    for j in range(n):
        m[j] = e0[j]
    for j in range(n):
        m[gs + j] = e0[j] + o0[j]
    for j in range(n):
        m[2 * gs + j] = e0[j] - o0[j]
    for j in range(n):
        m[3 * gs + j] = -o0[j]
    for j in range(n):
        m[4 * gs + j] = e0[j] + e1[j]
    for j in range(n):
        m[5 * gs + j] = (e0[j] + e1[j]) + (o0[j] + o1[j])
    for j in range(n):
        m[6 * gs + j] = (e0[j] + e1[j]) - (o0[j] + o1[j])
    for j in range(n):
        m[7 * gs + j] = -(o0[j] + o1[j])
    for j in range(n):
        m[8 * gs + j] = e0[j] - e1[j]
    for j in range(n):
        m[9 * gs + j] = (e0[j] - e1[j]) + (o0[j] - o1[j])
    for j in range(n):
        m[10 * gs + j] = (e0[j] - e1[j]) - (o0[j] - o1[j])
    for j in range(n):
        m[11 * gs + j] = -(o0[j] - o1[j])
    for j in range(n):
        m[12 * gs + j] = -e1[j]
    for j in range(n):
        m[13 * gs + j] = -e1[j] - o1[j]
    for j in range(n):
        m[14 * gs + j] = -e1[j] + o1[j]
    for j in range(n):
        m[15 * gs + j] = o1[j]


# v rows c0 .. c0+nc (TCp apart from o) -> pk (tc, NR): pk[t*NR + q] = v[o + q*TCp + t], zero
# for q >= nc (a panel of channels past C)
@njit(cache=True, inline="always")
def _pack(v, o, TCp, nc, tc, pk, NR):
    for q in range(NR):
        if q < nc:
            src = v[o + q * TCp : o + q * TCp + tc]
            for t in range(tc):
                pk[t * NR + q] = src[t]
        else:
            for t in range(tc):
                pk[t * NR + q] = 0


dw_serial = serial_twin(dw_kernel)


# du (NPART, 16, K, Cp) -> dw (K, C, 3, 3) = G^T (sum of the parts, in order, left in du[0]) G;
# loops along c (contiguous in du) so they run in vectors. False (dw untouched) when a sum is
# not finite: a NaN/inf in dy makes one (inf * v is inf or NaN, and stays so in a sum)
@njit(cache=True)
def finish(du, dw):
    K, C = dw.shape[0], dw.shape[1]
    h = dw.dtype.type(0.5)
    d = du[0]
    for p in range(1, du.shape[0]):
        dp = du[p]
        for xi in range(16):
            for k in range(K):
                a, b = d[xi, k], dp[xi, k]
                for c in range(C):
                    a[c] += b[c]
    nonfinite = 0
    for xi in range(16):
        for k in range(K):
            a = d[xi, k]
            for c in range(C):
                nonfinite += (a[c] - a[c]) != 0
    if nonfinite:
        return False
    z = np.empty((12, C), dtype=dw.dtype)  # G^T D: rows r = 0..2 of column s at z[4r + s]
    for k in range(K):
        for s in range(4):  # along r
            d0, d1, d2, d3 = d[s, k], d[4 + s, k], d[8 + s, k], d[12 + s, k]
            z0, z1, z2 = z[s], z[4 + s], z[8 + s]
            for c in range(C):
                z0[c] = d0[c] + h * d1[c] + h * d2[c]
            for c in range(C):
                z1[c] = h * d1[c] - h * d2[c]
            for c in range(C):
                z2[c] = h * d1[c] + h * d2[c] + d3[c]
        for r in range(3):  # (G^T D) G: along s
            z0, z1, z2, z3 = z[4 * r], z[4 * r + 1], z[4 * r + 2], z[4 * r + 3]
            for c in range(C):
                dw[k, c, r, 0] = z0[c] + h * z1[c] + h * z2[c]
                dw[k, c, r, 1] = h * z1[c] - h * z2[c]
                dw[k, c, r, 2] = h * z1[c] + h * z2[c] + z3[c]
    return True


def conv_backward_weight(dy, x, dw, pad, chunk: int | None = None) -> bool:
    """dw (K,C,3,3) of a 3x3 stride-1 conv of x (N,C,H,W) with output gradient dy (N,K,P,Q),
    groups 1; False (dw untouched) when x or dy holds NaN/inf (as ``conv2d_winograd``)."""
    N, C, H, W = x.shape
    K, P, Q = dy.shape[1], dy.shape[2], dy.shape[3]
    Hp, Wp = _extent(P, Q, H, W, pad[0], pad[1])
    xp = _padded(x, "gx", pad[0], pad[1], Hp, Wp)
    if xp is None:
        return False
    TH, TW = (P + 1) // 2, (Q + 1) // 2
    NR = TILES[dy.dtype][1]
    RPC = max(1, min(N * TH, (CHUNK if chunk is None else chunk) // TW))
    TCp = _cols(RPC * TW, NR)
    Cp = -(-C // NR) * NR
    vs, gs = C * TCp + NR, K * TCp + NR  # a cache line past: 16 streams in 16 L1 sets
    dt = dy.dtype
    vbuf = workspace("wino_v", NPART * 16 * vs, dt)
    gbuf = workspace("wino_m", NPART * 16 * gs, dt)
    pbuf = workspace("wino_pk", NPART * TCp * NR, dt)
    du = workspace("wino_du", NPART * 16 * K * Cp, dt)
    ebuf = workspace("wino_e", NPART * 8 * (TCp + 1), dt)
    (dw_kernel if use_parallel(N * TH * TW * C * K) else dw_serial)(
        xp, Hp, Wp, TH, TW, dy, vbuf, gbuf, _mrow(K, TCp, gs), pbuf, du, ramp(16 * K, Cp), ebuf,
        RPC, TCp, Cp,
    )  # fmt: skip
    return finish(du.reshape(NPART, 16, K, Cp), dw)
