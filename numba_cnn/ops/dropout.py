"""Inverted dropout: ``y = x * mask / (1 - p)``, and its backward.

The keep mask is drawn on x's device by a counter-based hash of the element index and a 64-bit
key; the key is one draw from ``rng`` (default: the library's generator, ``nc.manual_seed``),
so a seed fixes the mask, with no per-element host work on the GPU. (The CPU and CUDA kernels
hash alike, so one key gives the same mask on both devices, though that is not promised.)
Kept units are scaled by ``scale = 1 / (1 - p)`` rounded to x's dtype: exactly
``y = x * (mask * scale)``, which is also what ``dropout_backward`` applies to ``dy``.

>>> import numpy as np, numba_cnn as nc
>>> from numba_cnn import functional as F
>>> x = np.ones((2, 4), dtype=np.float32)
>>> y, mask = F.dropout(x, p=0.5, rng=np.random.default_rng(0))
>>> bool(np.all(y == 2 * mask))
True
>>> bool(F.dropout_backward(np.ones((2, 4), dtype=np.float32), mask, 0.5).sum() == 2 * mask.sum())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _cuda, _random
from ._common import check_shape, dtype_of, empty, kernels, prepare


def _check_p(op: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: p must be a number in [0, 1], got {p!r}")
    if not 0.0 <= float(p) <= 1.0:  # NaN fails too
        raise ValueError(f"{op}: p must lie in [0, 1], got {p!r}")
    return float(p)


def _scale(p: float) -> float:
    # p == 1 drops everything: y = x * 0 (NaN stays NaN), as torch
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def dropout(
    x: Any, p: float = 0.5, training: bool = True, *, rng: np.random.Generator | None = None
) -> tuple[Any, Any]:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Returns ``(y, mask)``: ``mask`` is a bool array of x's shape on x's device (True = kept).
    ``p == 1`` drops every element (``y = x * 0``, as PyTorch). ``training=False`` or
    ``p == 0``: ``y`` is a copy of ``x``, ``mask`` all True, and no random number is drawn.
    ``rng``: a ``numpy.random.Generator`` (default: the library's).

    >>> y, mask = dropout(np.arange(1.0, 5.0), p=0.25, training=False)
    >>> y, mask
    (array([1., 2., 3., 4.]), array([ True,  True,  True,  True]))
    """
    p = _check_p("dropout", p)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout: rng must be a numpy.random.Generator or None, got {rng!r}")
    dev, dtype, (x,) = prepare("dropout", x=x)
    y = empty(x.shape, dtype, dev)
    mask = empty(x.shape, np.bool_, dev)
    if training and p > 0.0:
        gen = _random.generator() if rng is None else rng
        key = int(gen.integers(0, 2**63, dtype=np.int64))
        # P(keep) = 1 - threshold / 2^53: p < 1 keeps some, p == 1 (threshold 2^53) none
        threshold = 2**53 if p == 1.0 else min(round(p * 2.0**53), 2**53 - 1)
        scale = _scale(p)
    else:
        key, threshold, scale = 0, 0, 1.0  # keeps every element: y = x * 1
    kernels(dev, "dropout").dropout(x, y, mask, key, threshold, scale)
    return y, mask


def dropout_backward(dy: Any, mask: Any, p: float) -> Any:
    """dx = dy * mask / (1 - p), with the mask returned by ``dropout`` (dx = dy * 0 for p == 1).

    >>> dropout_backward(np.array([1.0, 1.0]), np.array([True, False]), 0.5)
    array([2., 0.])
    """
    op = "dropout_backward"
    p = _check_p(op, p)
    dev, dtype, (dy,) = prepare(op, dy=dy)
    if not (isinstance(mask, np.ndarray) or _cuda.is_device_array(mask)):
        raise TypeError(
            f"{op}: mask must be a NumPy array or a CUDA device array, got {type(mask).__name__}"
        )
    on_dev = _cuda.is_device_array(mask)
    if on_dev != (dev == "cuda"):
        where = "device" if on_dev else "host"
        other = "device" if dev == "cuda" else "host"
        raise TypeError(
            f"{op}: mask is on the {where} but dy is on the {other}; move them together"
        )
    if dtype_of(mask) != np.bool_:
        raise TypeError(
            f"{op}: mask must be a bool array (from dropout), got dtype {dtype_of(mask)}"
        )
    check_shape(op, "mask", mask, dy.shape, "the shape of dy")
    mask = _cuda.as_device_array(mask) if on_dev else np.ascontiguousarray(mask)
    dx = empty(dy.shape, dtype, dev)
    kernels(dev, "dropout").dropout_backward(dy, mask, dx, _scale(p))
    return dx


__all__ = ["dropout", "dropout_backward"]
