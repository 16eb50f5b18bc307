"""Model-level collectives: ``check_same_model``, ``broadcast_parameters``,
``allreduce_gradients`` (one flat buffer, one collective per dtype and step)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _cuda
from ..nn.module import Module
from . import _device
from ._group import init

__all__ = ["check_same_model", "broadcast_parameters", "allreduce_gradients"]

Entry = tuple[str, str, tuple[int, ...], str]  # (kind, name, shape, dtype)


def _signature(module: Module) -> list[Entry]:
    sig: list[Entry] = []
    for name, p in module.named_parameters():
        sig.append(("parameter", name, tuple(int(d) for d in p.shape), p.dtype.str))
    for name, b in module.named_buffers():
        sig.append(("buffer", name, tuple(int(d) for d in b.shape), np.dtype(b.dtype).str))
    return sig


def _describe(e: Entry) -> str:
    return f"{e[0]} {e[1]!r} of shape {e[2]} ({np.dtype(e[3]).name})"


def _first_difference(ref: list[Entry], other: list[Entry], rank: int) -> str | None:
    for i, (a, b) in enumerate(zip(ref, other, strict=False)):
        if a[:2] == b[:2] and a != b:
            return (
                f"{a[0]} {a[1]!r} has shape {a[2]} ({np.dtype(a[3]).name}) on rank 0 but "
                f"{b[2]} ({np.dtype(b[3]).name}) on rank {rank}"
            )
        if a != b:
            return (
                f"entry {i} is the {_describe(a)} on rank 0 but the {_describe(b)} on rank {rank}"
            )
    if len(ref) != len(other):
        longer, who = (ref, 0) if len(ref) > len(other) else (other, rank)
        extra = _describe(longer[min(len(ref), len(other))])
        return (
            f"rank 0 has {len(ref)} parameters and buffers, rank {rank} has {len(other)}; "
            f"the first one only rank {who} has is the {extra}"
        )
    return None


def check_same_model(module: Module) -> None:
    """Raise ``RuntimeError`` on every rank, naming the first differing parameter (or buffer)
    name and shape, when the ranks hold different architectures."""
    group = init()
    if group.size == 1:
        return
    sigs = group.allgather(_signature(module))
    for rank in range(1, group.size):
        diff = _first_difference(sigs[0], sigs[rank], rank)
        if diff is not None:
            raise RuntimeError(f"check_same_model: rank {rank} holds a different model: {diff}")


def broadcast_parameters(module: Module, root: int = 0) -> None:
    """Copy every parameter and buffer of rank ``root`` into the module of every rank (after
    ``check_same_model``): one flat message per dtype."""
    group = init()
    if group.size == 1:
        return
    if not 0 <= root < group.size:
        raise ValueError(f"broadcast_parameters: root must be in [0, {group.size}), got {root}")
    check_same_model(module)
    state = module.state_dict()  # host copies, in the same order on every rank
    for dtype in sorted({v.dtype.str for v in state.values()}):
        keys = [k for k, v in state.items() if v.dtype.str == dtype]
        flat = np.concatenate([state[k].reshape(-1) for k in keys]) if group.rank == root else None
        if flat is None:
            flat = np.empty(sum(state[k].size for k in keys), dtype=np.dtype(dtype))
        group.comm.Bcast(flat, root=root)
        off = 0
        for k in keys:
            n = state[k].size
            state[k] = flat[off : off + n].reshape(state[k].shape)
            off += n
    if group.rank != root:
        module.load_state_dict(state)


def _groups(module: Module) -> dict[tuple[bool, str], list[Any]]:
    """The parameters that have a gradient, by (on the device, dtype)."""
    out: dict[tuple[bool, str], list[Any]] = {}
    for p in module.parameters():
        if p.grad is not None:
            key = (_cuda.is_device_array(p.grad), np.dtype(p.grad.dtype).str)
            out.setdefault(key, []).append(p)
    return out


_HOST_BUFFERS: dict[tuple[str, int], np.ndarray] = {}


def _host_buffer(dtype: str, n: int) -> np.ndarray:
    buf = _HOST_BUFFERS.get((dtype, n))
    if buf is None:
        buf = _HOST_BUFFERS[(dtype, n)] = np.empty(n, dtype=np.dtype(dtype))
    return buf


def allreduce_gradients(module: Module) -> None:
    """Replace every parameter's ``.grad`` by its mean over the ranks.

    The gradients are packed into one flat buffer (one per dtype; one in practice) and
    exchanged by a single collective per step. Device gradients go through NCCL (CuPy) when it
    is available, device-to-device through MPI when ``NUMBA_CNN_CUDA_AWARE_MPI=1`` declares the
    MPI CUDA-aware, else through pinned host memory (see ``_device.path``). Every rank must hold
    gradients for the same parameters. Gradients of ``None`` stay ``None``.
    """
    group = init()
    if group.size == 1:
        return
    for (on_device, dtype), params in sorted(_groups(module).items()):
        total = sum(int(p.grad.size) for p in params)
        if on_device:
            _device.allreduce_mean([p.grad for p in params], total, dtype, group)
            continue
        flat = _host_buffer(dtype, total)
        off = 0
        for p in params:
            n = int(p.grad.size)
            flat[off : off + n] = p.grad.reshape(-1)
            off += n
        from mpi4py import MPI

        group.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        scale = flat.dtype.type(1.0 / group.size)
        off = 0
        for p in params:  # unpack and scale in one pass
            n = int(p.grad.size)
            np.multiply(flat[off : off + n].reshape(p.grad.shape), scale, out=p.grad)
            off += n
