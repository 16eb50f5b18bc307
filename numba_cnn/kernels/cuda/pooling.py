"""CUDA max and average pooling: one launch per op and direction.

All kernels see planes: x, dx (B,H,W) and y, dy, idx (B,P,Q) with B = N*C, C-contiguous.
Forward and average backward run one thread per output (input) element in grid-stride loops,
so consecutive threads touch consecutive columns: loads and stores coalesce. Index math is
unsigned 32-bit (``_reduce.udivmod``): window positions are kept in padded coordinates
(``row + pad >= 0``), so nothing is negative and no 64-bit division is emitted.

Max-pool backward is ONE launch, one block per plane: the block's threads gather, per input
pixel, ``dy`` over the windows holding the pixel whose ``idx`` points at it (the forward's
window parameters when the caller gives them, else a guess of non-overlapping windows,
kernel = stride = H//P, W//Q, no padding). While gathering, the thread at the first in-bounds
pixel of each window checks that the window's ``idx`` lies inside the window; if one does
not (wrong guess, or an idx no forward produced), it sets the block's shared flag, and after
a barrier the block redoes its plane: each pixel scans all of the plane's outputs for idx
equal to it. Both paths add the same terms in the same (output) order; no atomics anywhere,
so results are deterministic. The scan is the only path when no guess is possible (P > H or
Q > W).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda, types

from ._reduce import MAX_32, grid_start, grid_step, udivmod

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "ptx_specs",
]

TPB = 256  # threads per block of the grid-stride kernels
MAX_BLOCKS = 8192  # grid-stride beyond this
BWD_THREADS = 32 if SIMULATOR else 256  # max-pool backward: most threads of a plane's block
BWD_BLOCKS = 4 if SIMULATOR else 65535  # planes beyond are taken by block-stride
_NINF = -math.inf
int32, uint32 = types.int32, types.uint32


@cuda.jit(device=True, inline="always")
def _u32(kh, kw, sh, sw, ph, pw, dh, dw):
    # the window parameters as unsigned 32-bit (keeps the kernels' index math 32-bit)
    return (
        uint32(kh),
        uint32(kw),
        uint32(sh),
        uint32(sw),
        uint32(ph),
        uint32(pw),
        uint32(dh),
        uint32(dw),
    )


@cuda.jit(device=True, inline="always")
def _dims(a, o):
    # unsigned 32-bit (H, W, P, Q) of input planes a (B,H,W) and output planes o (B,P,Q)
    return uint32(a.shape[1]), uint32(a.shape[2]), uint32(o.shape[1]), uint32(o.shape[2])


@functools.cache
def _max_fwd(ft, with_idx: bool):
    # x (B,H,W); y, idx (B,P,Q); one thread per output element; idx written when with_idx
    @cuda.jit
    def max_pool2d_fwd(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
        kh, kw, sh, sw, ph, pw, dh, dw = _u32(kh, kw, sh, sw, ph, pw, dh, dw)
        H, W, P, Q = _dims(x, y)
        n = uint32(x.shape[0] * P * Q)
        t = grid_start()
        while t < n:
            r, ow = udivmod(t, Q)
            b, oh = udivmod(r, P)
            m = ft(_NINF)
            mi = -1
            u = uint32(oh * sh)  # padded row of the window's first tap
            j = uint32(0)
            while j < kh:
                if ph <= u and u < H + ph:
                    ih = uint32(u - ph)
                    v0 = uint32(ow * sw)  # padded column
                    jj = uint32(0)
                    while jj < kw:
                        if pw <= v0 and v0 < W + pw:
                            iw = uint32(v0 - pw)
                            v = x[b, ih, iw]
                            # strict >: first maximum wins; NaN propagates; the first
                            # in-bounds tap is the index of an all -inf window
                            if v > m or v != v or mi < 0:
                                m = v
                                mi = ih * W + iw
                        v0 = uint32(v0 + dw)
                        jj = uint32(jj + 1)
                u = uint32(u + dh)
                j = uint32(j + 1)
            y[b, oh, ow] = m
            if with_idx:
                idx[b, oh, ow] = mi
            t = uint32(t + grid_step())

    return max_pool2d_fwd


@functools.cache
def _max_bwd(ft):
    @cuda.jit
    def max_pool2d_bwd(dy, idx, dx, guess, kh, kw, sh, sw, ph, pw, dh, dw):
        # dy, idx (B,P,Q); dx (B,H,W); one block per plane (block-stride), threads stride the
        # plane's pixels; guess = 0: no window known, scan only (see the module doc)
        flag = cuda.shared.array(1, dtype=int32)
        kh, kw, sh, sw, ph, pw, dh, dw = _u32(kh, kw, sh, sw, ph, pw, dh, dw)
        H, W, P, Q = _dims(dx, dy)
        B = uint32(dx.shape[0])
        t = uint32(cuda.threadIdx.x)
        nt = uint32(cuda.blockDim.x)
        HW = uint32(H * W)
        eh = uint32((kh - 1) * dh)  # last tap offset of a window, padded coordinates
        ew = uint32((kw - 1) * dw)
        b = uint32(cuda.blockIdx.x)
        while b < B:
            if t == 0:
                flag[0] = 1 - guess
            cuda.syncthreads()  # the flag is set before any thread raises it
            p = t
            while guess and p < HW:
                ih, iw = udivmod(p, W)
                # windows o with o*s <= i + pad <= o*s + (k-1)*d (padded coordinates)
                a = uint32(ih + ph)
                c = uint32(iw + pw)
                oh = udivmod(a - eh + sh - 1, sh)[0] if a > eh else uint32(0)
                oh1 = min(udivmod(a, sh)[0], P - 1)
                ow0 = udivmod(c - ew + sw - 1, sw)[0] if c > ew else uint32(0)
                ow1 = min(udivmod(c, sw)[0], Q - 1)
                acc = ft(0)
                while oh <= oh1:
                    rh = uint32(a - oh * sh)  # tap offset of ih in window row oh, in [0, eh]
                    ow = ow0
                    while ow <= ow1 and (dh == 1 or udivmod(rh, dh)[1] == 0):
                        rw = uint32(c - ow * sw)
                        if dw == 1 or udivmod(rw, dw)[1] == 0:
                            k = idx[b, oh, ow]
                            if k == p:
                                acc += dy[b, oh, ow]
                            # the window's first in-bounds pixel checks its idx
                            if (rh == 0 or ih < dh) and (rw == 0 or iw < dw):
                                ok = 0 <= k and k < HW
                                if ok:
                                    kr, kc = udivmod(k, W)
                                    ok = kr + ph >= oh * sh and kc + pw >= ow * sw
                                if ok:
                                    sr = uint32(kr + ph - oh * sh)  # tap offsets of k
                                    sc = uint32(kc + pw - ow * sw)
                                    ok = sr <= eh and sc <= ew
                                    ok = ok and udivmod(sr, dh)[1] == 0
                                    ok = ok and udivmod(sc, dw)[1] == 0
                                if not ok:
                                    flag[0] = 1  # every writer stores the same value
                        ow = uint32(ow + 1)
                    oh = uint32(oh + 1)
                dx[b, ih, iw] = acc
                p = uint32(p + nt)
            cuda.syncthreads()  # every window checked: the flag is final
            p = t
            while flag[0] != 0 and p < HW:
                acc = ft(0)  # redo: dx.flat[idx] += dy in output order, idx outside skipped
                for oh in range(P):
                    for ow in range(Q):
                        if idx[b, oh, ow] == p:
                            acc += dy[b, oh, ow]
                ih, iw = udivmod(p, W)
                dx[b, ih, iw] = acc
                p = uint32(p + nt)
            cuda.syncthreads()  # every thread read the flag before the next plane resets it
            b = uint32(b + uint32(cuda.gridDim.x))

    return max_pool2d_bwd


@functools.cache
def _avg_fwd(ft):
    # x (B,H,W); y (B,P,Q); one thread per output: window sum / PyTorch's divisor
    @cuda.jit
    def avg_pool2d_fwd(x, y, kh, kw, sh, sw, ph, pw, include_pad):
        kh, kw, sh, sw, ph, pw, _, _ = _u32(kh, kw, sh, sw, ph, pw, 1, 1)
        H, W, P, Q = _dims(x, y)
        n = uint32(x.shape[0] * P * Q)
        t = grid_start()
        while t < n:
            r, ow = udivmod(t, Q)
            b, oh = udivmod(r, P)
            hs = uint32(oh * sh)  # padded coordinates: the window is [hs, he) x [ws, we)
            he = min(uint32(hs + kh), uint32(H + 2 * ph))
            ws = uint32(ow * sw)
            we = min(uint32(ws + kw), uint32(W + 2 * pw))
            size = uint32((he - hs) * (we - ws))
            hs = max(hs, ph)  # clipped to the input (he > hs: a window starts before H + ph)
            ws = max(ws, pw)
            he = min(he, uint32(H + ph))
            we = min(we, uint32(W + pw))
            acc = ft(0)
            ih = uint32(hs - ph)
            while ih < he - ph:
                iw = uint32(ws - pw)
                while iw < we - pw:
                    acc += x[b, ih, iw]
                    iw = uint32(iw + 1)
                ih = uint32(ih + 1)
            if include_pad == 0:
                size = uint32((he - hs) * (we - ws))
            y[b, oh, ow] = acc / ft(size)
            t = uint32(t + grid_step())

    return avg_pool2d_fwd


@functools.cache
def _avg_bwd(ft):
    # dy (B,P,Q); dx (B,H,W); one thread per input pixel: gather dy / divisor of its windows
    @cuda.jit
    def avg_pool2d_bwd(dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
        kh, kw, sh, sw, ph, pw, _, _ = _u32(kh, kw, sh, sw, ph, pw, 1, 1)
        H, W, P, Q = _dims(dx, dy)
        n = uint32(dx.shape[0] * H * W)
        t = grid_start()
        while t < n:
            r, iw = udivmod(t, W)
            b, ih = udivmod(r, H)
            a = uint32(ih + ph)  # padded coordinates, windows [o*s, o*s + k)
            c = uint32(iw + pw)
            oh = udivmod(a - kh + sh, sh)[0] if a >= kh else uint32(0)
            oh1 = min(udivmod(a, sh)[0], P - 1)
            ow0 = udivmod(c - kw + sw, sw)[0] if c >= kw else uint32(0)
            ow1 = min(udivmod(c, sw)[0], Q - 1)
            acc = ft(0)
            while oh <= oh1:
                hs = uint32(oh * sh)
                he = min(uint32(hs + kh), uint32(H + 2 * ph))
                hn = uint32(he - hs)
                if include_pad == 0:  # a window holding the pixel overlaps the input
                    hn = uint32(min(he, uint32(H + ph)) - max(hs, ph))
                ow = ow0
                while ow <= ow1:
                    ws = uint32(ow * sw)
                    we = min(uint32(ws + kw), uint32(W + 2 * pw))
                    wn = uint32(we - ws)
                    if include_pad == 0:
                        wn = uint32(min(we, uint32(W + pw)) - max(ws, pw))
                    acc += dy[b, oh, ow] / ft(hn * wn)
                    ow = uint32(ow + 1)
                oh = uint32(oh + 1)
            dx[b, ih, iw] = acc
            t = uint32(t + grid_step())

    return avg_pool2d_bwd


_FT = {np.dtype(np.float32): types.float32, np.dtype(np.float64): types.float64}


def _grid(n: int) -> int:
    return max(1, min(-(-n // TPB), MAX_BLOCKS))


def _check(*arrays: Any) -> None:
    for a in arrays:
        if a.size > MAX_32:
            raise ValueError(f"pooling: {a.size} elements exceed the CUDA kernels' {MAX_32}")


_placeholder: dict[str, Any] = {}  # device arrays kept between calls


def _no_idx() -> Any:
    """A (1,1,1) int64 device array passed where the forward writes no indices."""
    if "idx" not in _placeholder:
        _placeholder["idx"] = cuda.device_array((1, 1, 1), dtype=np.int64)
    return _placeholder["idx"]


def max_pool2d_forward(x, y, idx, kernel, stride, pad, dilation) -> None:
    """y (and idx unless None) = max pooling of planes x (B,H,W) -> (B,P,Q)."""
    _check(x, y)
    k = _max_fwd(_FT[np.dtype(x.dtype)], idx is not None)
    k[_grid(y.size), TPB](
        x, y, _no_idx() if idx is None else idx, *kernel, *stride, *pad, *dilation
    )


def bwd_threads(H: int, W: int) -> int:
    """Threads of a plane's block in max-pool backward: the plane rounded up to 32, capped."""
    return min(BWD_THREADS, -(-(H * W) // 32) * 32)


def max_pool2d_backward(dy, idx, dx, window=None) -> int:
    """dx = scatter-add of dy at idx per plane, in one launch (see the module doc).
    ``window`` = (kernel, stride, pad, dilation) of the forward, or None. Returns 0: on the
    GPU an idx outside its plane is skipped (checking it would need a host round trip)."""
    _check(dx, dy)
    B, H, W = dx.shape
    P, Q = dy.shape[1], dy.shape[2]
    if window is None:  # guess non-overlapping windows
        s = (H // P, W // Q)
        window = (s, s, (0, 0), (1, 1)) if min(s) >= 1 else None
    guess = int(window is not None)
    args = [v for pair in window for v in pair] if window else [1] * 8
    _max_bwd(_FT[np.dtype(dy.dtype)])[min(B, BWD_BLOCKS), bwd_threads(H, W)](
        dy, idx, dx, guess, *args
    )
    return 0


def avg_pool2d_forward(x, y, kernel, stride, pad, count_include_pad) -> None:
    """y = average pooling of planes x (B,H,W) -> (B,P,Q)."""
    _check(x, y)
    ft = _FT[np.dtype(x.dtype)]
    _avg_fwd(ft)[_grid(y.size), TPB](x, y, *kernel, *stride, *pad, int(count_include_pad))


def avg_pool2d_backward(dy, dx, kernel, stride, pad, count_include_pad) -> None:
    """dx = gradient of average pooling, planes dy (B,P,Q) -> dx (B,H,W)."""
    _check(dx, dy)
    ft = _FT[np.dtype(dy.dtype)]
    _avg_bwd(ft)[_grid(dx.size), TPB](dy, dx, *kernel, *stride, *pad, int(count_include_pad))


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every kernel specialisation launched above, for ``ptx_report``."""
    specs = []
    i8 = ", ".join(["int64"] * 8)
    i7 = ", ".join(["int64"] * 7)
    for name in ("float32", "float64"):
        ft = getattr(types, name)
        a = f"{name}[:, :, ::1]"
        ix = "int64[:, :, ::1]"
        specs += [
            (f"max_pool2d_fwd_{name}", _max_fwd(ft, False).py_func, f"void({a}, {a}, {ix}, {i8})"),
            (
                f"max_pool2d_fwd_idx_{name}",
                _max_fwd(ft, True).py_func,
                f"void({a}, {a}, {ix}, {i8})",
            ),
            (
                f"max_pool2d_bwd_{name}",
                _max_bwd(ft).py_func,
                f"void({a}, {ix}, {a}, int64, {i8})",
            ),
            (f"avg_pool2d_fwd_{name}", _avg_fwd(ft).py_func, f"void({a}, {a}, {i7})"),
            (f"avg_pool2d_bwd_{name}", _avg_bwd(ft).py_func, f"void({a}, {a}, {i7})"),
        ]
    return specs
