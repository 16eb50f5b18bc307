"""Serial twins of ``prange`` kernels, for inputs too small to pay for waking the threads.

A parallel region costs about 2 us even when empty, and on a busy machine it waits for every
worker to be scheduled (milliseconds); below a few tens of thousands of elements one thread
is faster. ``serial_twin(kernel)`` compiles the same Python function without
``parallel=True`` (``prange`` then runs as ``range``). The copy gets its own ``__qualname__``
so Numba's on-disk cache keeps the two compilations apart.
"""

from __future__ import annotations

import types
from typing import Any

from numba import njit

#: Elements below which the launchers take the serial twin.
PARALLEL_MIN = 1 << 15


def serial_twin(kernel: Any) -> Any:
    """``kernel`` (a parallel ``@njit`` dispatcher) recompiled serially, cached under
    ``<name>_serial``."""
    fn = kernel.py_func
    copy = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
    )
    copy.__qualname__ = fn.__qualname__ + "_serial"
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    opts = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
    return njit(cache=True, **opts)(copy)
