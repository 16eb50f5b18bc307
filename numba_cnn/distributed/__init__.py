"""Data-parallel training on MPI (mpi4py): ``import numba_cnn.distributed as dist``.

Launch the same script on P processes (``mpiexec -n P python train.py``); each rank trains on
its slice of every global batch (``DataLoader(..., rank=g.rank, world_size=g.size)``) and the
gradients are averaged before every optimizer step::

    g = dist.init()                      # Group: .rank, .size, .is_root
    dist.broadcast_parameters(model)     # same start everywhere (checks the architectures)
    for xb, yb in loader:
        opt.zero_grad()
        loss = crit(model(xb), yb)
        model.backward(crit.backward())
        dist.allreduce_gradients(model)  # mean over ranks: one collective per step
        opt.step()

Without mpi4py, or in one process, this is a world of size 1 and every call is a no-op.
Batch-norm statistics and dropout masks stay per rank (as in PyTorch DDP): only models
without them repeat the one-process run exactly.
"""

from ._collectives import allreduce_gradients, broadcast_parameters, check_same_model
from ._group import Group, abort_all, init, launched_by_mpi, world

__all__ = [
    "Group",
    "init",
    "world",
    "broadcast_parameters",
    "allreduce_gradients",
    "check_same_model",
    "launched_by_mpi",
    "abort_all",
]
