"""``Linear`` (``x @ weight.T + bias``) and ``Flatten``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from . import init
from ._util import cached, reshape
from .module import Module, Parameter


class Linear(Module):
    """Fully connected layer; weight ``(out_features, in_features)``.

    >>> import numpy as np
    >>> Linear(4, 3)(np.zeros((2, 4), np.float32)).shape
    (2, 3)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), np.float32))
        self.bias = Parameter(np.empty((out_features,), np.float32)) if bias else None
        init.default_weight_and_bias(self.weight, self.bias)

    def forward(self, x: Any) -> Any:
        self._x = x
        return F.linear(x, self.weight.data, self.bias.data if self.bias is not None else None)

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        x = cached(self, "_x")
        dx, dw, db = F.linear_backward(dy, x, self.weight.data, need_dx=need_dx)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` (default: all but the batch); a view, also on the GPU.

    >>> import numpy as np
    >>> Flatten()(np.zeros((2, 3, 4, 5), np.float32)).shape
    (2, 60)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Any) -> Any:
        shape = tuple(x.shape)
        nd = len(shape)
        ok = -nd <= self.start_dim < nd and -nd <= self.end_dim < nd
        s, e = (self.start_dim % nd, self.end_dim % nd) if ok else (0, -1)
        if s > e:
            raise ValueError(
                f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not fit an "
                f"input of shape {shape}"
            )
        self._x_shape = shape
        return reshape(x, shape[:s] + (int(np.prod(shape[s : e + 1])),) + shape[e + 1 :])

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        shape = cached(self, "_x_shape")
        return reshape(dy, shape) if need_dx else None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
