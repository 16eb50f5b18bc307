"""``CrossEntropyLoss``: mean cross entropy of logits against integer labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from . import _grad
from ._util import cached
from .module import Module


class CrossEntropyLoss(Module):
    """``loss = crit(logits, labels)`` (0-d array on the logits' device);
    ``crit.backward()`` returns dlogits = (softmax - onehot) / N.

    >>> import numpy as np
    >>> crit = CrossEntropyLoss()
    >>> loss = crit(np.zeros((2, 3), np.float32), np.array([0, 2]))
    >>> round(float(loss), 4), crit.backward().shape
    (1.0986, (2, 3))
    """

    def forward(self, logits: Any, labels: Any) -> Any:
        self._logits, self._labels = logits, labels
        return F.cross_entropy(logits, labels)

    def backward(self, dy: Any = None, *, need_dx: bool = True) -> Any:
        """dlogits; ``dy`` (a number, default 1) scales it."""
        logits = cached(self, "_logits")
        if not need_dx:
            return None
        dlogits = F.cross_entropy_backward(logits, self._labels)
        if dy is not None:
            s = float(np.asarray(dy))
            if s != 1.0:
                _grad.scale_(dlogits, s)
        return dlogits
