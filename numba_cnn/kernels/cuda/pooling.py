"""CUDA max and average pooling: forward one thread per output, backward one per input pixel.

All kernels see planes: x, dx (B,H,W) and y, dy, idx (B,P,Q) with B = N*C, C-contiguous.
Threads run over flat output (forward) or input (backward) indices in grid-stride loops, so
consecutive threads touch consecutive columns: every load and store is coalesced. Nothing is
accumulated with atomics; every result is a gather in a fixed order, hence deterministic.

Max-pool backward gets only ``(dy, idx, x_shape)``. It gathers per input pixel over the
windows that hold the pixel, using the forward's window parameters when the caller gives them,
else a guess of non-overlapping windows (kernel = stride = H//P, W//Q, no padding). While
gathering, the thread at the first in-bounds pixel of each window checks that the window's
``idx`` lies inside that window; if not (wrong guess, or an idx that no forward produced),
it marks the plane, and a fix-up kernel redoes every marked plane with one thread scattering
``dy`` in output order. Both paths add the same terms in the same (output) order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from numba_cnn._cuda import cuda

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "ptx_specs",
]

TPB = 256  # threads per block, every kernel
MAX_BLOCKS = 8192  # grid-stride beyond this
_FT = {np.dtype(np.float32): numba.float32, np.dtype(np.float64): numba.float64}
_NINF = -math.inf


@functools.cache
def _max_fwd(ft, with_idx: bool):
    # x (B,H,W); y, idx (B,P,Q); one thread per output element; idx written when with_idx
    @cuda.jit
    def max_pool2d_fwd(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
        B, H, W = x.shape
        P, Q = y.shape[1], y.shape[2]
        for t in range(cuda.grid(1), B * P * Q, cuda.gridsize(1)):
            r = t // Q  # one division per level: t = (b*P + oh)*Q + ow
            ow = t - r * Q
            b = r // P
            oh = r - b * P
            hs = oh * sh - ph
            he = min(hs + (kh - 1) * dh + 1, H)
            while hs < 0:
                hs += dh
            ws = ow * sw - pw
            we = min(ws + (kw - 1) * dw + 1, W)
            while ws < 0:
                ws += dw
            m = ft(_NINF)
            mi = hs * W + ws
            for ih in range(hs, he, dh):
                for iw in range(ws, we, dw):
                    v = x[b, ih, iw]
                    if v > m or v != v:  # strict >: first maximum wins; NaN propagates
                        m = v
                        mi = ih * W + iw
            y[b, oh, ow] = m
            if with_idx:
                idx[b, oh, ow] = mi

    return max_pool2d_fwd


@functools.cache
def _max_bwd_gather(ft):
    # dy, idx (B,P,Q); dx (B,H,W); bad (B,); one thread per input pixel: dx = sum of dy over
    # the windows holding it whose idx points at it; bad[b] = 1 where an idx leaves its window
    @cuda.jit
    def max_pool2d_bwd_gather(dy, idx, dx, bad, kh, kw, sh, sw, ph, pw, dh, dw):
        B, H, W = dx.shape
        P, Q = dy.shape[1], dy.shape[2]
        for t in range(cuda.grid(1), B * H * W, cuda.gridsize(1)):
            r = t // W  # one division per level: t = (b*H + ih)*W + iw
            iw = t - r * W
            b = r // H
            ih = r - b * H
            me = ih * W + iw
            # windows o with o*s - p <= i <= o*s - p + (k-1)*d
            oh0 = max(-((-(ih + ph - (kh - 1) * dh)) // sh), 0)
            oh1 = min((ih + ph) // sh, P - 1)
            ow0 = max(-((-(iw + pw - (kw - 1) * dw)) // sw), 0)
            ow1 = min((iw + pw) // sw, Q - 1)
            acc = ft(0)
            for oh in range(oh0, oh1 + 1):
                h0 = oh * sh - ph
                if dh > 1 and (ih - h0) % dh != 0:
                    continue
                hf = h0  # first row of the window inside the input
                if h0 < 0:
                    hf = h0 + ((dh - 1 - h0) // dh) * dh
                for ow in range(ow0, ow1 + 1):
                    w0 = ow * sw - pw
                    if dw > 1 and (iw - w0) % dw != 0:
                        continue
                    k = idx[b, oh, ow]
                    if k == me:
                        acc += dy[b, oh, ow]
                    wf = w0
                    if w0 < 0:
                        wf = w0 + ((dw - 1 - w0) // dw) * dw
                    if ih == hf and iw == wf:  # this thread checks window (oh, ow)
                        kr = k // W
                        kc = k - kr * W
                        ok = 0 <= k < H * W
                        ok = ok and hf <= kr <= h0 + (kh - 1) * dh
                        ok = ok and wf <= kc <= w0 + (kw - 1) * dw
                        ok = ok and (dh == 1 or (kr - h0) % dh == 0)
                        ok = ok and (dw == 1 or (kc - w0) % dw == 0)
                        if not ok:
                            bad[b] = 1  # every writer stores the same value
            dx[b, ih, iw] = acc

    return max_pool2d_bwd_gather


@functools.cache
def _max_bwd_fixup(ft):
    # dy, idx (B,P,Q); dx (B,H,W); bad (B,); one thread per marked plane: dx[b] = 0, then
    # dx[b].flat[idx] += dy in output order (idx outside the plane is skipped)
    @cuda.jit
    def max_pool2d_bwd_fixup(dy, idx, dx, bad):
        B, H, W = dx.shape
        P, Q = dy.shape[1], dy.shape[2]
        for b in range(cuda.grid(1), B, cuda.gridsize(1)):
            if bad[b] == 0:
                continue
            for i in range(H):
                for j in range(W):
                    dx[b, i, j] = ft(0)
            for oh in range(P):
                for ow in range(Q):
                    k = idx[b, oh, ow]
                    if 0 <= k < H * W:
                        r = k // W
                        dx[b, r, k - r * W] += dy[b, oh, ow]

    return max_pool2d_bwd_fixup


@cuda.jit
def _fill_i32(a, v):
    # a (n,); a[:] = v, grid-stride
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = v


@functools.cache
def _avg_fwd(ft):
    # x (B,H,W); y (B,P,Q); one thread per output: window sum / PyTorch's divisor
    @cuda.jit
    def avg_pool2d_fwd(x, y, kh, kw, sh, sw, ph, pw, include_pad):
        B, H, W = x.shape
        P, Q = y.shape[1], y.shape[2]
        for t in range(cuda.grid(1), B * P * Q, cuda.gridsize(1)):
            r = t // Q  # one division per level: t = (b*P + oh)*Q + ow
            ow = t - r * Q
            b = r // P
            oh = r - b * P
            hs = oh * sh - ph
            he = min(hs + kh, H + ph)
            ws = ow * sw - pw
            we = min(ws + kw, W + pw)
            size = (he - hs) * (we - ws)
            hs = max(hs, 0)
            ws = max(ws, 0)
            he = min(he, H)
            we = min(we, W)
            acc = ft(0)
            for ih in range(hs, he):
                for iw in range(ws, we):
                    acc += x[b, ih, iw]
            if include_pad == 0:
                size = (he - hs) * (we - ws)
            y[b, oh, ow] = acc / ft(size) if size > 0 else ft(0)

    return avg_pool2d_fwd


@functools.cache
def _avg_bwd(ft):
    # dy (B,P,Q); dx (B,H,W); one thread per input pixel: gather dy / divisor of its windows
    @cuda.jit
    def avg_pool2d_bwd(dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
        B, H, W = dx.shape
        P, Q = dy.shape[1], dy.shape[2]
        for t in range(cuda.grid(1), B * H * W, cuda.gridsize(1)):
            r = t // W  # one division per level: t = (b*H + ih)*W + iw
            iw = t - r * W
            b = r // H
            ih = r - b * H
            oh0 = max(-((-(ih + ph - kh + 1)) // sh), 0)
            oh1 = min((ih + ph) // sh, P - 1)
            ow0 = max(-((-(iw + pw - kw + 1)) // sw), 0)
            ow1 = min((iw + pw) // sw, Q - 1)
            acc = ft(0)
            for oh in range(oh0, oh1 + 1):
                hs = oh * sh - ph
                he = min(hs + kh, H + ph)
                hn = he - hs
                if include_pad == 0:
                    hn = min(he, H) - max(hs, 0)
                for ow in range(ow0, ow1 + 1):
                    ws = ow * sw - pw
                    we = min(ws + kw, W + pw)
                    wn = we - ws
                    if include_pad == 0:
                        wn = min(we, W) - max(ws, 0)
                    acc += dy[b, oh, ow] / ft(hn * wn)
            dx[b, ih, iw] = acc

    return avg_pool2d_bwd


def _grid(n: int) -> int:
    return max(1, min(-(-n // TPB), MAX_BLOCKS))


_placeholder: dict[str, Any] = {}  # device arrays kept between calls


def _no_idx() -> Any:
    """A (1,1,1) int64 device array passed where the forward writes no indices."""
    if "idx" not in _placeholder:
        _placeholder["idx"] = cuda.device_array((1, 1, 1), dtype=np.int64)
    return _placeholder["idx"]


def _flags(n: int) -> Any:
    """n int32 plane flags, carved from one grow-only device buffer (kernels run in order on
    one stream, so a launch never overlaps the previous user)."""
    buf = _placeholder.get("flags")
    if buf is None or buf.size < n:
        buf = cuda.device_array(max(n, 1024), dtype=np.int32)
        _placeholder["flags"] = buf
    return buf[:n]


def max_pool2d_forward(x, y, idx, kernel, stride, pad, dilation) -> None:
    """y (and idx unless None) = max pooling of planes x (B,H,W) -> (B,P,Q)."""
    ft = _FT[np.dtype(x.dtype)]
    k = _max_fwd(ft, idx is not None)
    k[_grid(y.size), TPB](
        x, y, _no_idx() if idx is None else idx, *kernel, *stride, *pad, *dilation
    )


def max_pool2d_backward(dy, idx, dx, window=None) -> int:
    """dx = scatter-add of dy at idx per plane, computed as a gather (see the module doc).
    ``window`` = (kernel, stride, pad, dilation) of the forward, or None. Returns 0: on the
    GPU an idx outside its plane is skipped (checking it would need a host round trip)."""
    ft = _FT[np.dtype(dy.dtype)]
    B, H, W = dx.shape
    P, Q = dy.shape[1], dy.shape[2]
    bad = _flags(B)
    if window is None:  # guess non-overlapping windows
        s = (H // P, W // Q)
        window = (s, s, (0, 0), (1, 1)) if min(s) >= 1 else None
    _fill_i32[_grid(B), TPB](bad, 0 if window is not None else 1)
    if window is not None:
        kernel, stride, pad, dilation = window
        _max_bwd_gather(ft)[_grid(dx.size), TPB](
            dy, idx, dx, bad, *kernel, *stride, *pad, *dilation
        )
    _max_bwd_fixup(ft)[_grid(B), TPB](dy, idx, dx, bad)
    return 0


def avg_pool2d_forward(x, y, kernel, stride, pad, count_include_pad) -> None:
    """y = average pooling of planes x (B,H,W) -> (B,P,Q)."""
    ft = _FT[np.dtype(x.dtype)]
    _avg_fwd(ft)[_grid(y.size), TPB](x, y, *kernel, *stride, *pad, int(count_include_pad))


def avg_pool2d_backward(dy, dx, kernel, stride, pad, count_include_pad) -> None:
    """dx = gradient of average pooling, planes dy (B,P,Q) -> dx (B,H,W)."""
    ft = _FT[np.dtype(dy.dtype)]
    _avg_bwd(ft)[_grid(dx.size), TPB](dy, dx, *kernel, *stride, *pad, int(count_include_pad))


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every kernel specialisation launched above, for ``ptx_report``."""
    specs = [("fill_i32", _fill_i32.py_func, "void(int32[::1], int64)")]
    i8 = ", ".join(["int64"] * 8)
    i7 = ", ".join(["int64"] * 7)
    for name in ("float32", "float64"):
        ft = getattr(numba, name)
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
                f"max_pool2d_bwd_gather_{name}",
                _max_bwd_gather(ft).py_func,
                f"void({a}, {ix}, {a}, int32[::1], {i8})",
            ),
            (
                f"max_pool2d_bwd_fixup_{name}",
                _max_bwd_fixup(ft).py_func,
                f"void({a}, {ix}, {a}, int32[::1])",
            ),
            (f"avg_pool2d_fwd_{name}", _avg_fwd(ft).py_func, f"void({a}, {a}, {i7})"),
            (f"avg_pool2d_bwd_{name}", _avg_bwd(ft).py_func, f"void({a}, {a}, {i7})"),
        ]
    return specs
