"""Max and average pooling (forward and backward), as ``torch.nn.functional``.

Validation, output allocation and dispatch; the kernels live in
``numba_cnn.kernels.{cpu,cuda}.pooling`` and see (N*C, H, W) planes.

>>> import numpy as np
>>> from numba_cnn import functional as F
>>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
>>> y, idx = F.max_pool2d(x, 2, return_indices=True)
>>> y[0, 0].tolist(), idx[0, 0].tolist()
([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
>>> F.max_pool2d_backward(np.ones_like(y), idx, x.shape)[0, 0, 1].tolist()
[0.0, 1.0, 0.0, 1.0]
>>> F.avg_pool2d(x, 2)[0, 0].tolist()
[[2.5, 4.5], [10.5, 12.5]]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import check_ndim, empty, kernels, pair, prepare

Pair = int | tuple[int, int]


def _out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: the last window must start inside the input or the
    left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _window(op: str, kernel_size, stride, padding, dilation=1):
    k = pair(op, "kernel_size", kernel_size, minimum=1)
    s = k if stride is None else pair(op, "stride", stride, minimum=1)
    p = pair(op, "padding", padding, minimum=0)
    d = pair(op, "dilation", dilation, minimum=1)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{op}: padding {p} must be at most half of kernel_size {k} "
            f"(padding <= kernel_size // 2, as PyTorch)"
        )
    return k, s, p, d


def _out_shape(op: str, shape, k, s, p, d, ceil_mode) -> tuple[int, int]:
    shape = tuple(int(v) for v in shape)
    H, W = shape[-2], shape[-1]
    P = _out_size(H, k[0], s[0], p[0], d[0], bool(ceil_mode))
    Q = _out_size(W, k[1], s[1], p[1], d[1], bool(ceil_mode))
    if P < 1 or Q < 1:
        raise ValueError(
            f"{op}: input of shape {tuple(shape)} with kernel_size {k}, stride {s}, "
            f"padding {p}, dilation {d} gives output size ({P}, {Q}), which is too small"
        )
    # a dilation wider than the input can step over it: no window may miss the input
    for n, kk, ss, pp, dd, m, ax in (
        (H, k[0], s[0], p[0], d[0], P, "H"),
        (W, k[1], s[1], p[1], d[1], Q, "W"),
    ):
        if dd > n and any(
            all(not 0 <= o * ss - pp + j * dd < n for j in range(kk)) for o in range(m)
        ):
            raise ValueError(
                f"{op}: with dilation {d} and padding {p}, a window along {ax} of input shape "
                f"{tuple(shape)} holds no input element"
            )
    return P, Q


def _planes(a: Any, B: int, H: int, W: int) -> Any:
    return a.reshape(B, H, W)


def _x_shape(op: str, x_shape: Any) -> tuple[int, ...]:
    ok = isinstance(x_shape, (tuple, list)) and len(x_shape) in (3, 4)
    ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in x_shape)
    if not ok or min(int(v) for v in x_shape[-3:]) < 1 or int(x_shape[0]) < 0:
        raise ValueError(
            f"{op}: x_shape must be a tuple (N, C, H, W) (or (C, H, W)) of positive ints, "
            f"got {x_shape!r}"
        )
    return tuple(int(v) for v in x_shape)


def _check_input(op: str, x: Any) -> None:
    check_ndim(op, "x", x, (3, 4), "(N, C, H, W) or (C, H, W)")
    if min(tuple(x.shape)[-3:]) < 1:
        raise ValueError(f"{op}: x has shape {tuple(x.shape)}; C, H and W must be positive")


def max_pool2d(
    x: Any,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max pooling over (N, C, H, W) (or (C, H, W)); padding is implicit -inf.

    Returns ``y`` or ``(y, idx)``: ``idx`` int64, the flat ``h * W + w`` of each maximum
    within its (n, c) plane, as PyTorch. A window holding NaN yields NaN.

    >>> import numpy as np
    >>> x = np.array([[[[1, 3, 2], [4, 0, 9], [5, 8, 7]]]], dtype=np.float32)
    >>> max_pool2d(x, 2, stride=1)[0, 0].tolist()
    [[4.0, 9.0], [8.0, 9.0]]
    """
    op = "max_pool2d"
    dev, dtype, (x,) = prepare(op, x=x)
    _check_input(op, x)
    xs = tuple(int(v) for v in x.shape)
    k, s, p, d = _window(op, kernel_size, stride, padding, dilation)
    P, Q = _out_shape(op, x.shape, k, s, p, d, ceil_mode)
    lead = xs[:-2]
    H, W = xs[-2:]
    B = math.prod(lead)
    y = empty((*lead, P, Q), dtype, dev)
    idx = empty((*lead, P, Q), np.int64, dev) if return_indices else None
    if B:
        kernels(dev, "pooling").max_pool2d_forward(
            _planes(x, B, H, W),
            _planes(y, B, P, Q),
            None if idx is None else _planes(idx, B, P, Q),
            k,
            s,
            p,
            d,
        )
    return (y, idx) if return_indices else y


