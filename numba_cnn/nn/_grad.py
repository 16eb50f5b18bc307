"""In-place gradient arithmetic on host or device arrays (``grad += g``, zeroing, scaling),
dispatched to ``numba_cnn.kernels.{cpu,cuda}.optim``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _cuda
from ..ops._common import kernels


def device_of(a: Any) -> str:
    return "cuda" if _cuda.is_device_array(a) else "cpu"


def flat(a: Any) -> Any:
    """A flat view of a C-contiguous host or device array."""
    return a.reshape(a.size)


def add_(a: Any, b: Any) -> None:
    """``a += b`` in place (same shape, dtype and device)."""
    if device_of(a) != device_of(b):
        raise TypeError(f"grad is on {device_of(a)} but the new gradient is on {device_of(b)}")
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"gradient shape {tuple(a.shape)} != new gradient {tuple(b.shape)}")
    if device_of(a) == "cuda":
        kernels("cuda", "optim").add_(flat(a), flat(_cuda.as_device_array(b)))
    else:
        np.add(a, b, out=a)


def zero_(a: Any) -> None:
    """``a[...] = 0`` in place."""
    if device_of(a) == "cuda":
        kernels("cuda", "optim").fill_(flat(a), np.dtype(a.dtype).type(0))
    else:
        a[...] = 0


def scale_(a: Any, s: float) -> None:
    """``a *= s`` in place (``s`` a host number; on the GPU a launch argument: no upload)."""
    dt = np.dtype(a.dtype).type
    if device_of(a) == "cuda":
        kernels("cuda", "optim").mul_(flat(a), dt(s))
    else:
        np.multiply(a, dt(s), out=a)
