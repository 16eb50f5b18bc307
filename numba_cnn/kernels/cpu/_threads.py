"""The one rule by which CPU launchers choose a ``prange`` kernel or its serial twin.

A parallel build pays off only with more than one Numba thread and enough work (``_serial``:
``PARALLEL_MIN`` elements). With one thread -- ``numba-cnn train`` on images under 16 pixels
runs so -- the serial twin does the same work without the parallel runtime, and the run never
compiles the parallel build, whose compile takes 2-3x as long (measured on the project's
2-vCPU machine: the max-pool forward with indices, 7.4 s of compile CPU parallel against 2.6 s
serial; the first ``numba-cnn train`` in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import numba
from numba.np.ufunc import parallel as _pool

from ._serial import PARALLEL_MIN

__all__ = ["num_threads", "use_parallel"]


def num_threads() -> int:
    """``numba.get_num_threads()``, read without that function's two locks once the thread
    pool runs (2.5 -> 0.4 us a call on the project's 2-vCPU machine; every launcher asks)."""
    get = getattr(_pool, "_get_num_threads", None) if _pool._is_initialized else None
    n = get() if get is not None else 0
    return n if n > 0 else numba.get_num_threads()


def use_parallel(size: int) -> bool:
    """True when ``size`` elements of work should take the parallel build: at least
    ``PARALLEL_MIN`` and more than one Numba thread (``numba.set_num_threads``)."""
    return size >= PARALLEL_MIN and num_threads() > 1
