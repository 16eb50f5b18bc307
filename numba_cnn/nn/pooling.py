"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d(1)``."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ._util import cached, pair
from .module import Module


class MaxPool2d(Module):
    """Max over windows (stride defaults to kernel_size); backward routes dy to the argmax."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode

    def forward(self, x: Any) -> Any:
        y, idx = F.max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            return_indices=True,
        )
        self._idx, self._x_shape = idx, tuple(x.shape)
        return y

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        if not need_dx:
            return None
        return F.max_pool2d_backward(
            dy,
            cached(self, "_idx"),
            self._x_shape,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """Mean over windows (stride defaults to kernel_size)."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad = count_include_pad

    def _args(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def forward(self, x: Any) -> Any:
        self._x_shape = tuple(x.shape)
        return F.avg_pool2d(x, *self._args())

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        if not need_dx:
            return None
        return F.avg_pool2d_backward(dy, cached(self, "_x_shape"), *self._args())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Global average pooling: only ``output_size`` 1 (or ``(1, 1)``) is supported.

    >>> import numpy as np
    >>> AdaptiveAvgPool2d(1)(np.ones((2, 3, 4, 5), np.float32)).shape
    (2, 3, 1, 1)
    """

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        if pair(output_size) != (1, 1):
            raise ValueError(
                f"AdaptiveAvgPool2d: only output_size=1 is supported, got {output_size!r}"
            )
        self.output_size = output_size

    def forward(self, x: Any) -> Any:
        if len(x.shape) != 4:
            raise ValueError(
                f"AdaptiveAvgPool2d: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}"
            )
        self._x_shape = tuple(x.shape)
        return F.avg_pool2d(x, tuple(x.shape[2:]))

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        if not need_dx:
            return None
        shape = cached(self, "_x_shape")
        return F.avg_pool2d_backward(dy, shape, shape[2:])

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
