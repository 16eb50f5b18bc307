"""Stride-1 conv for few output channels on the GEMM micro-kernel with row panels.

The packed GEMM's 16-pixel panels cross output rows whenever Q is no multiple of 16, and a
crossing panel must be packed: with few output channels (the product's M) every packed value
feeds only M FMAs, so packing costs as much as the arithmetic. Here a panel is MR = 6
channels by two halves of NR/2 pixels of one output row (8 float32 on AVX2), which lie side
by side in the padded input for every tap (c, r, s): the micro-kernel (``_gemm_micro._micro``,
12 ymm accumulators) reads both halves where they lie and writes them straight into y. The
halves of a row's last panel may overlap, and a row shorter than a panel is covered by two
overlapping halves (the same values written twice). Needs Q >= NR/2. One thread, (64,6,14,
14)->16 dx: 8-pixel panels (6 accumulators) 2.67 ms, two halves of 8 in one panel 2.29 ms.

    y[n, k, p, q0 + j] = b[k] + sum_t w[k, t] * xp[n, tap[t] + p*Wp + q0 + j]
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._gemm import ramp, workspace
from ._gemm_conv import _taps
from ._gemm_micro import TILES, _micro, tile
from ._serial import serial_twin
from ._threads import use_parallel
from .conv2d_direct import pad_planes

MR = 6  # channels a panel
#: Fewest pixels a row needs (half a panel of float32 pixels)
QMIN = TILES[np.dtype(np.float32)][1] // 2


# wm (K, T) -> ap (ceil(K/MR), T, MR): micro-panels of MR channels, zero past K
@njit(cache=True)
def pack_weights(wm, ap):
    K, T = wm.shape
    zero = wm.dtype.type(0)
    for p in range(ap.shape[0]):
        for t in range(T):
            for i in range(MR):
                k = p * MR + i
                ap[p, t, i] = wm[k, t] if k < K else zero


# xp (N, XS) padded samples; ap packed weights of one group (Kg channels); taps (T,) offsets
# of the group's taps in a sample; y (N, K, P, Q), channels k0..k0+Kg written; acc (MR*NR,)
# the micro-kernel's unused tile buffer. One prange iteration per (n, p) output row.
@njit(cache=True, parallel=True, _nrt=False)
def rows_fwd(xp, ap, taps, b, has_b, y, k0, Kg, Wp, acc, crow):
    N, K, P, Q = y.shape
    T = taps.shape[0]
    XS = xp.shape[1]
    PQ = P * Q
    xf, af, yf = xp.reshape(-1), ap.reshape(-1), y.reshape(-1)
    bmode = 1 if has_b else 0
    NR = tile(xf)[1]
    H = NR // 2
    nq = (Q + NR - 1) // NR
    for it in prange(N * P):
        n = it // P
        p = it % P
        for jq in range(nq):
            lo = min(jq * NR, Q - H)  # the panel's two halves: pixels lo.. and lo + half..
            half = min(jq * NR + H, Q - H) - lo
            for mb in range((Kg + MR - 1) // MR):
                m0 = k0 + mb * MR
                out = (yf, crow, m0, n * K * PQ + p * Q + lo, min(MR, k0 + Kg - m0), False, b,
                       bmode, 0, half)  # fmt: skip
                xo = n * XS + p * Wp + lo
                _micro(af, mb * T * MR, xf, xo, taps, 0, T, acc, out, MR, NR, half)


rows_fwd_serial = serial_twin(rows_fwd)


def conv_rows(x, wm, b, y, top, left, Hp, Wp, dilation, groups, R, S) -> None:
    """y (N,Ko,P,Q) = stride-1 conv of x (N,C,H,W) padded to (Hp, Wp) by (top, left) with
    wm (Ko, Cg*R*S) (+ b, or None); Q >= QMIN."""
    N, Ko, P, Q = y.shape
    C = x.shape[1]
    G = groups
    Kg, CRS = Ko // G, wm.shape[1]
    xp = workspace("rows_xp", N * C * Hp * Wp, x.dtype).reshape(N, C * Hp * Wp)
    pad_planes(x, xp, top, left, Hp, Wp)
    taps = _taps(C, R, S, Hp, Wp, dilation[0], dilation[1])
    ap = workspace("rows_ap", -(-Kg // MR) * CRS * MR, x.dtype).reshape(-1, CRS, MR)
    acc = workspace("rows_acc", MR * TILES[x.dtype][1], x.dtype)
    has_b = b is not None
    bb = b if has_b else acc[:0]
    kern = rows_fwd if use_parallel(y.size) else rows_fwd_serial
    crow = ramp(Ko, P * Q)
    for g in range(G):
        pack_weights(wm[g * Kg : (g + 1) * Kg], ap)
        kern(xp, ap, taps[g * CRS : (g + 1) * CRS], bb, has_b, y, g * Kg, Kg, Wp, acc, crow)
