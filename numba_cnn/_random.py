"""The library's seeded random-number generator (``nc.manual_seed``)."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()
_seed: int | None = None


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the generator behind parameter initialisation, dropout and shuffling."""
    global _generator, _seed
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    return _generator


def generator() -> np.random.Generator:
    """The current global ``numpy.random.Generator``."""
    return _generator
