"""Softmax, log-softmax and cross-entropy, forward and backward.

``softmax``/``log_softmax`` take any rank and any ``dim`` (negative counts from the end): the
input is viewed as ``(outer, D, inner)`` around ``dim`` and reduced in place, no transposes.
They are stable for any finite input (the maximum is subtracted first); a NaN in a slice makes
that slice NaN.

``cross_entropy(logits, labels)``: logits ``(N, C)``, labels ``(N,)`` of any integer dtype;
the mean over the batch of ``-log_softmax(logits)[n, labels[n]]``, as a 0-d array of the
logits' dtype on the logits' device (no host sync on the GPU).

Labels outside ``[0, C)``: on the CPU a ``ValueError`` naming the bad label and ``C``. On the
GPU they are not checked on the host (reading a device flag back would stall the stream on
every step); the kernels turn such a row's loss and gradient into NaN instead, so the loss
reads NaN. Check labels on the host before moving them if you need the exception.

>>> import numpy as np
>>> from numba_cnn import functional as F
>>> logits = np.array([[2.0, 0.0], [0.0, 2.0]])
>>> F.softmax(logits).round(4)
array([[0.8808, 0.1192],
       [0.1192, 0.8808]])
>>> round(float(F.cross_entropy(logits, np.array([0, 1]))), 4)
0.1269
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import check_ndim, check_shape, dim_index, empty, kernels, prepare


def _lines(a: Any, d: int) -> Any:
    """View ``a`` as (outer, D, inner) around axis ``d``."""
    shape = tuple(a.shape) or (1,)
    outer = math.prod(shape[:d])
    inner = math.prod(shape[d + 1 :])
    return a.reshape((outer, shape[d], inner))


def _forward(op: str, x: Any, dim: Any, log: bool) -> Any:
    dev, dtype, (x,) = prepare(op, x=x)
    d = dim_index(op, dim, max(x.ndim, 1))
    y = empty(x.shape, dtype, dev)
    kernels(dev, "softmax").softmax(_lines(x, d), _lines(y, d), log)
    return y


def _backward(op: str, dy: Any, y: Any, dim: Any, log: bool) -> Any:
    dev, dtype, (dy, y) = prepare(op, dy=dy, y=y)
    check_shape(op, "dy", dy, y.shape, "the shape of y")
    d = dim_index(op, dim, max(y.ndim, 1))
    dx = empty(y.shape, dtype, dev)
    kernels(dev, "softmax").softmax_backward(_lines(dy, d), _lines(y, d), _lines(dx, d), log)
    return dx


def softmax(x: Any, dim: int = -1) -> Any:
    """y = exp(x - max) / sum(exp(x - max)) over ``dim``.

    >>> softmax(np.array([1e4, 1e4], dtype=np.float32))
    array([0.5, 0.5], dtype=float32)
    """
    return _forward("softmax", x, dim, False)


def softmax_backward(dy: Any, y: Any, dim: int = -1) -> Any:
    """dx = y * (dy - sum(dy * y, dim)), from the softmax output ``y``.

    >>> softmax_backward(np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    array([0., 0.])
    """
    return _backward("softmax_backward", dy, y, dim, False)


def log_softmax(x: Any, dim: int = -1) -> Any:
    """y = (x - max) - log(sum(exp(x - max))) over ``dim``.

    >>> log_softmax(np.array([0.0, 0.0])).round(4)
    array([-0.6931, -0.6931])
    """
    return _forward("log_softmax", x, dim, True)


def log_softmax_backward(dy: Any, y: Any, dim: int = -1) -> Any:
    """dx = dy - exp(y) * sum(dy, dim), from the log-softmax output ``y``.

    >>> log_softmax_backward(np.array([1.0, 0.0]), np.log(np.array([0.5, 0.5])))
    array([ 0.5, -0.5])
    """
    return _backward("log_softmax_backward", dy, y, dim, True)


def _prepare_ce(op: str, logits: Any, labels: Any) -> tuple[str, np.dtype, Any, Any]:
    dev, dtype, (logits, labels) = prepare(op, ints=("labels",), logits=logits, labels=labels)
    check_ndim(op, "logits", logits, 2, "(N, C)")
    check_ndim(op, "labels", labels, 1, "(N,)")
    N, C = logits.shape
    if labels.shape[0] != N:
        raise ValueError(
            f"{op}: labels has shape {tuple(labels.shape)} but logits has shape "
            f"{tuple(logits.shape)}; expected one label per row, shape ({N},)"
        )
    if N == 0 or C == 0:
        raise ValueError(f"{op}: logits of shape {tuple(logits.shape)} is empty")
    K = kernels(dev, "softmax")
    if dev == "cpu":
        lo, hi = labels.min(), labels.max()
        if lo < 0 or hi >= C:
            bad = lo if lo < 0 else hi
            at = int(np.flatnonzero(labels == bad)[0])
            raise ValueError(
                f"{op}: label {int(bad)} (labels[{at}]) is out of range for logits of shape "
                f"{tuple(logits.shape)}: labels must lie in [0, C) with C = {C}"
            )
    return dev, dtype, logits, K.labels_int64(labels)


def cross_entropy(logits: Any, labels: Any) -> Any:
    """The mean over the batch of -log_softmax(logits)[n, labels[n]]: a 0-d array of the
    logits' dtype on the logits' device (see the module docstring for bad labels on the GPU).

    >>> loss = cross_entropy(np.zeros((3, 4), dtype=np.float32), np.array([0, 1, 3]))
    >>> loss.shape, loss.dtype, round(float(loss), 4)
    ((), dtype('float32'), 1.3863)
    """
    dev, dtype, logits, labels = _prepare_ce("cross_entropy", logits, labels)
    loss = empty((1,), dtype, dev)
    kernels(dev, "softmax").cross_entropy(logits, labels, loss)
    return loss.reshape(())


def cross_entropy_backward(logits: Any, labels: Any) -> Any:
    """dlogits = (softmax(logits) - onehot(labels)) / N.

    >>> cross_entropy_backward(np.zeros((1, 2)), np.array([1]))
    array([[ 0.5, -0.5]])
    """
    dev, dtype, logits, labels = _prepare_ce("cross_entropy_backward", logits, labels)
    dx = empty(logits.shape, dtype, dev)
    kernels(dev, "softmax").cross_entropy_backward(logits, labels, dx)
    return dx


__all__ = [
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
]
