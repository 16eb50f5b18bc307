"""Activation layers: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Softmax``."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ._util import cached
from .module import Module


class ReLU(Module):
    """max(x, 0); the gradient at 0 is 0."""

    def forward(self, x: Any) -> Any:
        self._x = x
        return F.relu(x)

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        return F.relu_backward(dy, cached(self, "_x")) if need_dx else None


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Any) -> Any:
        self._x = x
        return F.leaky_relu(x, self.negative_slope)

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        if not need_dx:
            return None
        return F.leaky_relu_backward(dy, cached(self, "_x"), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)); backward uses the output."""

    def forward(self, x: Any) -> Any:
        self._y = F.sigmoid(x)
        return self._y

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        return F.sigmoid_backward(dy, cached(self, "_y")) if need_dx else None


class Tanh(Module):
    """tanh(x); backward uses the output."""

    def forward(self, x: Any) -> Any:
        self._y = F.tanh(x)
        return self._y

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        return F.tanh_backward(dy, cached(self, "_y")) if need_dx else None


class Softmax(Module):
    """softmax along ``dim``; backward uses the output."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Any) -> Any:
        self._y = F.softmax(x, self.dim)
        return self._y

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        return F.softmax_backward(dy, cached(self, "_y"), self.dim) if need_dx else None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
