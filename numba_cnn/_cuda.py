"""The one place that imports Numba's CUDA target.

Every kernel module does ``from numba_cnn._cuda import cuda``, so moving to another CUDA
front end (numba-cuda-mlir) changes this file only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

try:  # numba-cuda keeps its own config; fall back to numba's
    from numba.cuda import config as _cfg
except ImportError:  # pragma: no cover
    from numba import config as _cfg

__all__ = [
    "cuda",
    "SIMULATOR",
    "available",
    "is_device_array",
    "as_device_array",
    "to_device",
    "to_host",
    "synchronize",
]

#: True when kernels run under the Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
SIMULATOR: bool = bool(_cfg.ENABLE_CUDASIM)


def _lock_simulator_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` allocation atomic.

    The simulator (numba-cuda 0.30) gives each block one NumPy array per call site, looked up
    and created without a lock: when the interpreter switches threads between the lookup and
    the store, two threads of one block get different "shared" arrays and a reduction reads
    garbage. It shows up under load (seen here: a softmax and two conv tests failing about
    once per full run). This replaces the lookup with the same one under a lock.
    """
    import sys
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    if getattr(original, "_numba_cnn_locked", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)  # the kernel line that declares the array, as upstream keys it
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    array._numba_cnn_locked = True
    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    _lock_simulator_shared_arrays()


def available() -> bool:
    """True on a machine with a usable CUDA GPU, and under the simulator."""
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver counts as no GPU
        return False


def is_device_array(a: Any) -> bool:
    """A Numba device array, or any object exposing ``__cuda_array_interface__``."""
    return bool(getattr(a, "__cuda_ndarray__", False)) or hasattr(a, "__cuda_array_interface__")


def _is_c_contiguous(a: Any) -> bool:
    flags = getattr(a, "flags", None)
    if flags is not None:
        try:
            return bool(flags["C_CONTIGUOUS"])
        except (KeyError, TypeError):
            pass
    return bool(a.is_c_contiguous())


def as_device_array(a: Any) -> Any:
    """Wrap ``a`` as a C-contiguous Numba device array: zero-copy when it already is one,
    one device-side copy when it is not contiguous."""
    if not getattr(a, "__cuda_ndarray__", False):
        a = cuda.as_cuda_array(a)  # CuPy array, PyTorch CUDA tensor: zero-copy view
    if _is_c_contiguous(a):
        return a
    out = cuda.device_array(a.shape, dtype=a.dtype)
    # device-to-device copy into contiguous storage. Not ``out[...]``: a real DeviceNDArray
    # indexes through numba's dummyarray, which rejects Ellipsis (the simulator's NumPy-backed
    # array accepts it). A 0-d array is always contiguous, so ``a.ndim >= 1`` here.
    out[:] = a
    return out


def to_device(a: Any) -> Any:
    """Copy a NumPy array to the GPU (device arrays are returned as they are)."""
    if is_device_array(a):
        return as_device_array(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a: Any) -> Any:
    """Copy a device array to a NumPy array (anything else is returned as it is)."""
    if is_device_array(a):
        return as_device_array(a).copy_to_host()
    return a


def synchronize() -> None:
    """Wait for all queued GPU work (a no-op without a GPU)."""
    if available():
        cuda.synchronize()


def random_module():
    """``numba.cuda.random`` (xoroshiro128+ device RNG), imported here like ``cuda`` itself."""
    from numba.cuda import random as _random

    return _random
