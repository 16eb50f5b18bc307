"""CPU conv2d launchers (the interface the CUDA module implements too).

    y[n, k, p, q] = b[k] + sum_{c,r,s} w[k, c, r, s] * xpad[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw]

Stride 1 (any padding, dilation, groups): the direct kernels of ``conv2d_direct`` (all numba,
``prange``; measured faster than im2col + BLAS at every benchmark size on this CPU). dx is the
same kernel run on dy with flipped weights; dw reduces over N*P*Q in fixed chunks. A forward
with 12-16 output channels a group runs ``conv2d_direct_kv`` instead (vectorised across the
output channels, only the P*Q useful outputs computed).

Other strides: im2col into a reused workspace + BLAS GEMM per group (serial numba helpers, so
numba's and OpenBLAS's thread pools never run back to back):

    forward      Y_g (Kg, m*PQ)   = W_g (Kg, Cg*R*S) @ col_g (Cg*R*S, m*PQ)
    backward dx  dcol_g           = W_g^T @ dY_g, then col2im (scatter-add, exact for any option)
    backward dw  dW_g            += dY_g @ col_g^T  (reduced over the chunks of the batch)

``m`` samples per chunk: one when a sample's output plane is large (the GEMM then writes
straight into ``y[n]``), more for small planes so the GEMMs are not tiny.
Launchers take preallocated outputs from the op (``numba_cnn.ops.conv2d``) and trust them.
"""

from __future__ import annotations

import threading

import numpy as np

from . import conv2d_direct as d_
from . import conv2d_direct_dw as dd_
from . import conv2d_direct_kv as kv_
from . import conv2d_im2col as k_

_LOCAL = threading.local()
_WS_BYTES = 8 << 20  # target size of one im2col workspace
#: Path choice: None picks per shape; "im2col", "direct" or "kv" force one (tests cover every
#: path; "direct" and "kv" apply to stride 1 only, "kv" to the forward pass only).
FORCE: str | None = None


