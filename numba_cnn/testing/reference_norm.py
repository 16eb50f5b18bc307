"""Reference batch normalisation over every axis but 1 (PyTorch semantics). Plain NumPy, float64.

training: mean, var = batch mean and biased variance over (N, H, W) per channel
          running_mean <- (1 - momentum) * running_mean + momentum * mean
          running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)
eval:     mean, var = running_mean, running_var
y = (x - mean) * invstd * weight + bias,   invstd = 1 / sqrt(var + eps)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _chan(v: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a (C,) vector against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(
    x: ArrayLike,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, save_mean, save_invstd); updates ``running_mean``/``running_var`` in place when
    training (unbiased variance). In eval, save_mean is a copy of running_mean and
    save_invstd = 1 / sqrt(running_var + eps). Missing running stats mean batch statistics in
    training; in eval they are an error, as in PyTorch. weight/bias None mean 1/0.

    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> y, mean, invstd = batch_norm(np.array([[1.0], [3.0]]), rm, rv, training=True)
    >>> mean.tolist(), rm.tolist(), rv.tolist()  # unbiased var 2 in the running stats
    ([2.0], [0.2], [1.1])
    """
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are needed in eval mode")
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(x)
    m = x.size // x.shape[1]
    if training or running_mean is None or running_var is None:
        mean = x.mean(axis=axes)
        var = ((x - _chan(mean, x.ndim)) ** 2).mean(axis=axes)  # biased, for normalising
        if training and m < 2:
            raise ValueError(
                f"batch_norm: training needs more than 1 value per channel, x {x.shape}"
            )
        if training and running_mean is not None:
            running_mean[...] = (1 - momentum) * np.asarray(
                running_mean, np.float64
            ) + momentum * mean
        if training and running_var is not None:
            unbiased = var * m / (m - 1)
            running_var[...] = (1 - momentum) * np.asarray(
                running_var, np.float64
            ) + momentum * unbiased
    else:
        mean = np.array(running_mean, dtype=np.float64)  # a copy
        var = np.asarray(running_var, dtype=np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - _chan(mean, x.ndim)) * _chan(invstd, x.ndim)
    if weight is not None:
        y = y * _chan(np.asarray(weight, np.float64), x.ndim)
    if bias is not None:
        y = y + _chan(np.asarray(bias, np.float64), x.ndim)
    return y, mean, invstd


def batch_norm_backward(
    dy: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike | None,
    save_mean: ArrayLike,
    save_invstd: ArrayLike,
    *,
    training: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias), with xhat = (x - mean) * invstd, M = N*H*W, w = weight or 1:

    dbias = sum dy;  dweight = sum dy * xhat  (always returned, even when weight is None)
    training: dx = w * invstd / M * (M * dy - dbias - xhat * dweight)   (through batch stats)
    eval:     dx = dy * w * invstd                                     (stats are constants)
    """
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    axes, nd = _axes(x), x.ndim
    m = x.size // x.shape[1]
    invstd = _chan(np.asarray(save_invstd, np.float64), nd)
    xhat = (x - _chan(np.asarray(save_mean, np.float64), nd)) * invstd
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, np.float64)
    dbias = dy.sum(axis=axes)
    dweight = (dy * xhat).sum(axis=axes)
    if training:
        dx = _chan(w, nd) * invstd / m * (m * dy - _chan(dbias, nd) - xhat * _chan(dweight, nd))
    else:
        dx = dy * _chan(w, nd) * invstd
    return dx, dweight, dbias
