"""Pooled device memory: CuPy's memory pool behind Numba's External Memory Management (EMM).

CuPy ships no Numba plugin (RMM does: ``rmm.allocators.numba.RMMNumbaManager``); this is the
same thin adapter over ``cupy.get_default_memory_pool()``. The allocation policy (size
rounding, block splitting, caching freed blocks) stays CuPy's. Freed blocks go back to the pool
in stream order on the legacy default stream, the stream Numba launches on, so a block is never
reused by a kernel queued before its previous user finished.

``configure(cuda)`` registers the adapter on the active CUDA front end before any context
exists: only when CuPy is importable and the user has not chosen a manager with
``NUMBA_CUDA_MEMORY_MANAGER`` (that is how RMM is selected). ``stats()`` backs
``numba_cnn.memory_stats()``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from typing import Any

__all__ = ["configure", "stats", "make_manager", "pool_name"]

_POOL = "numba"  # what configure() chose: "cupy", "numba", "simulator" or a module name
_COUNTS = {"allocs": 0, "frees": 0}  # requests through the adapter (not driver allocations)


class _CupyAllocator:
    """``cupy.cuda.alloc`` on the Numba context's device: CuPy's current allocator (its default
    memory pool, unless the user chose another with ``cupy.cuda.set_allocator``;
    ``set_allocator(None)`` means plain ``cudaMalloc``, what ``compute-sanitizer`` runs want).
    The device is set explicitly: CuPy's current device need not be the one Numba selected
    (``cuda.select_device(local_rank)`` under MPI)."""

    def __init__(self, device_id: int | None) -> None:
        self.device_id = device_id

    def malloc(self, size: int) -> Any:
        import cupy

        if self.device_id is None or cupy.cuda.runtime.getDevice() == self.device_id:
            return cupy.cuda.alloc(size)
        with cupy.cuda.Device(self.device_id):
            return cupy.cuda.alloc(size)


def _cupy_pool(device_id: int | None) -> Any:
    return _CupyAllocator(device_id)


def make_manager(cuda: Any, pool_factory: Any = _cupy_pool) -> type:
    """The EMM plugin class for ``cuda`` (``numba.cuda`` or ``numba_cuda_mlir.cuda``) that
    takes device memory from ``pool_factory(device_id)`` (an object with ``malloc(size)``
    returning a block with ``.ptr`` that frees itself when dropped, as ``cupy.cuda.alloc``'s
    ``MemoryPointer``; ``device_id`` is the Numba context's device). Tests pass a fake."""

    class CupyNumbaManager(cuda.GetIpcHandleMixin, cuda.HostOnlyCUDAMemoryManager):
        """Device allocations from CuPy's pool; pinned host memory as Numba's own."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pool = None

        def initialize(self) -> None:
            device = getattr(self.context, "device", None)
            self._pool = pool_factory(None if device is None else int(device.id))

        def memalloc(self, size: int) -> Any:
            if self._pool is None:
                self.initialize()
            block = self._pool.malloc(size)
            holder = [block]  # released (back to the pool) when Numba finalizes the pointer
            _COUNTS["allocs"] += 1

            def finalizer(holder: list = holder) -> None:
                holder.clear()
                _COUNTS["frees"] += 1

            ptr = ctypes.c_void_p(int(block.ptr))
            return cuda.MemoryPointer(self.context, ptr, size, finalizer=finalizer)

        def get_memory_info(self) -> Any:
            import cupy

            free, total = cupy.cuda.runtime.memGetInfo()
            return cuda.MemoryInfo(free=free, total=total)

        @property
        def interface_version(self) -> int:
            return 1

    return CupyNumbaManager


def pool_name() -> str:
    return _POOL


def configure(cuda: Any, simulator: bool) -> str:
    """Register CuPy's pool on ``cuda`` when allowed; returns the pool name (see module doc)."""
    global _POOL
    user = os.environ.get("NUMBA_CUDA_MEMORY_MANAGER", "default")
    if simulator:
        _POOL = "simulator"
    elif user != "default":
        _POOL = user  # never override the user's choice (e.g. RMM's)
    elif importlib.util.find_spec("cupy") is None:
        _POOL = "numba"
    else:
        cuda.set_memory_manager(make_manager(cuda))
        _POOL = "cupy"
    return _POOL


def stats(gpu_ready: bool) -> dict[str, Any]:
    """``{"pool", "bytes_in_use", "bytes_reserved", "allocs", "frees"}``; bytes are CuPy's
    pool counters (0 for other pools, and before the GPU is in use)."""
    in_use = reserved = 0
    if _POOL == "cupy" and gpu_ready:
        import cupy

        pool = cupy.get_default_memory_pool()
        in_use, reserved = int(pool.used_bytes()), int(pool.total_bytes())
    return {"pool": _POOL, "bytes_in_use": in_use, "bytes_reserved": reserved, **_COUNTS}
