"""Max and average pooling on the CPU: ``prange`` over the N*C planes, one plane per task.

Every kernel sees planes: x (B,H,W), y (B,P,Q) with B = N*C, C-contiguous, one float dtype.
Window parameters are Python ints: kernel (kh,kw), stride (sh,sw), padding (ph,pw),
dilation (dh,dw). Output rows are computed a whole row of outputs at a time, window element
by window element, so the innermost loop runs over ``ow`` with no branch and unsigned indices
(no negative-index wraparound code): LLVM vectorises it (strided loads + selects). Only the
few edge columns whose windows leave the input take the bounds-checked path. Backward kernels
zero one plane and scatter into it while it sits in L1: race-free, fixed order.

Max pooling follows PyTorch exactly: implicit -inf padding, strict ``>`` (first maximum in
row-major window order wins), a NaN replaces the running maximum (last NaN wins), and an
all -inf window reports its first in-bounds element. Indices come from a second pass over
the taps, last to first, that keeps the first tap equal to the maximum (or the last NaN);
the comparison pass stays free of index bookkeeping and vectorises.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._pool_micro import _max2x2_fwd
from ._serial import serial_twin
from ._threads import use_parallel

_JIT = dict(cache=True, parallel=True, error_model="numpy", fastmath=False)


@njit(cache=True, inline="always")
def _span(o, s, p, k, d, n):
    """First in-bounds tap and end (exclusive) of window ``o`` along one axis."""
    lo = o * s - p
    hi = min(lo + (k - 1) * d + 1, n)
    while lo < 0:
        lo += d
    return lo, hi


@njit(cache=True, inline="always")
def _interior(Q, s, p, k, d, n):
    """Range [q0, q1) of outputs whose window lies fully inside [0, n)."""
    q0 = min((p + s - 1) // s, Q)
    last = n - 1 + p - (k - 1) * d  # ow*s <= last
    q1 = min(last // s + 1, Q) if last >= 0 else 0
    return q0, max(q1, q0)


@njit(cache=True, inline="always")
def _max_at(xr, yr, ow, iw, W):
    if 0 <= iw < W:
        v = xr[iw]
        m = yr[ow]
        yr[ow] = v if (v > m) | (v != v) else m


@njit(cache=True, inline="always")
def _max_row(xr, yr, Q, q0, q1, n, u0, usw, sw, off, W):
    """yr[ow] = max(yr[ow], xr[ow*sw + off]) for every ow; NaN wins. The interior
    [q0, q1) = u0 + [0, n) uses unsigned indices: no wraparound code, so it vectorises."""
    start = np.uint64(q0 * sw + off)  # >= 0 whenever n > 0
    for i in range(n):
        k = u0 + i
        v = xr[start + i * usw]
        m = yr[k]
        yr[k] = v if (v > m) | (v != v) else m
    for ow in range(q0):  # the few edge columns
        _max_at(xr, yr, ow, ow * sw + off, W)
    for ow in range(q1, Q):
        _max_at(xr, yr, ow, ow * sw + off, W)


@njit(cache=True, inline="always")
def _idx_at(xr, yr, ir, ow, iw, W, base):
    if 0 <= iw < W:
        v = xr[iw]
        if (v == yr[ow]) | ((v != v) & (ir[ow] < 0)):
            ir[ow] = base + iw


@njit(cache=True, inline="always")
def _idx_row(xr, yr, ir, Q, q0, q1, n, u0, usw, sw, off, W, base):
    """Taps visited last to first: ir = the first tap equal to the maximum, or the last NaN."""
    start = np.uint64(q0 * sw + off)
    for i in range(n):
        k = u0 + i
        iw = start + i * usw
        v = xr[iw]
        io = ir[k]
        take = (v == yr[k]) | ((v != v) & (io < 0))
        ir[k] = io + (base + np.int64(iw) - io) * np.int64(take)  # branch-free: vectorises
    for ow in range(q0):
        _idx_at(xr, yr, ir, ow, ow * sw + off, W, base)
    for ow in range(q1, Q):
        _idx_at(xr, yr, ir, ow, ow * sw + off, W, base)


# x (B,H,W); y (B,P,Q): y = max over each window, a row of outputs at a time
@njit(**_JIT)
def _max_fwd(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
    B, H, W = x.shape
    P, Q = y.shape[1], y.shape[2]
    q0, q1 = _interior(Q, sw, pw, kw, dw, W)
    n, u0, usw = np.uint64(q1 - q0), np.uint64(q0), np.uint64(sw)
    for b in prange(B):
        for oh in range(P):
            hs, he = _span(oh, sh, ph, kh, dh, H)
            yr = y[b, oh]
            for ow in range(Q):
                yr[ow] = -np.inf
            for ih in range(hs, he, dh):
                xr = x[b, ih]
                for j in range(kw):
                    _max_row(xr, yr, Q, q0, q1, n, u0, usw, sw, j * dw - pw, W)


# x (B,H,W); y, idx (B,P,Q): as _max_fwd, then idx = flat h*W+w of each maximum from a
# second pass over the taps of the row (still in L1)
@njit(**_JIT)
def _max_fwd_idx(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    B, H, W = x.shape
    P, Q = y.shape[1], y.shape[2]
    q0, q1 = _interior(Q, sw, pw, kw, dw, W)
    n, u0, usw = np.uint64(q1 - q0), np.uint64(q0), np.uint64(sw)
    for b in prange(B):
        for oh in range(P):
            hs, he = _span(oh, sh, ph, kh, dh, H)
            yr = y[b, oh]
            ir = idx[b, oh]
            for ow in range(Q):
                yr[ow] = -np.inf
                ir[ow] = -1
            for ih in range(hs, he, dh):
                xr = x[b, ih]
                for j in range(kw):
                    _max_row(xr, yr, Q, q0, q1, n, u0, usw, sw, j * dw - pw, W)
            last = hs + (he - 1 - hs) // dh * dh
            for ih in range(last, hs - 1, -dh):
                xr = x[b, ih]
                for j in range(kw - 1, -1, -1):
                    _idx_row(xr, yr, ir, Q, q0, q1, n, u0, usw, sw, j * dw - pw, W, ih * W)


# dy, idx (B,P,Q); dx (B,H,W): dx[b].flat[idx] += dy, in output order; returns #idx out of range
@njit(**_JIT)
def _max_bwd(dy, idx, dx):
    B, P, Q = dy.shape
    HW = dx.shape[1] * dx.shape[2]
    bad = 0
    for b in prange(B):
        g = dx[b].ravel()  # a view: dx is C-contiguous; one plane stays in L1
        zero = g.dtype.type(0)
        for i in range(HW):
            g[i] = zero
        nb = 0
        for oh in range(P):
            dr = dy[b, oh]
            kr = idx[b, oh]
            for ow in range(Q):
                t = kr[ow]
                if np.uint64(t) < np.uint64(HW):  # also rejects t < 0
                    g[np.uint64(t)] += dr[ow]
                else:
                    nb += 1
        bad += nb
    return bad


@njit(cache=True, inline="always")
def _avg_count(o, s, p, k, n, include_pad):
    """Window ``o``'s in-bounds range [lo, hi) along one axis and its divisor factor."""
    lo = o * s - p
    hi = min(lo + k, n + p)
    size = hi - lo
    lo = max(lo, 0)
    hi = min(hi, n)
    return lo, hi, (size if include_pad else hi - lo)


