"""Linear (fully connected) layer, as ``torch.nn.functional.linear``: forward and backward.

Validation, allocation and dispatch; the math is in ``numba_cnn.kernels.{cpu,cuda}.linear``.

    y[..., o] = b[o] + sum_i x[..., i] * w[o, i]        x (..., I), w (O, I), b (O,)

Leading dimensions of ``x`` are flattened into rows M; a 1-D ``x`` is a single row.
CPU: the packed GEMM of ``kernels/cpu/_gemm`` (the forward of small batches of long rows into
few outputs by dot products), the bias fused. CUDA: one tiled shared-memory GEMM
kernel with three index maps (x @ w.T, dy @ w, dy.T @ x) and a deterministic column sum for db.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import check_ndim, empty, kernels, plain, prepare


def _check_rank(op: str, x: Any) -> None:
    # before prepare(): np.ascontiguousarray turns a 0-D array into a 1-D one
    if getattr(x, "ndim", None) == 0:
        raise ValueError(f"{op}: x must have at least 1 dimension (..., in_features), got 0-D")


def _check(op: str, x: Any, w: Any) -> tuple[int, int, int]:
    """Check x (..., I) against w (O, I); return (M, I, O)."""
    check_ndim(op, "weight", w, 2, "(out_features, in_features)")
    O, I = w.shape
    # the simulator's shape takes no negative index
    xs = x.shape if type(x) is np.ndarray else tuple(int(v) for v in x.shape)
    if xs[-1] != I:
        raise ValueError(
            f"{op}: x {xs} has {xs[-1]} features but weight "
            f"{tuple(w.shape)} expects in_features={I}"
        )
    M = math.prod(xs[:-1])
    return M, I, O


def linear(x: Any, weight: Any, bias: Any = None) -> Any:
    """``y = x @ weight.T + bias`` for x (..., in), weight (out, in), bias (out,) -> (..., out).

    >>> import numpy as np
    >>> x = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> w = np.ones((4, 3), dtype=np.float32)
    >>> linear(x, w, np.arange(4, dtype=np.float32))
    array([[ 3.,  4.,  5.,  6.],
           [12., 13., 14., 15.]], dtype=float32)
    """
    w = weight
    if plain(x, w, bias) and x.ndim == 2 == w.ndim and x.shape[1] == w.shape[1]:
        if bias is None or bias.shape == w.shape[:1]:  # what the full path checks, all passed
            y = empty((x.shape[0], w.shape[0]), x.dtype, "cpu")
            kernels("cpu", "linear").linear_forward(x, w, bias, y)
            return y
    op = "linear"
    _check_rank(op, x)
    dev, dtype, (x, w, b) = prepare(op, x=x, weight=weight, bias=bias)
    M, I, O = _check(op, x, w)
    if b is not None:
        check_ndim(op, "bias", b, 1, "(out_features,)")
        if int(b.shape[0]) != O:
            raise ValueError(
                f"{op}: bias {tuple(b.shape)} does not match weight {tuple(w.shape)}: "
                f"expected ({O},)"
            )
    out_shape = tuple(x.shape)[:-1] + (O,)
    y = empty(out_shape, dtype, dev)
    K = kernels(dev, "linear")
    x2, y2 = x.reshape(M, I), y.reshape(M, O)
    K.linear_forward(x2, w, b, y2)
    return y


def linear_backward(dy: Any, x: Any, weight: Any, *, need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Gradients of ``linear``: ``dx = dy @ weight`` (None unless ``need_dx``),
    ``dw = dy.T @ x`` over all rows, ``db = dy`` summed over all rows.

    >>> import numpy as np
    >>> x = np.ones((2, 3), dtype=np.float32); w = np.ones((4, 3), dtype=np.float32)
    >>> dx, dw, db = linear_backward(np.ones((2, 4), dtype=np.float32), x, w)
    >>> dx[0], dw.shape, db
    (array([4., 4., 4.], dtype=float32), (4, 3), array([2., 2., 2., 2.], dtype=float32))
    """
    w = weight
    if plain(dy, x, w) and x.ndim == 2 == w.ndim and x.shape[1] == w.shape[1]:
        if dy.shape == (x.shape[0], w.shape[0]):  # what the full path checks, all passed
            return _backward("cpu", dy, x, w, need_dx)
    op = "linear_backward"
    _check_rank(op, x)
    dev, dtype, (dy, x, w) = prepare(op, dy=dy, x=x, weight=weight)
    M, I, O = _check(op, x, w)
    want = tuple(x.shape)[:-1] + (O,)
    if tuple(dy.shape) != want:
        raise ValueError(
            f"{op}: dy has shape {tuple(dy.shape)}, expected {want} for x {tuple(x.shape)} "
            f"and weight {tuple(w.shape)}"
        )
    dx, dw, db = _backward(dev, dy.reshape(M, O), x.reshape(M, I), w, need_dx)
    return (None if dx is None else dx.reshape(x.shape)), dw, db


def _backward(dev: str, dy: Any, x: Any, w: Any, need_dx: bool) -> tuple[Any, Any, Any]:
    """dy (M, O), x (M, I), w (O, I), all checked -> dx (M, I) or None, dw, db."""
    K = kernels(dev, "linear")
    (O, I), dtype = w.shape, x.dtype
    dw = empty((O, I), dtype, dev)
    db = empty((O,), dtype, dev)
    if not need_dx:
        K.linear_backward_nodx(dy, x, dw, db)
        return None, dw, db
    dx = empty(tuple(x.shape), dtype, dev)
    K.linear_backward(dy, x, w, dx, dw, db)
    return dx, dw, db


__all__ = ["linear", "linear_backward"]
