"""numba_cnn: CNN kernels in Python with Numba, on an NVIDIA GPU or the CPU.

>>> import numpy as np, numba_cnn as nc
>>> from numba_cnn import functional as F
>>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
>>> w = np.random.default_rng(1).standard_normal((4, 3, 3, 3), dtype=np.float32)
>>> F.conv2d(x, w, padding=1).shape
(2, 4, 8, 8)
"""

from __future__ import annotations

import importlib
from typing import Any

# isort: off
from . import _cpu_target  # noqa: F401  first: 512-bit vectors on AVX-512 (before any compile)
from . import _cache_lock  # noqa: F401  processes compiling at once keep the cache whole

# isort: on
from ._cuda import available as cuda_available
from ._cuda import backend as cuda_backend
from ._cuda import memory_stats, synchronize, to_device, to_host
from ._random import manual_seed

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "cuda_available",
    "cuda_backend",
    "memory_stats",
    "to_device",
    "to_host",
    "synchronize",
    "manual_seed",
    "save",
    "load",
    "functional",
    "nn",
    "optim",
    "data",
    "testing",
]

_SUBMODULES = {"functional", "nn", "optim", "data", "testing"}


def __getattr__(name: str) -> Any:
    # submodules and save/load load on first use, so `import numba_cnn` stays light
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("save", "load"):
        return getattr(importlib.import_module(f"{__name__}.io"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
