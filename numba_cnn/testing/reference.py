"""Independent NumPy references for every op: plain NumPy, float64, written for clarity.

Imports nothing from the rest of ``numba_cnn``. Same names and signatures as
``numba_cnn.functional``; outputs are float64 (pooling indices int64).

>>> import numpy as np
>>> relu(np.array([-1.0, 0.0, 2.0]))
array([0., 0., 2.])
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .reference_conv import conv2d, conv2d_backward
from .reference_norm import batch_norm, batch_norm_backward
from .reference_pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "linear",
    "linear_backward",
    "batch_norm",
    "batch_norm_backward",
    "dropout_apply",
    "dropout_backward",
]


def _f64(a: ArrayLike) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# ---- activations ---------------------------------------------------------------------------


def relu(x: ArrayLike) -> np.ndarray:
    """y = max(x, 0); NaN stays NaN, as in PyTorch."""
    x = _f64(x)
    return np.where(x < 0, 0.0, x)


def relu_backward(dy: ArrayLike, x: ArrayLike) -> np.ndarray:
    """dx = dy * (x > 0)  (0 at x == 0)."""
    return np.where(_f64(x) > 0, _f64(dy), 0.0)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """y = x if x > 0 else negative_slope * x."""
    x = _f64(x)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(dy: ArrayLike, x: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """dx = dy if x > 0 else negative_slope * dy."""
    dy = _f64(dy)
    return np.where(_f64(x) > 0, dy, negative_slope * dy)


def sigmoid(x: ArrayLike) -> np.ndarray:
    """y = 1 / (1 + exp(-x)), evaluated without overflow for either sign."""
    x = _f64(x)
    e = np.exp(-np.abs(x))  # in (0, 1]
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy: ArrayLike, y: ArrayLike) -> np.ndarray:
    """dx = dy * y * (1 - y), from the output y."""
    y = _f64(y)
    return _f64(dy) * y * (1.0 - y)


def tanh(x: ArrayLike) -> np.ndarray:
    """y = tanh(x)."""
    return np.tanh(_f64(x))


def tanh_backward(dy: ArrayLike, y: ArrayLike) -> np.ndarray:
    """dx = dy * (1 - y^2), from the output y."""
    y = _f64(y)
    return _f64(dy) * (1.0 - y * y)


# ---- softmax / cross-entropy ---------------------------------------------------------------


def log_softmax(x: ArrayLike, dim: int = -1) -> np.ndarray:
    """y = x - m - log(sum(exp(x - m))), m = max over ``dim`` (stable for large |x|)."""
    x = _f64(x)
    m = np.max(x, axis=dim, keepdims=True)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=dim, keepdims=True))


def softmax(x: ArrayLike, dim: int = -1) -> np.ndarray:
    """y = exp(x - m) / sum(exp(x - m)) over ``dim``."""
    x = _f64(x)
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


def softmax_backward(dy: ArrayLike, y: ArrayLike, dim: int = -1) -> np.ndarray:
    """dx = y * (dy - sum(dy * y, dim)), from the softmax output y."""
    dy, y = _f64(dy), _f64(y)
    return y * (dy - np.sum(dy * y, axis=dim, keepdims=True))


def log_softmax_backward(dy: ArrayLike, y: ArrayLike, dim: int = -1) -> np.ndarray:
    """dx = dy - exp(y) * sum(dy, dim), from the log-softmax output y."""
    dy, y = _f64(dy), _f64(y)
    return dy - np.exp(y) * np.sum(dy, axis=dim, keepdims=True)


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """loss = -mean_n log_softmax(logits)[n, labels[n]], a 0-d float64 array."""
    lp = log_softmax(logits, dim=1)
    labels = np.asarray(labels).astype(np.int64)
    n = lp.shape[0]
    return np.asarray(-np.mean(lp[np.arange(n), labels]), dtype=np.float64)


def cross_entropy_backward(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """dlogits = (softmax(logits) - onehot(labels)) / N."""
    p = softmax(logits, dim=1)
    labels = np.asarray(labels).astype(np.int64)
    n = p.shape[0]
    onehot = np.zeros_like(p)
    onehot[np.arange(n), labels] = 1.0
    return (p - onehot) / n


# ---- linear ---------------------------------------------------------------------------------


def linear(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None) -> np.ndarray:
    """y = x @ weight.T + bias;  x (N, I), weight (O, I), bias (O,) -> y (N, O)."""
    y = np.einsum("ni,oi->no", _f64(x), _f64(weight))
    if bias is not None:
        y = y + _f64(bias)
    return y


def linear_backward(
    dy: ArrayLike, x: ArrayLike, weight: ArrayLike, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dx = dy @ weight (None unless need_dx), dw = dy.T @ x, db = dy.sum(0)."""
    dy, x, weight = _f64(dy), _f64(x), _f64(weight)
    dx = np.einsum("no,oi->ni", dy, weight) if need_dx else None
    dw = np.einsum("no,ni->oi", dy, x)
    db = dy.sum(axis=0)
    return dx, dw, db


# ---- dropout --------------------------------------------------------------------------------


def _keep_scale(p: float) -> float:
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)  # p == 1 drops everything, as PyTorch


def dropout_apply(x: ArrayLike, mask: ArrayLike, p: float) -> np.ndarray:
    """Inverted dropout given the keep mask: y = x * mask / (1 - p)  (0 when p == 1)."""
    return _f64(x) * _f64(mask) * _keep_scale(p)


def dropout_backward(dy: ArrayLike, mask: ArrayLike, p: float) -> np.ndarray:
    """dx = dy * mask / (1 - p)  (0 when p == 1)."""
    return _f64(dy) * _f64(mask) * _keep_scale(p)
