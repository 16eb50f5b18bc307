"""The one place that imports a CUDA front end.

Every kernel module does ``from numba_cnn._cuda import cuda``. ``NUMBA_CNN_CUDA_BACKEND``
chooses, before import, which package that ``cuda`` is: ``numba-cuda`` (default,
``numba.cuda``) or ``mlir`` (numba-cuda-mlir's ``numba_cuda_mlir.cuda``, the successor
compiler; ``pip install numba-cnn[mlir]``). Kernels take their type objects from
``types`` / ``from_dtype`` here, so the same sources build with either. On import the device
memory pool is configured (``numba_cnn._memory``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _memory

try:  # numba-cuda keeps its own config; fall back to numba's
    from numba.cuda import config as _cfg
except ImportError:  # pragma: no cover
    from numba import config as _cfg

#: the values NUMBA_CNN_CUDA_BACKEND accepts, and the module each imports ``cuda`` from
BACKENDS = {"numba-cuda": "numba.cuda", "mlir": "numba_cuda_mlir.cuda"}
BACKEND: str = os.environ.get("NUMBA_CNN_CUDA_BACKEND", "").strip() or "numba-cuda"
if BACKEND not in BACKENDS:
    raise ValueError(
        f"NUMBA_CNN_CUDA_BACKEND={BACKEND!r} is not a CUDA front end; "
        f"choose one of {sorted(BACKENDS)}"
    )

#: True when kernels run under the Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
SIMULATOR: bool = bool(_cfg.ENABLE_CUDASIM)

if BACKEND == "mlir":
    if SIMULATOR:
        raise ValueError(
            "NUMBA_CNN_CUDA_BACKEND=mlir cannot run under NUMBA_ENABLE_CUDASIM=1 "
            "(the simulator is numba-cuda's); unset one of them"
        )
    try:
        from numba_cuda_mlir import cuda
    except ImportError as e:
        raise ImportError(
            "NUMBA_CNN_CUDA_BACKEND=mlir needs numba-cuda-mlir: pip install 'numba-cnn[mlir]'"
        ) from e
else:
    from numba import cuda

#: the active front end's type module (``types.float32``, ``types.int64``, ...)
types = cuda.types

__all__ = [
    "cuda",
    "types",
    "from_dtype",
    "BACKEND",
    "backend",
    "memory_stats",
    "SIMULATOR",
    "available",
    "is_device_array",
    "as_device_array",
    "to_device",
    "to_host",
    "synchronize",
]


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
_memory.configure(cuda, SIMULATOR)  # before any CUDA context exists


def backend() -> str:
    """The CUDA front end in use: ``"numba-cuda"`` or ``"mlir"``."""
    return BACKEND


def from_dtype(dtype: Any) -> Any:
    """The active front end's scalar type for a NumPy dtype (``numba.from_dtype`` builds
    numba's own type objects, which numba-cuda-mlir does not accept)."""
    dt = np.dtype(dtype)
    return types.boolean if dt.kind == "b" else getattr(types, dt.name)


def memory_stats() -> dict[str, Any]:
    """``{"pool", "bytes_in_use", "bytes_reserved", ...}`` of the device memory pool: see SPEC.
    ``pool`` is ``"cupy"``, ``"numba"``, the user's ``NUMBA_CUDA_MEMORY_MANAGER`` module or
    ``"simulator"``; bytes are 0 where nothing was allocated (and on a machine without a GPU)."""
    return _memory.stats(gpu_ready=not SIMULATOR and available())


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
    try:
        return cuda.to_device(np.ascontiguousarray(a))
    except Exception as e:  # Numba's CudaSupportError and the like, when there is no GPU
        if available():
            raise
        raise RuntimeError(
            "to_device: no CUDA GPU is available (nc.cuda_available() is False); "
            "keep NumPy arrays to run on the CPU"
        ) from e


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
    if BACKEND == "mlir":
        return cuda.random
    from numba.cuda import random as _random

    return _random
