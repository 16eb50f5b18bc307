"""``BatchNorm2d``: per-channel batch normalisation with running statistics, as PyTorch."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ._util import cached
from .module import Module, Parameter


class BatchNorm2d(Module):
    """Normalise each channel of NCHW input by batch statistics (training) or the running
    ones (eval). Buffers ``running_mean``, ``running_var`` and ``num_batches_tracked`` (int64,
    0-d, host) as PyTorch; ``momentum=None`` gives the cumulative average.

    >>> import numpy as np
    >>> bn = BatchNorm2d(3)
    >>> y = bn(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32))
    >>> int(bn.num_batches_tracked), y.shape
    (1, (4, 3, 2, 2))
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum, self.affine = (
            num_features,
            eps,
            momentum,
            affine,
        )
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x: Any) -> Any:
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked += 1
            if momentum is None:  # cumulative moving average, as PyTorch
                momentum = 1.0 / float(self.num_batches_tracked)
        w = self.weight.data if self.weight is not None else None
        b = self.bias.data if self.bias is not None else None
        y, mean, invstd = F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            w,
            b,
            self.training,
            0.0 if momentum is None else momentum,
            self.eps,
        )
        self._x, self._saved, self._trained = x, (mean, invstd), self.training
        return y

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        x = cached(self, "_x")
        mean, invstd = self._saved
        w = self.weight.data if self.weight is not None else None
        dx, dw, db = F.batch_norm_backward(dy, x, w, mean, invstd, training=self._trained)
        if self.weight is not None:
            self.weight.accumulate(dw)
            self.bias.accumulate(db)
        return dx if need_dx else None

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )
