"""``clip_grad_norm_``: rescale gradients so their global 2-norm is at most ``max_norm``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _cuda
from ..ops._common import empty, kernels
from ._grad import flat
from .module import Parameter

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters: Parameter | Iterable[Parameter], max_norm: float) -> Any:
    """Scale all gradients by ``min(max_norm / (total_norm + 1e-6), 1)`` in place, as
    ``torch.nn.utils.clip_grad_norm_``; returns ``total_norm`` (2-norm over all gradients, as
    if concatenated): a float on the CPU; on the GPU, as PyTorch, a 0-d device array (the
    norm and the factor never leave the device: 3 launches, no sync; ``float(nc.to_host(n))``
    reads it).

    >>> import numpy as np
    >>> p = Parameter(np.zeros(2, np.float32)); p.grad = np.float32([3, 4])
    >>> clip_grad_norm_([p], 1.0), p.grad.astype(float).round(4).tolist()
    (5.0, [0.6, 0.8])
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    max_norm = float(max_norm)
    if not grads:
        return 0.0
    devices = {"cuda" if _cuda.is_device_array(g) else "cpu" for g in grads}
    if len(devices) > 1:
        raise TypeError("clip_grad_norm_: gradients mix host and device arrays")
    dtypes = {np.dtype(g.dtype) for g in grads}
    if len(dtypes) > 1:
        raise TypeError(f"clip_grad_norm_: gradients mix dtypes {sorted(map(str, dtypes))}")
    dt = dtypes.pop()
    if devices.pop() == "cuda":
        return _clip_cuda([flat(g) for g in grads], max_norm, dt)
    K = kernels("cpu", "optim")
    total = math.sqrt(sum(float(K.sq_norm(flat(g))) for g in grads))
    coef = dt.type(max_norm) / (dt.type(total) + dt.type(1e-6))
    coef = min(coef, dt.type(1))
    for g in grads:
        np.multiply(g, coef, out=g)
    return total


_WORKSPACE: dict[tuple[str, int], Any] = {}  # (dtype, partial sums) -> device scratch


def _clip_cuda(grads: list[Any], max_norm: float, dt: np.dtype) -> Any:
    K = kernels("cuda", "optim")
    n_part = K.sq_norm_parts([int(g.size) for g in grads])
    ws = _WORKSPACE.get((dt.str, n_part))
    if ws is None:  # the partial sums and [unused, factor]: allocated once per size
        ws = _WORKSPACE[(dt.str, n_part)] = _cuda.cuda.device_array(n_part + 2, dtype=dt)
    part, out = ws[:n_part], ws[n_part:]
    norm = empty((1,), dt, "cuda")
    K.sq_norm_multi(grads, part)
    K.sq_norm_finish(part, out, norm, dt.type(max_norm))
    K.scale_multi(grads, out, 1)
    return norm.reshape(())