@njit(cache=True, inline="always")
def _add_at(xr, yr, ow, iw, W):
    if 0 <= iw < W:
        yr[ow] += xr[iw]


# x (B,H,W); y (B,P,Q): y = window sum / divisor (PyTorch's count_include_pad rule)
@njit(**_JIT)
def _avg_fwd(x, y, kh, kw, sh, sw, ph, pw, include_pad):
    B, H, W = x.shape
    P, Q = y.shape[1], y.shape[2]
    q0, q1 = _interior(Q, sw, pw, kw, 1, W)
    u0, usw = np.uint64(q0), np.uint64(sw)
    for b in prange(B):
        for oh in range(P):
            hs, he, hc = _avg_count(oh, sh, ph, kh, H, include_pad)
            yr = y[b, oh]
            zero = yr.dtype.type(0)
            for ow in range(Q):
                yr[ow] = zero
            for ih in range(hs, he):
                xr = x[b, ih]
                for j in range(kw):
                    off = j - pw
                    start = np.uint64(max(q0 * sw + off, 0))
                    for i in range(np.uint64(max(q1 - q0, 0))):  # unsigned: no wraparound
                        yr[u0 + i] += xr[start + i * usw]
                    for ow in range(q0):
                        _add_at(xr, yr, ow, ow * sw + off, W)
                    for ow in range(q1, Q):
                        _add_at(xr, yr, ow, ow * sw + off, W)
            for ow in range(Q):
                ws, we, wc = _avg_count(ow, sw, pw, kw, W, include_pad)
                yr[ow] = yr[ow] / yr.dtype.type(hc * wc) if hs < he and ws < we else zero


