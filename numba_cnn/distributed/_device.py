"""Mean over ranks of device gradients: NCCL (CuPy), CUDA-aware MPI, or pinned host staging.

All three pack the gradients into one flat device buffer (device-to-device copies), reduce
that buffer with one collective, scale it by ``1 / size`` on the device and unpack it.

- ``"nccl"``: ``cupy.cuda.nccl`` when CuPy and the NCCL library load (one communicator per
  run, its id broadcast over MPI), on a real GPU.
- ``"cuda-aware-mpi"``: the device buffer handed to ``MPI_Allreduce``, only when the user sets
  ``NUMBA_CNN_CUDA_AWARE_MPI=1`` (no reliable run-time query exists, and a device pointer
  given to an MPI that is not CUDA-aware crashes it).
- ``"host"``: one device-to-host copy into a pinned buffer, ``MPI_Allreduce`` there, one copy
  back. The only path under the CUDA simulator, where device arrays are host memory.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .. import _cuda
from ..nn import _grad
from ._group import Group

__all__ = ["path", "allreduce_mean"]

_NCCL_TYPES = {"<f4": "NCCL_FLOAT32", "<f8": "NCCL_FLOAT64", "<f2": "NCCL_FLOAT16"}
_state: dict[str, Any] = {}


def _nccl() -> Any:
    """``cupy.cuda.nccl`` when it works here, else None (checked once)."""
    if "nccl" not in _state:
        _state["nccl"] = None
        if not _cuda.SIMULATOR:
            try:
                with warnings.catch_warnings():  # CuPy warns on import when NCCL is missing
                    warnings.simplefilter("ignore")
                    from cupy.cuda import nccl
                if nccl.available:
                    _state["nccl"] = nccl
            except Exception:  # no CuPy, or a CuPy that does not match the CUDA here
                pass
    return _state["nccl"]


def path(dtype: str = "<f4") -> str:
    """Which way device gradients of ``dtype`` travel: ``"nccl"``, ``"cuda-aware-mpi"`` or
    ``"host"``."""
    if _cuda.SIMULATOR:
        return "host"
    if _nccl() is not None and dtype in _NCCL_TYPES:
        return "nccl"
    if os.environ.get("NUMBA_CNN_CUDA_AWARE_MPI", "") == "1":
        return "cuda-aware-mpi"
    return "host"


def _buffer(kind: str, dtype: str, n: int) -> Any:
    key = (kind, dtype, n)
    buf = _state.get(key)
    if buf is None:
        make = _cuda.cuda.device_array if kind == "device" else _cuda.cuda.pinned_array
        buf = _state[key] = make(n, dtype=np.dtype(dtype))
    return buf


def _nccl_comm(group: Group) -> Any:
    comm = _state.get("nccl_comm")
    if comm is None:
        nccl = _nccl()
        uid = group.bcast(nccl.get_unique_id() if group.is_root else None)
        comm = _state["nccl_comm"] = nccl.NcclCommunicator(group.size, uid, group.rank)
    return comm


def _pointer(a: Any) -> int:
    return int(a.__cuda_array_interface__["data"][0])


def allreduce_mean(grads: list[Any], total: int, dtype: str, group: Group) -> None:
    """Each device array of ``grads`` (``total`` elements of ``dtype`` together) becomes its
    mean over the ranks of ``group``, in place."""
    from mpi4py import MPI

    flat = _buffer("device", dtype, total)
    off = 0
    for g in grads:  # pack: device-to-device copies on the default stream
        n = int(g.size)
        flat[off : off + n].copy_to_device(_cuda.as_device_array(g).reshape(n))
        off += n
    how = path(dtype)
    if how == "nccl":
        nccl = _nccl()
        kind = getattr(nccl, _NCCL_TYPES[dtype])
        # stream 0: the legacy default stream, which Numba's copies and kernels also use
        _nccl_comm(group).allReduce(_pointer(flat), _pointer(flat), total, kind, nccl.NCCL_SUM, 0)
    elif how == "cuda-aware-mpi":
        _cuda.synchronize()  # MPI reads the buffer outside any stream: the packing must be done
        group.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    else:
        host = _buffer("pinned", dtype, total)
        flat.copy_to_host(host)
        group.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        flat.copy_to_device(host)
    _grad.scale_(flat, 1.0 / group.size)
    off = 0
    for g in grads:  # unpack
        n = int(g.size)
        _cuda.as_device_array(g).reshape(n).copy_to_device(flat[off : off + n])
        off += n
