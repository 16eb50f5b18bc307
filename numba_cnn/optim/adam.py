"""``Adam`` and ``AdamW`` with PyTorch's (single-tensor, non-amsgrad) update rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..nn.module import Parameter
from .optimizer import Optimizer, zeros_like


class Adam(Optimizer):
    """Per element, at step t (PyTorch's rule): ``g += wd * p`` (Adam) or ``p *= 1 - lr * wd``
    (AdamW); ``m = lerp(m, g, 1 - beta1)``; ``v = beta2 * v + (1 - beta2) * g * g``;
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.

    >>> import numpy as np
    >>> p = Parameter(np.float32([1.0, 2.0])); p.grad = np.float32([0.5, -1.0])
    >>> opt = Adam([p], lr=0.1)
    >>> opt.step(); p.data.astype(float).round(4).tolist()  # the first step moves by ~lr
    [0.9, 2.1]
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
    ) -> None:
        name = type(self).__name__
        if lr < 0:
            raise ValueError(f"{name}: invalid learning rate {lr}")
        if eps < 0:
            raise ValueError(f"{name}: invalid eps {eps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"{name}: invalid weight_decay {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _update(self, items: list[tuple[Parameter, dict]], group: dict, K: Any) -> None:
        for p, state in items:
            if not state:
                state["step"] = 0
                state["exp_avg"] = zeros_like(p)
                state["exp_avg_sq"] = zeros_like(p)
            state["step"] += 1
        steps = sorted({st["step"] for _, st in items})  # one launch per distinct step count
        for step in steps:
            todo = [(p, st) for p, st in items if st["step"] == step]
            self._launch(todo, group, step, K)

    def _launch(self, todo: list[tuple[Parameter, dict]], group: dict, step: int, K: Any) -> None:
        t = todo[0][0].dtype.type
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        step_size = lr / (1 - beta1**step)
        bc2_sqrt = (1 - beta2**step) ** 0.5
        decay = 1 - lr * wd if self._decoupled else 1.0
        flat = lambda a: a.reshape(a.size)
        K.adam_update_multi(
            [flat(p.data) for p, _ in todo],
            [flat(p.grad) for p, _ in todo],
            [flat(st["exp_avg"]) for _, st in todo],
            [flat(st["exp_avg_sq"]) for _, st in todo],
            t(1 - beta1),
            t(1),
            t(beta2),
            t(1 - beta2),
            t(-step_size),
            t(bc2_sqrt),
            t(eps),
            t(0 if self._decoupled else wd),
            t(decay),
        )

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        for s in sd["state"].values():  # PyTorch keeps `step` as a float32 0-d tensor
            s["step"] = np.array(s["step"], dtype=np.float32)
        return sd


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the update)."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
