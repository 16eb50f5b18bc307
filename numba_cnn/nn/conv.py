"""``Conv2d``: ``F.conv2d`` with PyTorch's parameters and default initialisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from . import init
from ._util import cached, pair
from .module import Module, Parameter


class Conv2d(Module):
    """2-D convolution over NCHW input; weight ``(out, in // groups, kh, kw)``.

    >>> import numpy as np
    >>> conv = Conv2d(3, 4, 3, padding=1)
    >>> conv(np.zeros((2, 3, 5, 5), np.float32)).shape
    (2, 4, 5, 5)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must be divisible by groups ({groups})"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size)
        self.stride, self.padding, self.dilation = pair(stride), pair(padding), pair(dilation)
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((out_channels, in_channels // groups, kh, kw), np.float32))
        self.bias = Parameter(np.empty((out_channels,), np.float32)) if bias else None
        init.default_weight_and_bias(self.weight, self.bias)

    def _args(self) -> tuple:
        return (self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: Any) -> Any:
        self._x = x
        b = self.bias.data if self.bias is not None else None
        return F.conv2d(x, self.weight.data, b, *self._args())

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        x = cached(self, "_x")
        dx, dw, db = F.conv2d_backward(dy, x, self.weight.data, *self._args(), need_dx=need_dx)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding!r}"  # repr: quotes around "same"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
