"""``SGD`` with momentum, dampening, Nesterov and (L2) weight decay, as ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..nn.module import Parameter
from .optimizer import Optimizer, empty_like


class SGD(Optimizer):
    """Per element (PyTorch's rule): ``d = g + wd * p``; with momentum, ``buf = d`` on the first
    step, else ``buf = momentum * buf + (1 - dampening) * d``, and ``d = d + momentum * buf``
    (Nesterov) or ``d = buf``; then ``p -= lr * d``. State: ``momentum_buffer``.

    >>> import numpy as np
    >>> p = Parameter(np.float32([1.0, 2.0])); p.grad = np.float32([0.5, -1.0])
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> opt.step(); p.data.tolist()
    [0.949999988079071, 2.0999999046325684]
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"SGD: invalid learning rate {lr}")
        if momentum < 0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SGD: invalid weight_decay {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _update(self, p: Parameter, group: dict, state: dict, K: Any) -> None:
        t = np.dtype(p.dtype).type
        momentum = group["momentum"]
        buf = state.get("momentum_buffer")
        first = buf is None
        if momentum != 0 and first:
            buf = state["momentum_buffer"] = empty_like(p)
        flat = lambda a: a.reshape(a.size)
        K.sgd_update(
            flat(p.data),
            flat(p.grad),
            flat(buf if buf is not None else p.grad),
            t(group["lr"]),
            t(momentum),
            t(1 - group["dampening"]),
            t(group["weight_decay"]),
            bool(group["nesterov"]),
            first,
        )
