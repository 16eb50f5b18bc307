"""``Sequential``: modules applied in order, backward in reverse."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from .module import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    ``Sequential(a, b)`` names them ``"0"``, ``"1"``; ``Sequential(OrderedDict(...))`` keeps
    the given names. Indexable (ints and slices; a slice keeps the original names), ``len``,
    iterable.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: {name} is a {type(m).__name__}, not a Module")
            self._modules[str(name)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        if not isinstance(idx, (int, np.integer)):
            raise TypeError(f"Sequential indices must be ints or slices, got {type(idx).__name__}")
        n = len(items)
        if not -n <= idx < n:
            raise IndexError(f"Sequential index {idx} out of range for length {n}")
        return items[int(idx) % n][1]

    def append(self, module: Module) -> Sequential:
        self._modules[str(len(self._modules))] = module
        return self

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        mods = list(self._modules.values())
        for i in range(len(mods) - 1, -1, -1):
            dy = mods[i].backward(dy, need_dx=need_dx if i == 0 else True)
        return dy
