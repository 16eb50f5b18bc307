"""Stride-1 conv for few output channels on the GEMM micro-kernel with 8-pixel row panels.

The packed GEMM's 16-pixel panels cross output rows whenever Q is no multiple of 16, and a
crossing panel must be packed: with few output channels (the product's M) every packed value
feeds only M FMAs, so packing costs as much as the arithmetic. Here a panel is 8 pixels of
one output row, which lie side by side in the padded input for every tap (c, r, s): the
micro-kernel (``_gemm_micro._micro``, MR = 6 channels x NR = 8 pixels, six ymm accumulators)
reads them where they lie and writes the 6 x 8 tile straight into y. A row whose Q is no
multiple of 8 ends with a panel that overlaps the one before (the same values written
twice). Needs Q >= 8.

    y[n, k, p, q0 + j] = b[k] + sum_t w[k, t] * xp[n, tap[t] + p*Wp + q0 + j],  j < 8
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._gemm import workspace
from ._gemm_conv import _taps
from ._gemm_micro import _micro
from ._serial import serial_twin
from ._threads import use_parallel
from .conv2d_direct import pad_planes

MR, NR = 6, 8


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
@njit(cache=True, parallel=True)
def rows_fwd(xp, ap, taps, b, has_b, y, k0, Kg, Wp, acc):
    N, K, P, Q = y.shape
    T = taps.shape[0]
    XS = xp.shape[1]
    PQ = P * Q
    xf, af, yf = xp.reshape(-1), ap.reshape(-1), y.reshape(-1)
    crow = np.arange(K) * PQ
    bmode = 1 if has_b else 0
    nq = (Q + NR - 1) // NR
    for it in prange(N * P):
        n = it // P
        p = it % P
        for jq in range(nq):
            q0 = min(jq * NR, Q - NR)
            for mb in range((Kg + MR - 1) // MR):
                m0 = k0 + mb * MR
                out = (yf, crow, m0, n * K * PQ + p * Q + q0, min(MR, k0 + Kg - m0), False, b,
                       bmode, 0)  # fmt: skip
                xo = n * XS + p * Wp + q0
                _micro(af, mb * T * MR, xf, xo, taps, 0, T, acc, out, MR, NR, None)


rows_fwd_serial = serial_twin(rows_fwd)


def conv_rows(x, wm, b, y, top, left, Hp, Wp, dilation, groups, R, S) -> None:
    """y (N,Ko,P,Q) = stride-1 conv of x (N,C,H,W) padded to (Hp, Wp) by (top, left) with
    wm (Ko, Cg*R*S) (+ b, or None); Q >= NR."""
    N, Ko, P, Q = y.shape
    C = x.shape[1]
    G = groups
    Kg, CRS = Ko // G, wm.shape[1]
    xp = workspace("rows_xp", N * C * Hp * Wp, x.dtype).reshape(N, C * Hp * Wp)
    pad_planes(x, xp, top, left, Hp, Wp)
    taps = _taps(C, R, S, Hp, Wp, dilation[0], dilation[1])
    ap = workspace("rows_ap", -(-Kg // MR) * CRS * MR, x.dtype).reshape(-1, CRS, MR)
    acc = workspace("rows_acc", MR * NR, x.dtype)
    has_b = b is not None
    bb = b if has_b else acc[:0]
    kern = rows_fwd if use_parallel(y.size) else rows_fwd_serial
    for g in range(G):
        pack_weights(wm[g * Kg : (g + 1) * Kg], ap)
        kern(xp, ap, taps[g * CRS : (g + 1) * CRS], bb, has_b, y, g * Kg, Kg, Wp, acc)