def max_pool2d_backward(
    dy: Any,
    idx: Any,
    x_shape: tuple[int, ...],
    *,
    kernel_size: Pair | None = None,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
    ceil_mode: bool = False,
) -> Any:
    """Gradient of ``max_pool2d``: ``dx[n, c].flat[idx] += dy`` (overlapping windows add up).

    ``idx`` must come from ``max_pool2d(..., return_indices=True)`` on an input of shape
    ``x_shape``. The optional keyword-only window arguments (those given to the forward)
    let the GPU gather per input pixel even for overlapping windows; without them it guesses
    non-overlapping windows and redoes, in a fixed order, any plane where the guess fails.
    When given, ``dy``'s shape is checked against them. Results never depend on them.
    On the CPU an index outside its plane raises ``ValueError``; on the GPU it is ignored.

    >>> import numpy as np
    >>> dy = np.float32([[[[1.0, 2.0]]]]); idx = np.int64([[[[1, 1]]]])
    >>> max_pool2d_backward(dy, idx, (1, 1, 1, 3))[0, 0].tolist()
    [[0.0, 3.0, 0.0]]
    """
    op = "max_pool2d_backward"
    x_shape = _x_shape(op, x_shape)
    dev, dtype, (dy, idx) = prepare(op, ints=("idx",), dy=dy, idx=idx)
    if np.dtype(idx.dtype) != np.int64:
        raise TypeError(f"{op}: idx must be int64 (as max_pool2d returns), got dtype {idx.dtype}")
    check_ndim(op, "dy", dy, len(x_shape), f"(x_shape is {x_shape})")
    ds = tuple(int(v) for v in dy.shape)
    if tuple(idx.shape) != ds:
        raise ValueError(f"{op}: idx has shape {tuple(idx.shape)} but dy has shape {dy.shape}")
    if ds[:-2] != x_shape[:-2]:
        raise ValueError(
            f"{op}: dy has shape {tuple(dy.shape)}, which does not match x_shape {x_shape} "
            "in its leading (N, C) dimensions"
        )
    win = None
    if kernel_size is not None:
        k, s, p, d = _window(op, kernel_size, stride, padding, dilation)
        P, Q = _out_shape(op, x_shape, k, s, p, d, ceil_mode)
        if ds[-2:] != (P, Q):
            raise ValueError(
                f"{op}: dy has shape {tuple(dy.shape)} but x_shape {x_shape} with "
                f"kernel_size {k}, stride {s}, padding {p}, dilation {d} gives ({P}, {Q})"
            )
        win = (k, s, p, d)
    lead = x_shape[:-2]
    H, W = x_shape[-2:]
    P, Q = ds[-2:]
    B = math.prod(lead)
    if P < 1 or Q < 1:
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)}; its H and W must be positive")
    dx = empty(x_shape, dtype, dev)
    if B:
        K = kernels(dev, "pooling")
        bad = K.max_pool2d_backward(
            _planes(dy, B, P, Q), _planes(idx, B, P, Q), _planes(dx, B, H, W), win
        )
        if bad:
            raise ValueError(
                f"{op}: {bad} entries of idx (shape {tuple(idx.shape)}) lie outside their "
                f"{H}x{W} plane (x_shape {x_shape}); idx must come from max_pool2d"
            )
    return dx


def avg_pool2d(
    x: Any,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Any:
    """Average pooling over (N, C, H, W) (or (C, H, W)), zero padding.

    The divisor is the window size clipped to the padded input when ``count_include_pad``,
    else the number of input elements in the window (PyTorch's rule).

    >>> import numpy as np
    >>> x = np.ones((1, 1, 3, 3), dtype=np.float32)
    >>> avg_pool2d(x, 2, padding=1, count_include_pad=False)[0, 0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    op = "avg_pool2d"
    dev, dtype, (x,) = prepare(op, x=x)
    _check_input(op, x)
    xs = tuple(int(v) for v in x.shape)
    k, s, p, d = _window(op, kernel_size, stride, padding)
    P, Q = _out_shape(op, x.shape, k, s, p, d, ceil_mode)
    lead = xs[:-2]
    H, W = xs[-2:]
    B = math.prod(lead)
    y = empty((*lead, P, Q), dtype, dev)
    if B:
        kernels(dev, "pooling").avg_pool2d_forward(
            _planes(x, B, H, W), _planes(y, B, P, Q), k, s, p, bool(count_include_pad)
        )
    return y


def avg_pool2d_backward(
    dy: Any,
    x_shape: tuple[int, ...],
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Any:
    """Gradient of ``avg_pool2d`` with respect to its input, of shape ``x_shape``.

    >>> import numpy as np
    >>> dy = np.ones((1, 1, 1, 1), dtype=np.float32)
    >>> avg_pool2d_backward(dy, (1, 1, 2, 2), 2)[0, 0].tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    op = "avg_pool2d_backward"
    x_shape = _x_shape(op, x_shape)
    dev, dtype, (dy,) = prepare(op, dy=dy)
    check_ndim(op, "dy", dy, len(x_shape), f"(x_shape is {x_shape})")
    k, s, p, d = _window(op, kernel_size, stride, padding)
    P, Q = _out_shape(op, x_shape, k, s, p, d, ceil_mode)
    if tuple(dy.shape) != (*x_shape[:-2], P, Q):
        raise ValueError(
            f"{op}: dy has shape {tuple(dy.shape)} but x_shape {x_shape} with kernel_size {k}, "
            f"stride {s}, padding {p} gives {(*x_shape[:-2], P, Q)}"
        )
    lead = x_shape[:-2]
    H, W = x_shape[-2:]
    B = math.prod(lead)
    dx = empty(x_shape, dtype, dev)
    if B:
        kernels(dev, "pooling").avg_pool2d_backward(
            _planes(dy, B, P, Q), _planes(dx, B, H, W), k, s, p, bool(count_include_pad)
        )
    return dx


__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]