@njit(cache=True, inline="always")
def _add_to(v, gr, ow, iw, W):
    if 0 <= iw < W:
        gr[iw] += v[ow]


# dy (B,P,Q); dx (B,H,W): each window adds dy / divisor to its taps, a row of windows at a time
@njit(**_JIT)
def _avg_bwd(dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
    B, P, Q = dy.shape
    H, W = dx.shape[1], dx.shape[2]
    q0, q1 = _interior(Q, sw, pw, kw, 1, W)
    u0, usw = np.uint64(q0), np.uint64(sw)
    for b in prange(B):
        g = dx[b]
        zero = g.dtype.type(0)
        v = np.empty(Q, dtype=dx.dtype)  # dy / divisor for one row of windows
        for ih in range(H):
            for iw in range(W):
                g[ih, iw] = zero
        for oh in range(P):
            hs, he, hc = _avg_count(oh, sh, ph, kh, H, include_pad)
            for ow in range(Q):
                ws, we, wc = _avg_count(ow, sw, pw, kw, W, include_pad)
                ok = hs < he and ws < we
                v[ow] = dy[b, oh, ow] / g.dtype.type(hc * wc) if ok else zero
            for ih in range(hs, he):
                gr = g[ih]
                for j in range(kw):
                    off = j - pw
                    start = np.uint64(max(q0 * sw + off, 0))
                    for i in range(np.uint64(max(q1 - q0, 0))):  # unsigned: no wraparound
                        gr[start + i * usw] += v[u0 + i]
                    for ow in range(q0):
                        _add_to(v, gr, ow, ow * sw + off, W)
                    for ow in range(q1, Q):
                        _add_to(v, gr, ow, ow * sw + off, W)


_KERNELS = (_max_fwd, _max_fwd_idx, _max2x2_fwd, _max_bwd, _avg_fwd, _avg_bwd)
_SERIAL = {k: serial_twin(k) for k in _KERNELS}


def _pick(kernel, size: int):
    """The parallel kernel, or its serial twin for small work or one thread."""
    return kernel if use_parallel(size) else _SERIAL[kernel]


def max_pool2d_forward(x, y, idx, kernel, stride, pad, dilation) -> None:
    """y (and idx unless None) = max pooling of planes x (B,H,W) -> (B,P,Q)."""
    args = (*kernel, *stride, *pad, *dilation)
    B, H, W = x.shape
    if args == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * y.shape[1] <= H and 2 * y.shape[2] <= W:
        dummy = idx if idx is not None else np.empty((1, 1, 1), np.int64)
        _pick(_max2x2_fwd, x.size)(x, y, dummy, idx is not None)
        return
    if idx is None:
        _pick(_max_fwd, x.size)(x, y, *args)
    else:
        _pick(_max_fwd_idx, x.size)(x, y, idx, *args)


def max_pool2d_backward(dy, idx, dx, window=None) -> int:
    """dx = scatter-add of dy at idx per plane (``window`` is not needed on the CPU).
    Returns how many idx were out of range."""
    return int(_pick(_max_bwd, dx.size)(dy, idx, dx))


def avg_pool2d_forward(x, y, kernel, stride, pad, count_include_pad) -> None:
    """y = average pooling of planes x (B,H,W) -> (B,P,Q)."""
    _pick(_avg_fwd, x.size)(x, y, *kernel, *stride, *pad, bool(count_include_pad))


def avg_pool2d_backward(dy, dx, kernel, stride, pad, count_include_pad) -> None:
    """dx = gradient of average pooling, planes dy (B,P,Q) -> dx (B,H,W)."""
    _pick(_avg_bwd, dx.size)(dy, dx, *kernel, *stride, *pad, bool(count_include_pad))


__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]
