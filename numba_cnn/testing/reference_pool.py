"""Reference 2-D max and average pooling (PyTorch semantics), one explicit loop per window.
Plain NumPy, float64 (indices int64).

Output size per dimension (PyTorch's ``pooling_output_shape``):

    out = floor_or_ceil((in + 2*pad - dil*(k - 1) - 1) / stride) + 1
    with ceil_mode: if (out - 1) * stride >= in + pad: out -= 1
    (the last window must start inside the input or the left padding)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

IntPair = int | tuple[int, int]


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def pool_out_size(size: int, k: int, s: int, pad: int, dil: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size for one dimension (see the module docstring)."""
    span = size + 2 * pad - dil * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + pad:
        out -= 1
    return out


def _geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    h, w = x_shape[-2:]
    p = pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    q = pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    if p < 1 or q < 1:
        raise ValueError(f"kernel {(kh, kw)} larger than padded input {x_shape}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (p, q)


def max_pool2d(
    x: ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """y[n, c, p, q] = max over the window's in-bounds taps (padding counts as -inf).

    ``idx`` (int64) is the flat ``h * W + w`` of the maximum in its (n, c) plane. Taps are
    scanned row-major; a tap wins if it is greater than the current maximum (ties keep the
    first) or if it is NaN (so a window holding NaN yields NaN, at its last NaN, as PyTorch).

    >>> y, idx = max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2, return_indices=True)
    >>> y[0, 0].tolist(), idx[0, 0].tolist()
    ([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
    """
    x = np.asarray(x, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (p, q) = _geometry(
        x.shape, kernel_size, stride, padding, dilation, ceil_mode
    )
    n, c, h, w = x.shape
    y = np.empty((n, c, p, q), dtype=np.float64)
    idx = np.empty((n, c, p, q), dtype=np.int64)
    for i in range(p):
        for j in range(q):
            hs = [i * sh - ph + r * dh for r in range(kh) if 0 <= i * sh - ph + r * dh < h]
            ws = [j * sw - pw + s * dw for s in range(kw) if 0 <= j * sw - pw + s * dw < w]
            if not hs or not ws:
                raise ValueError(f"max_pool2d: window {(i, j)} holds no input element")
            for b in range(n):
                for ch in range(c):
                    best, arg = -np.inf, hs[0] * w + ws[0]
                    for hh in hs:
                        for ww in ws:
                            v = x[b, ch, hh, ww]
                            if v > best or np.isnan(v):
                                best, arg = v, hh * w + ww
                    y[b, ch, i, j] = best
                    idx[b, ch, i, j] = arg
    return (y, idx) if return_indices else y


def max_pool2d_backward(dy: ArrayLike, idx: ArrayLike, x_shape: tuple[int, ...]) -> np.ndarray:
    """dx[n, c].flat[idx[n, c, p, q]] += dy[n, c, p, q]  (overlapping windows accumulate)."""
    dy = np.asarray(dy, dtype=np.float64)
    idx = np.asarray(idx).astype(np.int64)
    n, c, h, w = x_shape
    dx = np.zeros((n, c, h * w), dtype=np.float64)
    for b in range(n):
        for ch in range(c):
            np.add.at(dx[b, ch], idx[b, ch].ravel(), dy[b, ch].ravel())
    return dx.reshape(n, c, h, w)


def _avg_windows(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Yield (i, j, h0, h1, w0, w1, divisor) per output position, exactly as PyTorch:
    the window is clipped to the padded input [-pad, in + pad) for the count_include_pad
    divisor, then to the input [0, in) for the sum and the other divisor."""
    (kh, kw), (sh, sw), (ph, pw), _, (p, q) = _geometry(
        x_shape, kernel_size, stride, padding, 1, ceil_mode
    )
    h, w = x_shape[-2:]
    for i in range(p):
        for j in range(q):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            divisor = pool_size if count_include_pad else (h1 - h0) * (w1 - w0)
            yield i, j, h0, h1, w0, w1, divisor


def avg_pool2d(
    x: ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """y[n, c, p, q] = sum of the in-bounds taps / divisor.

    divisor = window size clipped to the padded input (count_include_pad=True; a ceil_mode
    window hanging past the padded edge counts only its part inside it) or the number of
    in-bounds taps (count_include_pad=False).
    """
    x = np.asarray(x, dtype=np.float64)
    _, _, _, _, (p, q) = _geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    y = np.empty(x.shape[:2] + (p, q), dtype=np.float64)
    for i, j, h0, h1, w0, w1, div in _avg_windows(
        x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad
    ):
        y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return y


def avg_pool2d_backward(
    dy: ArrayLike,
    x_shape: tuple[int, ...],
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """dx[n, c, window] += dy[n, c, p, q] / divisor  (same windows and divisors as forward)."""
    dy = np.asarray(dy, dtype=np.float64)
    dx = np.zeros(tuple(x_shape), dtype=np.float64)
    for i, j, h0, h1, w0, w1, div in _avg_windows(
        x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad
    ):
        dx[:, :, h0:h1, w0:w1] += (dy[:, :, i, j] / div)[:, :, None, None]
    return dx