def _workspace(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread scratch array reused across calls (grown when too small)."""
    cache = getattr(_LOCAL, "ws", None)
    if cache is None:
        cache = _LOCAL.ws = {}
    size = int(np.prod(shape))
    key = (name, np.dtype(dtype))
    buf = cache.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        cache[key] = buf
    return buf[:size].reshape(shape)


def _chunk(N: int, PQ: int, CRS: int, itemsize: int) -> int:
    """Samples per chunk: whole planes of >= 512 outputs go one by one."""
    if PQ >= 512:
        return 1
    m = max(1, -(-4096 // PQ))
    m = min(m, max(1, _WS_BYTES // max(1, CRS * PQ * itemsize)))
    return max(1, min(N, m))


def _direct(stride) -> bool:
    """Stride 1 runs the direct kernels (measured faster than im2col + BLAS at every size)."""
    if FORCE is not None:
        return FORCE in ("direct", "kv") and tuple(stride) == (1, 1)
    return tuple(stride) == (1, 1)


def _kv(stride, Kg: int, Q: int) -> bool:
    """The channel-vectorised forward: stride 1 with 12-16 output channels a group. Measured
    (2 threads) against the wide-row kernel: (64,6,14,14)->16 k5 0.17 vs 0.23 ms; ->8 0.165
    vs 0.152; (64,1,28,28)->6 0.31 vs 0.17; (64,3,32,32)->16 or ->32 k3 p1 about equal."""
    if tuple(stride) != (1, 1) or Q * kv_.V > kv_.ACC:
        return False
    if FORCE is not None:
        return FORCE == "kv"
    return 12 <= Kg <= 16


def _conv_kv(x, w, b, y, pad, dilation, groups) -> None:
    N, C, H, W, K, Cg, R, S, P, Q = _geom(x, w, y.shape)
    (ph, pw), (dh, dw) = pad, dilation
    G, Kg, CRS = groups, K // groups, Cg * R * S
    Hp, Wp = P + dh * (R - 1), Q + dw * (S - 1)
    if ph == 0 and pw == 0:  # the windows read only valid positions: use x as it is
        xs = x.reshape(N, C * H * W)
    else:
        xs = _workspace("xp", (N, C * Hp * Wp), x.dtype)
        d_.pad_planes(x, xs, ph, pw, Hp, Wp)
    T8, KP = -(-CRS // 8) * 8, -(-Kg // kv_.V) * kv_.V
    wt = _workspace("kv_w", (G, T8, KP), x.dtype)
    bp = _workspace("kv_b", (G, KP), x.dtype)
    has_b = b is not None
    kv_.relayout(w, b if has_b else bp[0], has_b, G, wt, bp)
    offs = np.zeros((G, T8), dtype=np.int64)
    offs[:, :CRS] = _offsets(C, R, S, Hp, Wp, dh, dw).reshape(G, CRS)
    kv_.kv_fwd(xs, wt, bp, offs, CRS, y, Wp, kv_.rows_per_tile(P, Q))


def _offsets(C: int, R: int, S: int, Hp: int, Wp: int, dh: int, dw: int) -> np.ndarray:
    """Window offsets c*Hp*Wp + r*dh*Wp + s*dw of every tap (c, r, s) in a padded sample."""
    c = np.arange(C, dtype=np.int64)[:, None, None] * (Hp * Wp)
    r = np.arange(R, dtype=np.int64)[None, :, None] * (dh * Wp)
    return (c + r + np.arange(S, dtype=np.int64) * dw).reshape(-1)


def _rows(Wp: int) -> int:
    """Output rows per direct-kernel tile: 16 measured best from 10- to 56-wide planes."""
    return 16


def _geom(x, w, y_shape):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = y_shape[2], y_shape[3]
    return N, C, H, W, K, Cg, R, S, P, Q


def conv2d_forward(x, w, b, y, stride, pad, dilation, groups) -> None:
    """y (N,K,P,Q) = conv(x (N,C,H,W), w (K,C//groups,R,S)) + b (K,) or no bias."""
    N, C, H, W, K, Cg, R, S, P, Q = _geom(x, w, y.shape)
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    if _kv(stride, Kg, Q):
        _conv_kv(x, w, b, y, pad, dilation, groups)
        return
    if _direct(stride):
        Hp, Wp = P + dh * (R - 1), Q + dw * (S - 1)
        xp = _workspace("xp", (N, C * Hp * Wp + Wp + 16), x.dtype)
        d_.pad_planes(x, xp, ph, pw, Hp, Wp)
        has_b = b is not None
        bb = b if has_b else _workspace("nobias", (K,), x.dtype)
        offs = _offsets(C, R, S, Hp, Wp, dh, dw)
        d_.direct_fwd(xp, w.reshape(K, CRS), bb, has_b, offs, y, Wp, _rows(Wp))
        return
    m = _chunk(N, PQ, C * R * S, x.itemsize)
    wg = w.reshape(G, Kg, CRS)
    y3 = y.reshape(N, K, PQ)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        col = _workspace("col", (G * CRS, mm * PQ), x.dtype)
        k_.im2col(x, n0, mm, col, R, S, sh, sw, ph, pw, dh, dw, P, Q)
        colg = col.reshape(G, CRS, mm * PQ)
        if mm == 1:
            np.matmul(wg, colg, out=y3[n0].reshape(G, Kg, PQ))
        else:
            t = _workspace("out", (G, Kg, mm * PQ), x.dtype)
            np.matmul(wg, colg, out=t)
            k_.scatter_rows(t.reshape(K, mm * PQ), y3, n0, mm)
    if b is not None:
        k_.add_bias(y3, b)


def conv2d_backward_data(dy, w, dx, stride, pad, dilation, groups) -> None:
    """dx (N,C,H,W) = transposed conv of dy (N,K,P,Q) with w (K,C//groups,R,S)."""
    N, C, H, W, K, Cg, R, S, P, Q = _geom(dx, w, dy.shape)
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    if _direct(stride):
        eh, ew = dh * (R - 1) + 1, dw * (S - 1) + 1
        Hp, Wp = H + eh - 1, W + ew - 1
        dyp = _workspace("dyp", (N, K * Hp * Wp + Wp + 16), dy.dtype)
        d_.pad_planes(dy, dyp, eh - 1 - ph, ew - 1 - pw, Hp, Wp)
        wf = _workspace("wflip", (C, Kg * R * S), dy.dtype)
        d_.flip_weights(w, wf, G)
        offs = _offsets(K, R, S, Hp, Wp, dh, dw)
        nob = _workspace("nobias", (C,), dy.dtype)
        d_.direct_fwd(dyp, wf, nob, False, offs, dx, Wp, _rows(Wp))
        return
    m = _chunk(N, PQ, C * R * S, dx.itemsize)
    wt = w.reshape(G, Kg, CRS).transpose(0, 2, 1)  # (G, CRS, Kg)
    dy3 = dy.reshape(N, K, PQ)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        if mm == 1:
            dyg = dy3[n0].reshape(G, Kg, PQ)
        else:
            t = _workspace("dyt", (K, mm * PQ), dx.dtype)
            k_.gather_rows(dy3, t, n0, mm)
            dyg = t.reshape(G, Kg, mm * PQ)
        dcol = _workspace("col", (G, CRS, mm * PQ), dx.dtype)
        np.matmul(wt, dyg, out=dcol)
        k_.col2im(dcol.reshape(G * CRS, mm * PQ), dx, n0, mm, R, S, sh, sw, ph, pw, dh, dw, P, Q)


def conv2d_backward_weight(dy, x, dw, db, stride, pad, dilation, groups) -> None:
    """dw (K,C//groups,R,S) = sum over n,p,q of dy * x windows; db (K,) = dy.sum((0,2,3))."""
    N, C, H, W, K, Cg, R, S, P, Q = _geom(x, dw, dy.shape)
    G, Kg, CRS, PQ = groups, K // groups, Cg * R * S, P * Q
    (sh, sw), (ph, pw), (dh, dw_) = stride, pad, dilation
    dy3 = dy.reshape(N, K, PQ)
    if db is not None:
        k_.bias_grad(dy3, db)
    if _direct(stride) and N > 0:
        Hp, Wp = P + dh * (R - 1), Q + dw_ * (S - 1)
        xp = _workspace("xp", (N, C * Hp * Wp + Wp + 16), x.dtype)
        # wide columns pair dy = 0 with real x values: exact unless x holds inf/NaN, in
        # which case the im2col path below keeps NaN/inf out of taps that never see them
        if d_.pad_planes(x, xp, ph, pw, Hp, Wp) == 0:
            dyw = _workspace("dyw", (N, K, (P * Wp + 15) // 16 * 16), x.dtype)
            dd_.widen(dy, dyw, Wp)
            nchunk = min(N, 4)
            part = _workspace("dwpart", (nchunk, K, CRS), x.dtype)
            offs = _offsets(C, R, S, Hp, Wp, dh, dw_)
            dd_.direct_dw(dyw, xp, offs, part, nchunk)
            dd_.sum_parts(part, dw.reshape(K, CRS))
            return
    m = _chunk(N, PQ, C * R * S, x.itemsize)
    dw3 = dw.reshape(G, Kg, CRS)
    part = _workspace("dwpart", (G, Kg, CRS), x.dtype)
    for n0 in range(0, N, m):
        mm = min(m, N - n0)
        if mm == 1:
            dyg = dy3[n0].reshape(G, Kg, PQ)
        else:
            t = _workspace("dyt", (K, mm * PQ), x.dtype)
            k_.gather_rows(dy3, t, n0, mm)
            dyg = t.reshape(G, Kg, mm * PQ)
        col = _workspace("col", (G * CRS, mm * PQ), x.dtype)
        k_.im2col(x, n0, mm, col, R, S, sh, sw, ph, pw, dh, dw_, P, Q)
        colt = col.reshape(G, CRS, mm * PQ).transpose(0, 2, 1)
        if n0 == 0:
            np.matmul(dyg, colt, out=dw3)
        else:
            np.matmul(dyg, colt, out=part)
            dw3 += part
    if N == 0:
        dw[...] = 0
