"""``Dropout``: inverted dropout in training, identity in eval."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from .module import Module


class Dropout(Module):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` while
    training (masks from the seeded generator); the identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0:
            self._mask = None
            return x
        y, self._mask = F.dropout(x, self.p, True)
        return y

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        if not need_dx:
            return None
        if self._mask is None:
            return dy
        return F.dropout_backward(dy, self._mask, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
