"""Convolution on the packed GEMM (``_gemm``): implicit im2col for every pass.

The packing routines gather the im2col operand straight from the zero-padded input, so no
column matrix exists. With ``xp`` the padded input flattened, one group's forward is

    A = W_g (Kg, CRS)                    A[m, t]   = w[(g*Kg + m)*CRS + t]
    B = col (CRS, N*P*Q), implicit       B[t, j]   = xp[tap[t] + pix[j]]
    C = y_g (Kg, N*P*Q)                  C[m, j]   = y[(g*Kg + m)*PQ + out[j]]

with tap[t] = c*Hp*Wp + r*dh*Wp + s*dw (channel of the group), pix[j] = n*C*Hp*Wp +
p*sh*Wp + q*sw and out[j] = n*K*PQ + p*Q + q for j = (n*P + p)*Q + q. The stride-1 data
gradient is the same product on dy padded by the kernel extent with flipped weights; the
weight gradient is dW_g (Kg, CRS) = dY_g (Kg, N*P*Q) @ col^T, reduced over N*P*Q.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import conv2d_direct as d_
from . import conv2d_im2col as k_
from ._gemm import gemm, ramp, workspace


@lru_cache(maxsize=64)
def _pix(N: int, P: int, Q: int, sample: int, row: int, col: int, out_sample: int, out_row: int):
    """(in, out) offsets of each output pixel j = (n*P + p)*Q + q (cached, read-only)."""
    n = np.arange(N, dtype=np.int64)[:, None, None]
    p = np.arange(P, dtype=np.int64)[None, :, None]
    q = np.arange(Q, dtype=np.int64)[None, None, :]
    pin = (n * sample + p * row + q * col).reshape(-1)
    pout = (n * out_sample + p * out_row + q).reshape(-1)
    pin.flags.writeable = pout.flags.writeable = False
    return pin, pout


@lru_cache(maxsize=64)
def _taps(C: int, R: int, S: int, Hp: int, Wp: int, dh: int, dw: int) -> np.ndarray:
    """tap[(c*R + r)*S + s] = c*Hp*Wp + r*dh*Wp + s*dw (cached, read-only)."""
    c = np.arange(C, dtype=np.int64)[:, None, None] * (Hp * Wp)
    r = np.arange(R, dtype=np.int64)[None, :, None] * (dh * Wp)
    t = (c + r + np.arange(S, dtype=np.int64) * dw).reshape(-1)
    t.flags.writeable = False
    return t


def _padded(x: np.ndarray, name: str, top: int, left: int, Hp: int, Wp: int) -> np.ndarray:
    """x (N,C,H,W) zero-padded to (N, C*Hp*Wp) in a workspace (x itself when no padding)."""
    N, C, H, W = x.shape
    if top == 0 and left == 0 and (Hp, Wp) == (H, W) and x.flags.c_contiguous:
        return x.reshape(N, C * H * W)
    xp = workspace(name, N * C * Hp * Wp, x.dtype).reshape(N, C * Hp * Wp)
    d_.pad_planes(x, xp, top, left, Hp, Wp)
    return xp


def _extent(H, W, P, Q, top, left, stride, dilation, R, S) -> tuple[int, int]:
    (sh, sw), (dh, dw) = stride, dilation
    Hp = max(H + top, (P - 1) * sh + dh * (R - 1) + 1)
    return Hp, max(W + left, (Q - 1) * sw + dw * (S - 1) + 1)


def _forward(xp, Hp, Wp, wm, b, y, stride, dilation, groups, R, S) -> None:
    """y (N,K,P,Q) = conv of the padded planes xp (N, C*Hp*Wp) with wm (K, Cg*R*S) + b."""
    N, K, P, Q = y.shape
    C = xp.shape[1] // (Hp * Wp)
    G, Kg, Cg = groups, K // groups, C // groups
    CRS, PQ = Cg * R * S, P * Q
    (sh, sw), (dh, dw) = stride, dilation
    pin, pout = _pix(N, P, Q, xp.shape[1], sh * Wp, sw, K * PQ, Q)
    taps = _taps(C, R, S, Hp, Wp, dh, dw)
    xf, wf, yf = xp.reshape(-1), wm.reshape(-1), y.reshape(-1)
    for g in range(G):
        bg = None if b is None else b[g * Kg : (g + 1) * Kg]
        gemm(
            wf, ramp(Kg, CRS, g * Kg * CRS), ramp(CRS, 1), True,
            xf, taps[g * CRS : (g + 1) * CRS], pin, False,
            yf, ramp(Kg, PQ, g * Kg * PQ), pout, bg, 1, b_in_place=True,
        )  # fmt: skip


def conv_forward(x, w, b, y, stride, pad, dilation, groups, product=_forward) -> None:
    """y (N,K,P,Q) = conv(x (N,C,H,W), w (K,Cg,R,S)) + b, any stride/padding/dilation/groups;
    ``product`` the kernel of the padded planes (``_forward``'s arguments)."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    Hp, Wp = _extent(H, W, P, Q, pad[0], pad[1], stride, dilation, R, S)
    xp = _padded(x, "gx", pad[0], pad[1], Hp, Wp)
    product(xp, Hp, Wp, w.reshape(K, Cg * R * S), b, y, stride, dilation, groups, R, S)


def conv_backward_data(dy, w, dx, pad, dilation, groups, product=_forward) -> None:
    """Stride 1: dx (N,C,H,W) = conv of dy padded by the kernel extent with flipped weights."""
    N, C, H, W = dx.shape
    K, Cg, R, S = w.shape
    (ph, pw), (dh, dw) = pad, dilation
    eh, ew = dh * (R - 1) + 1, dw * (S - 1) + 1
    Hp, Wp = H + eh - 1, W + ew - 1
    dyp = _padded(dy, "gdy", eh - 1 - ph, ew - 1 - pw, Hp, Wp)
    wf = workspace("gwflip", C * (K // groups) * R * S, w.dtype).reshape(C, -1)
    d_.flip_weights(w, wf, groups)
    product(dyp, Hp, Wp, wf, None, dx, (1, 1), dilation, groups, R, S)


def conv_backward_weight(dy, x, dw, db, stride, pad, dilation, groups) -> None:
    """dw (K,Cg,R,S) = dY_g @ col_g^T per group; db (K,) = dy summed over n, p, q."""
    N, C, H, W = x.shape
    K, Cg, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    if db is not None:
        k_.bias_grad(dy.reshape(N, K, PQ), db)
    Hp, Wp = _extent(H, W, P, Q, pad[0], pad[1], stride, dilation, R, S)
    xp = _padded(x, "gx", pad[0], pad[1], Hp, Wp)
    (sh, sw), (dh, dw_) = stride, dilation
    pin, pout = _pix(N, P, Q, xp.shape[1], sh * Wp, sw, K * PQ, Q)
    taps = _taps(C, R, S, Hp, Wp, dh, dw_)
    xf, dyf, dwf = xp.reshape(-1), dy.reshape(-1), dw.reshape(-1)
    for g in range(G):
        gemm(
            dyf, ramp(Kg, PQ, g * Kg * PQ), pout, True,
            xf, pin, taps[g * CRS : (g + 1) * CRS], True,
            dwf, ramp(Kg, CRS, g * Kg * CRS), ramp(CRS, 1),
        )  # fmt: skip


def conv_backward_data_strided(dy, w, dx, stride, pad, dilation, groups) -> None:
    """Any stride: dcol_g (CRS, m*P*Q) = W_g^T @ dY_g for chunks of m samples, then col2im."""
    N, C, H, W = dx.shape
    K, Cg, R, S = w.shape
    P, Q = dy.shape[2], dy.shape[3]
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    m = max(1, min(N, (8 << 20) // max(1, G * CRS * PQ * dx.itemsize)))
    _, pout = _pix(N, P, Q, 0, 0, 0, K * PQ, Q)
    wf, dyf = w.reshape(-1), dy.reshape(-1)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        dcol = workspace("gdcol", G * CRS * mm * PQ, dx.dtype)
        for g in range(G):
            gemm(
                wf, ramp(CRS, 1, g * Kg * CRS), ramp(Kg, CRS), False,
                dyf, ramp(Kg, PQ, g * Kg * PQ), pout[n0 * PQ : (n0 + mm) * PQ], False,
                dcol, ramp(CRS, mm * PQ, g * CRS * mm * PQ), ramp(mm * PQ, 1),
            )  # fmt: skip
        k_.col2im(dcol.reshape(G * CRS, mm * PQ), dx, n0, mm, R, S, sh, sw, ph, pw, dh, dw, P, Q)
