"""``clip_grad_norm_``: rescale gradients so their global 2-norm is at most ``max_norm``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _cuda
from ..ops._common import kernels
from ._grad import flat
from .module import Parameter

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters: Parameter | Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients by ``min(max_norm / (total_norm + 1e-6), 1)`` in place, as
    ``torch.nn.utils.clip_grad_norm_``; returns ``total_norm`` (2-norm over all gradients, as
    if concatenated). On the GPU the norm and the factor stay on the device; only the returned
    float is copied back.

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
        return _clip_cuda(grads, max_norm, dt)
    K = kernels("cpu", "optim")
    total = math.sqrt(sum(float(K.sq_norm(flat(g))) for g in grads))
    coef = dt.type(max_norm) / (dt.type(total) + dt.type(1e-6))
    coef = min(coef, dt.type(1))
    for g in grads:
        np.multiply(g, coef, out=g)
    return total


def _clip_cuda(grads: list[Any], max_norm: float, dt: np.dtype) -> float:
    K = kernels("cuda", "optim")
    slots = [K.sq_norm_blocks(int(g.size))[0] for g in grads]
    part = _cuda.cuda.device_array(sum(slots), dtype=dt)
    slot = 0
    for g, n in zip(grads, slots, strict=True):
        K.sq_norm_partial(flat(g), part, slot)
        slot += n
    out = _cuda.cuda.device_array(2, dtype=dt)  # [sum of squares, clip factor]
    K.sq_norm_finish(part, out, dt.type(max_norm))
    for g in grads:
        K.scale_(flat(g), out, 1)
    return math.sqrt(float(out[0:1].copy_to_host()[0]))
