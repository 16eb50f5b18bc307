"""``SGD`` with momentum, dampening, Nesterov and (L2) weight decay, as ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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

    def _update(self, items: list[tuple[Parameter, dict]], group: dict, K: Any) -> None:
        t = items[0][0].dtype.type
        momentum = group["momentum"]
        flat = lambda a: a.reshape(a.size)
        fresh = [st.get("momentum_buffer") is None for _, st in items]
        for first in (True, False):  # a parameter's first step creates its momentum buffer
            todo = [it for it, f in zip(items, fresh, strict=True) if f == first]
            if not todo:
                continue
            if momentum != 0 and first:
                for p, st in todo:
                    st["momentum_buffer"] = empty_like(p)
            grads = [flat(p.grad) for p, _ in todo]
            bufs = [flat(st["momentum_buffer"]) for _, st in todo] if momentum != 0 else grads
            K.sgd_update_multi(
                [flat(p.data) for p, _ in todo],
                grads,
                bufs,
                t(group["lr"]),
                t(momentum),
                t(1 - group["dampening"]),
                t(group["weight_decay"]),
                bool(group["nesterov"]),
                first,
            )
