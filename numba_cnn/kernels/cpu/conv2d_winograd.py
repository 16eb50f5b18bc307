"""Winograd F(2x2, 3x3) for 3x3 stride-1 convs on the GEMM micro-kernel (Lavin & Gray, 2015).

Each 2x2 block of outputs (a "tile") comes from a 4x4 window d of the padded input:

    y_tile = A^T [ sum_c (G g_kc G^T) * (B^T d_c B) ] A        (* elementwise)

    B^T = [1  0 -1  0]      G = [ 1    0    0 ]      A^T = [1  1  1  0]
          [0  1  1  0]          [1/2  1/2  1/2]            [0  1 -1 -1]
          [0 -1  1  0]          [1/2 -1/2  1/2]
          [0  1  0 -1]          [ 0    0    1 ]

so the sum over channels is 16 independent products, one per position xi of the 4x4 form:

    m_xi (K, T) = u_xi (K, C) @ v_xi (C, T),   u_xi = (G g G^T)[xi],  v_xi = (B^T d B)[xi]

over the T tiles: 16 multiply-adds a tile and channel pair where the direct sum does 4 x 9,
2.25x fewer. ``weights`` writes u once a call; ``fused_kernel`` takes chunks of tile rows
and, per chunk and thread, writes v, runs the 16 products on ``micro_rows`` and writes y
from m, all in L2. The coefficients are 0, +-1 and 1/2: the float32 error stays near the
direct sum's (measured 1.4e-7 to 3.8e-7 of the largest output). NaN and inf stay on the GEMM
path (``conv_forward``): one inf in a window would make inf - inf in its tile's neighbours.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from ._gemm import ramp, workspace
from ._gemm_micro import TILES, micro_rows, tile
from ._serial import serial_twin
from ._threads import num_threads, use_parallel
from .conv2d_direct import flip_weights, pad_planes


# w (Ko, Cg, 3, 3) -> u (16, Ko, Cg): u[xi, k, c] = (G w[k, c] G^T)[xi]. Each pair's 16
# values go to a (Ko*Cg, 16) scratch first, then across: stored straight into u they would
# be 16 streams Ko*Cg*4 bytes apart, often a multiple of 4 KiB (one L1 set).
@njit(cache=True)
def weights(w, u):
    Ko, Cg = w.shape[0], w.shape[1]
    half = w.dtype.type(0.5)
    tmp = np.empty((Ko * Cg, 16), dtype=w.dtype)
    t = np.empty((4, 3), dtype=w.dtype)
    for k in range(Ko):
        for c in range(Cg):
            for s in range(3):  # G g: along r
                g0, g1, g2 = w[k, c, 0, s], w[k, c, 1, s], w[k, c, 2, s]
                t[0, s] = g0
                t[1, s] = (g0 + g1 + g2) * half
                t[2, s] = (g0 - g1 + g2) * half
                t[3, s] = g2
            d = tmp[k * Cg + c]
            for r in range(4):  # (G g) G^T: along s
                g0, g1, g2 = t[r, 0], t[r, 1], t[r, 2]
                d[r * 4 + 0] = g0
                d[r * 4 + 1] = (g0 + g1 + g2) * half
                d[r * 4 + 2] = (g0 - g1 + g2) * half
                d[r * 4 + 3] = g2
    uf = u.reshape(16, Ko * Cg)
    for xi in range(16):
        for kc in range(Ko * Cg):
            uf[xi, kc] = tmp[kc, xi]


# xp (N, C*Hp*Wp) padded planes (Hp >= 2*TH + 2, Wp >= 2*TW + 2); u (16*Ko*Cg,) as
# (16, Ko, Cg); b (Ko,) (used when has_b); y (N,Ko,P,Q). Tile t = (n*TH + i)*TW + j covers
# y[n, :, 2i:2i+2, 2j:2j+2]. One prange iteration per slot; slot s takes chunks s, s + nslot,
# ... of RPC tile rows (RPC*TW tiles) and, in its own buffers, transforms the windows to
# v (16, C, TCp), runs the 16 products m (16, Ko, TCp) on the micro-kernel (B rows of v read
# in place) and transforms m into y. Buffers between xi are a cache line longer than a
# multiple of 4 KiB (16 streams in 16 L1 sets, not one); the transforms run along tile rows in
# vectors (even and odd columns split first); the chunk stays in L2.
@njit(parallel=True, cache=True, _nrt=False)
def fused_kernel(xp, Hp, Wp, TH, TW, u, urow, b, has_b, y, vbuf, vrow, mbuf, mrow, ebuf, RPC,
                 TCp, nslot, G):  # fmt: skip
    N, Ko, P, Q = y.shape
    C = xp.shape[1] // (Hp * Wp)
    Kg, Cg = Ko // G, C // G
    MR, NR = tile(y)
    NTR = N * TH  # tile rows
    nchunk = (NTR + RPC - 1) // RPC
    npan = (RPC * TW + NR - 1) // NR
    vs = vbuf.shape[0] // (16 * nslot)
    ms = mbuf.shape[0] // (16 * nslot)
    lv, lm, le = vbuf.shape[0] // nslot, mbuf.shape[0] // nslot, ebuf.shape[0] // nslot
    zero = y.dtype.type(0)
    for s in prange(nslot):
        v = vbuf[s * lv : (s + 1) * lv]
        m = mbuf[s * lm : (s + 1) * lm]
        e = ebuf[s * le : (s + 1) * le]  # (8, TCp): rows of B^T d (of a tile row), of m A
        for ch in range(s, nchunk, nslot):
            ri0 = ch * RPC
            nr = min(RPC, NTR - ri0)
            tc = nr * TW
            for c in range(C):  # B^T d B of each window, into row c of v[xi]
                windows(xp, Hp, Wp, c, ri0, nr, TH, TW, e, v, vs, TCp)
                for xi in range(16):  # columns past the chunk's tiles: finite, dropped later
                    for t in range(tc, npan * NR):
                        v[xi * vs + c * TCp + t] = zero
            for xi in range(16):  # m[xi] (Ko, TCp) = u[xi] (Ko, Cg) @ v[xi] (Cg, TCp) per group
                for g in range(G):
                    for pn in range((tc + NR - 1) // NR):
                        for p in range((Kg + MR - 1) // MR):
                            m1 = xi * Ko + g * Kg + p * MR
                            mp = min(MR, Kg - p * MR)
                            out = (m, mrow, m1, pn * NR, mp, False, b, 0, 0)
                            pa = (urow, m1, mp, 0)
                            micro_rows(u, pa, v, vrow, g * Cg, xi * vs + pn * NR, Cg, m, out,
                                       NR // 2)  # fmt: skip
            for k in range(Ko):  # A^T m A (+ bias) of each tile, into y
                bias = b[k] if has_b else zero
                for r in range(4):  # m A along s for each of the 4 rows, the whole chunk
                    o = 4 * r * ms + k * TCp
                    _rows_a(m[o:], ms, e[2 * r * TCp :], e[(2 * r + 1) * TCp :], tc)
                for rr in range(nr):  # A^T (m A): rows 2i and 2i + 1 of y
                    n = (ri0 + rr) // TH
                    i = (ri0 + rr) % TH
                    _cols_a(e[rr * TW :], TCp, 0, y[n, k, 2 * i], Q, TW, bias)
                    if 2 * i + 1 < P:
                        _cols_a(e[rr * TW :], TCp, 1, y[n, k, 2 * i + 1], Q, TW, bias)


# The helpers below are loops of one store stream each, indexed by the loop variable alone
# (LLVM vectorises a loop only when it can check every store against every other access at
# run time, a handful of pairs at most, and an index offset by a run-time value goes through
# Numba's negative-index wrap-around, which hides the stride).


# v[xi*vs + c*TCp + rr*TW + j] = (B^T d B)[xi] of the window of tile j in tile row ri0 + rr
# (rr < nr) of channel c: the 4 x (2 TW + 2) rows of a tile row go through e (>= 8 TW + 8)
@njit(cache=True, inline="always")
def windows(xp, Hp, Wp, c, ri0, nr, TH, TW, e, v, vs, TCp):
    L = 2 * TW + 2  # columns of a tile row's windows
    for rr in range(nr):
        n = (ri0 + rr) // TH
        i = (ri0 + rr) % TH
        x = xp[n, c * Hp * Wp + 2 * i * Wp : (c + 1) * Hp * Wp]
        _rows_bt(x, Wp, e, L)
        for r in range(4):  # (B^T d) B along s: d_s = t[2j + s]
            o = 4 * r * vs + c * TCp + rr * TW
            _cols_b(e[r * L : (r + 1) * L], v[o:], v[o + vs :], v[o + 2 * vs :],
                    v[o + 3 * vs :], TW)  # fmt: skip


# B^T d along r for the 4 rows of a tile row: t_r = e[r*L : (r+1)*L], L columns
@njit(cache=True, inline="always")
def _rows_bt(x, Wp, e, L):
    x0, x1, x2, x3 = x[:L], x[Wp : Wp + L], x[2 * Wp : 2 * Wp + L], x[3 * Wp : 3 * Wp + L]
    t0, t1, t2, t3 = e[:L], e[L : 2 * L], e[2 * L : 3 * L], e[3 * L : 4 * L]
    for q in range(L):
        t0[q] = x0[q] - x2[q]
    for q in range(L):
        t1[q] = x1[q] + x2[q]
    for q in range(L):
        t2[q] = x2[q] - x1[q]
    for q in range(L):
        t3[q] = x1[q] - x3[q]


# (B^T d) B along s of one row t for the TW tiles j: d0..d3 = the 4 values of xi = 4r + s
@njit(cache=True, inline="always")
def _cols_b(t, d0, d1, d2, d3, TW):
    for j in range(TW):
        d0[j] = t[2 * j] - t[2 * j + 2]
    for j in range(TW):
        d1[j] = t[2 * j + 1] + t[2 * j + 2]
    for j in range(TW):
        d2[j] = t[2 * j + 2] - t[2 * j + 1]
    for j in range(TW):
        d3[j] = t[2 * j + 1] - t[2 * j + 3]


# m A for row r of the products: sr = m_r0 + m_r1 + m_r2, dr = m_r1 - m_r2 - m_r3
@njit(cache=True, inline="always")
def _rows_a(mr, ms, sr, dr, TW):
    m0, m1, m2, m3 = mr[:TW], mr[ms : ms + TW], mr[2 * ms : 2 * ms + TW], mr[3 * ms : 3 * ms + TW]
    for j in range(TW):
        sr[j] = m0[j] + m1[j] + m2[j]
    for j in range(TW):
        dr[j] = m1[j] - m2[j] - m3[j]


# A^T (m A) for output row h of TW tiles (h = 0: rows 0+1+2, h = 1: rows 1-2-3) into yr;
# e holds s_r at e[2r*es :] and d_r at e[(2r+1)*es :]
@njit(cache=True, inline="always")
def _cols_a(e, es, h, yr, Q, TW, bias):
    s0, d0 = e[(2 * h) * es :], e[(2 * h + 1) * es :]
    s1, d1 = e[(2 * h + 2) * es :], e[(2 * h + 3) * es :]
    s2, d2 = e[(2 * h + 4) * es :], e[(2 * h + 5) * es :]
    sg = yr.dtype.type(1 - 2 * h)  # +1 for row 0, -1 for row 1
    for j in range(Q // 2):
        yr[2 * j] = s0[j] + sg * s1[j] + sg * s2[j] + bias
        yr[2 * j + 1] = d0[j] + sg * d1[j] + sg * d2[j] + bias
    if Q % 2:
        yr[Q - 1] = s0[TW - 1] + sg * s1[TW - 1] + sg * s2[TW - 1] + bias


fused_serial = serial_twin(fused_kernel)

#: Tiles a slot transforms and multiplies at a time (rounded down to whole tile rows).
CHUNK = 96


def _cols(TC: int, NR: int) -> int:
    """Row length of v and m: TC rounded up to panels, not a multiple of 1 KiB (L1 sets)."""
    tcp = -(-TC // NR) * NR
    return tcp + NR if tcp % 256 == 0 else tcp


def product(xp, Hp: int, Wp: int, w, b, y, groups: int, chunk: int | None = None) -> None:
    """y (N,Ko,P,Q) = 3x3 stride-1 conv of the padded planes xp (N, C*Hp*Wp) with w
    (Ko, C//groups, 3, 3) (+ b), Hp >= 2*ceil(P/2) + 2 and Wp >= 2*ceil(Q/2) + 2."""
    N, Ko, P, Q = y.shape
    C = xp.shape[1] // (Hp * Wp)
    Cg = C // groups
    TH, TW = (P + 1) // 2, (Q + 1) // 2
    u = workspace("wino_u", 16 * Ko * Cg, y.dtype)
    weights(w, u.reshape(16, Ko, Cg))
    par = use_parallel(N * TH * TW * Cg * Ko)
    nslot = num_threads() if par else 1
    NR = TILES[y.dtype][1]
    RPC = max(1, min(N * TH, (CHUNK if chunk is None else chunk) // TW))
    TCp = _cols(RPC * TW, NR)
    vs, ms = C * TCp + NR, Ko * TCp + NR  # a cache line past C*TCp: see fused_kernel
    vbuf = workspace("wino_v", nslot * 16 * vs, y.dtype)
    mbuf = workspace("wino_m", nslot * 16 * ms, y.dtype)
    ebuf = workspace("wino_e", nslot * 8 * (TCp + 1), y.dtype)
    has_b = b is not None
    bb = b if has_b else u[:Ko]
    (fused_kernel if par else fused_serial)(
        xp, Hp, Wp, TH, TW, u, ramp(16 * Ko, Cg), bb, has_b, y, vbuf, ramp(C, TCp), mbuf,
        _mrow(Ko, TCp, ms), ebuf, RPC, TCp, nslot, groups,
    )  # fmt: skip


@lru_cache(maxsize=64)
def _mrow(Ko: int, TC: int, ms: int) -> np.ndarray:
    """Row offsets xi*ms + k*TC of m (16, Ko, TC) with ms between xi (cached, read-only)."""
    r = (np.arange(16, dtype=np.int64)[:, None] * ms + np.arange(Ko) * TC).reshape(-1)
    r.flags.writeable = False
    return r


def _extent(P: int, Q: int, H: int, W: int, top: int, left: int) -> tuple[int, int]:
    """(Hp, Wp) of padded planes that hold every tile's window and the image at (top, left)."""
    return max(2 * ((P + 1) // 2) + 2, H + top), max(2 * ((Q + 1) // 2) + 2, W + left)


def _padded(x, name: str, top: int, left: int, Hp: int, Wp: int):
    """x (N,C,H,W) zero-padded to (N, C*Hp*Wp) in a workspace; None when x holds NaN/inf."""
    N, C = x.shape[0], x.shape[1]
    xp = workspace(name, N * C * Hp * Wp, x.dtype).reshape(N, C * Hp * Wp)
    return None if pad_planes(x, xp, top, left, Hp, Wp) else xp


# NaN/inf stay on the GEMM path: a tile's transforms mix all 16 inputs of its window, so one
# non-finite value would reach outputs whose windows never hold it (and inf - inf is NaN).
def conv_forward(x, w, b, y, pad, groups: int) -> bool:
    """y (N,K,P,Q) = conv(x (N,C,H,W), w (K,C//groups,3,3)) + b, stride 1, dilation 1;
    False (y untouched) when x or w holds NaN/inf."""
    H, W = x.shape[2], x.shape[3]
    Hp, Wp = _extent(y.shape[2], y.shape[3], H, W, pad[0], pad[1])
    xp = _padded(x, "gx", pad[0], pad[1], Hp, Wp) if np.isfinite(w).all() else None
    if xp is None:
        return False
    product(xp, Hp, Wp, w, b, y, groups)
    return True


def conv_backward_data(dy, w, dx, pad, groups: int) -> bool:
    """dx (N,C,H,W) of a 3x3 stride-1 conv: dy padded by 2 - pad, convolved with the flipped,
    transposed weights; False (dx untouched) when dy or w holds NaN/inf."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    K = w.shape[0]
    top, left = 2 - pad[0], 2 - pad[1]
    Hp, Wp = _extent(H, W, dy.shape[2], dy.shape[3], top, left)
    dyp = _padded(dy, "gdy", top, left, Hp, Wp) if np.isfinite(w).all() else None
    if dyp is None:
        return False
    wf = workspace("gwflip", C * K // groups * 9, w.dtype).reshape(C, K // groups, 3, 3)
    flip_weights(w, wf.reshape(C, -1), groups)
    product(dyp, Hp, Wp, wf, None, dx, groups)
    return True
