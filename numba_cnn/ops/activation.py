"""Elementwise activations and their backwards (any rank, float32 or float64).

Forward and backward side by side; ``sigmoid_backward`` and ``tanh_backward`` take the forward
output ``y``, the others the input ``x``. NaN propagates through the forwards, as in PyTorch.

>>> import numpy as np
>>> from numba_cnn import functional as F
>>> x = np.array([-2.0, 0.0, 3.0])
>>> F.relu(x)
array([0., 0., 3.])
>>> F.relu_backward(np.ones(3), x)
array([0., 0., 1.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import check_shape, empty, kernels, prepare


def _unary(op: str, x: Any, *extra: Any) -> Any:
    dev, dtype, (x,) = prepare(op, x=x)
    y = empty(x.shape, dtype, dev)
    getattr(kernels(dev, "activation"), op)(x, y, *extra)
    return y


def _grad(op: str, dy: Any, other_name: str, other: Any, *extra: Any) -> Any:
    dev, dtype, (dy, other) = prepare(op, dy=dy, **{other_name: other})
    check_shape(op, "dy", dy, other.shape, f"the shape of {other_name}")
    dx = empty(dy.shape, dtype, dev)
    getattr(kernels(dev, "activation"), op)(dy, other, dx, *extra)
    return dx


def _slope(op: str, negative_slope: Any) -> float:
    if isinstance(negative_slope, bool) or not isinstance(
        negative_slope, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{op}: negative_slope must be a real number, got {negative_slope!r}")
    return float(negative_slope)


def relu(x: Any) -> Any:
    """y = max(x, 0).

    >>> relu(np.array([-1.0, 2.0], dtype=np.float32))
    array([0., 2.], dtype=float32)
    """
    return _unary("relu", x)


def relu_backward(dy: Any, x: Any) -> Any:
    """dx = dy where x > 0, else 0 (0 at x == 0).

    >>> relu_backward(np.array([5.0, 5.0]), np.array([-1.0, 2.0]))
    array([0., 5.])
    """
    return _grad("relu_backward", dy, "x", x)


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Any:
    """y = x if x > 0 else negative_slope * x.

    >>> leaky_relu(np.array([-2.0, 3.0]), 0.5)
    array([-1.,  3.])
    """
    return _unary("leaky_relu", x, _slope("leaky_relu", negative_slope))


def leaky_relu_backward(dy: Any, x: Any, negative_slope: float = 0.01) -> Any:
    """dx = dy if x > 0 else negative_slope * dy.

    >>> leaky_relu_backward(np.array([4.0, 4.0]), np.array([-2.0, 3.0]), 0.5)
    array([2., 4.])
    """
    slope = _slope("leaky_relu_backward", negative_slope)
    return _grad("leaky_relu_backward", dy, "x", x, slope)


def sigmoid(x: Any) -> Any:
    """y = 1 / (1 + exp(-x)), without overflow for large |x|.

    >>> sigmoid(np.array([0.0, -1000.0]))
    array([0.5, 0. ])
    """
    return _unary("sigmoid", x)


def sigmoid_backward(dy: Any, y: Any) -> Any:
    """dx = dy * y * (1 - y), from the forward output ``y``.

    >>> sigmoid_backward(np.array([1.0]), np.array([0.5]))
    array([0.25])
    """
    return _grad("sigmoid_backward", dy, "y", y)


def tanh(x: Any) -> Any:
    """y = tanh(x).

    >>> tanh(np.array([0.0]))
    array([0.])
    """
    return _unary("tanh", x)


def tanh_backward(dy: Any, y: Any) -> Any:
    """dx = dy * (1 - y^2), from the forward output ``y``.

    >>> tanh_backward(np.array([2.0]), np.array([0.5]))
    array([1.5])
    """
    return _grad("tanh_backward", dy, "y", y)


__all__ = [
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
]
