"""The process group: MPI's world through mpi4py, or a world of one process without it."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

__all__ = ["Group", "init", "world", "launched_by_mpi", "abort_all"]

#: launcher variables that say how many processes were started (MPICH/Hydra, Open MPI)
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: variables an MPI launcher sets in every process it starts (Hydra, Open MPI, PMIx, MVAPICH)
_LAUNCHER_VARS = (
    "PMI_RANK",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "MV2_COMM_WORLD_SIZE",
)


class Group:
    """The processes of one run: ``.rank`` (0..size-1), ``.size``, ``.is_root`` (rank 0),
    ``.local_rank`` and ``.local_size`` (rank and count among this node's processes), ``.comm``
    (the mpi4py communicator, None in a world of one process without MPI)."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else int(comm.Get_rank())
        self.size = 1 if comm is None else int(comm.Get_size())
        self.local_rank, self.local_size = 0, 1
        if comm is not None and self.size > 1:
            from mpi4py import MPI

            node = comm.Split_type(MPI.COMM_TYPE_SHARED)
            self.local_rank, self.local_size = int(node.Get_rank()), int(node.Get_size())
            node.Free()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Group(rank={self.rank}, size={self.size})"

    @property
    def shard(self) -> dict[str, int]:
        """``DataLoader`` keywords of this rank's share: ``{}`` in a world of one."""
        return {} if self.size == 1 else {"rank": self.rank, "world_size": self.size}

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """``obj`` of rank ``root`` on every rank (pickled; for small objects)."""
        return obj if self.size == 1 else self.comm.bcast(obj, root=root)

    def allgather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order (pickled; for small objects)."""
        return [obj] if self.size == 1 else self.comm.allgather(obj)

    def sum(self, values: Any) -> np.ndarray:
        """Element-wise sum over ranks of a few host numbers, as float64."""
        a = np.array(values, dtype=np.float64, copy=True)
        if self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)
        return a

    def from_root(self, fn: Any, *args: Any, root: int = 0) -> Any:
        """``fn(*args)`` run on rank ``root`` only; every rank returns its result (pickled), or
        raises the exception it raised, so that no rank is left waiting."""
        if self.size == 1:
            return fn(*args)
        result: tuple[bool, Any] | None = None
        if self.rank == root:
            try:
                result = (True, fn(*args))
            except Exception as e:
                result = (False, e)
        ok, value = self.bcast(result, root=root)
        if not ok:
            raise value
        return value

    def barrier(self) -> None:
        if self.size > 1:
            self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """Stop every rank now with exit status ``code`` (``MPI_Abort``); a no-op alone."""
        if self.size > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(int(code))


_WORLD: Group | None = None


def _launched_size() -> int:
    for var in _LAUNCHER_SIZE_VARS:
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return 1


def init() -> Group:
    """The world group, created on the first call (later calls return the same one).

    Uses mpi4py when it is installed (``mpiexec -n P`` gives a world of P); without it, a world
    of one process. With more than one process it installs an excepthook that prints the
    error and calls ``MPI.COMM_WORLD.Abort``, so an exception (or Ctrl-C) on any rank stops
    every rank with a non-zero exit instead of leaving the others waiting in a collective.
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # not installed, or no MPI library to load
        if _launched_size() > 1:  # P copies of a one-process run would all write the same files
            raise RuntimeError(
                f"numba_cnn.distributed: started as one of {_launched_size()} MPI processes "
                f"but mpi4py is not usable ({e}); pip install 'numba-cnn[mpi]'"
            ) from e
        _WORLD = Group(None)
        return _WORLD
    _WORLD = Group(MPI.COMM_WORLD)
    if _WORLD.size > 1:
        _install_abort_hook(_WORLD)
    return _WORLD


def launched_by_mpi() -> bool:
    """True when an MPI launcher (``mpiexec``, ``srun`` with PMI/PMIx) started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def abort_all(code: int) -> None:
    """Stop every rank with exit status ``code`` if this process runs in a world of several
    (an error on one rank must not leave the others waiting); else do nothing."""
    if _WORLD is not None and _WORLD.size > 1:
        _WORLD.abort(code)


def world() -> Group:
    """The world group (``init()`` if it was not called yet)."""
    return init()


def _install_abort_hook(group: Group) -> None:
    previous = sys.excepthook

    def abort_all(kind: type, value: BaseException, tb: Any) -> None:
        try:
            sys.stderr.write(f"[rank {group.rank} of {group.size}] ")
            previous(kind, value, tb)
        finally:
            group.abort(130 if issubclass(kind, KeyboardInterrupt) else 1)

    sys.excepthook = abort_all
