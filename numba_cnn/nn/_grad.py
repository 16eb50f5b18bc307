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


class RunningSum:
    """``sum(value * n)`` over 0-d host or device arrays (batch losses), kept where they are:
    on the GPU one one-thread-grid kernel per ``add`` into a device accumulator, no host read
    until ``take()``.

    >>> r = RunningSum(); r.add(np.float32(0.5), 4); r.add(np.array(0.25), 2); r.take()
    (2.5, 6)
    """

    def __init__(self) -> None:
        self._acc: Any = None  # (1,) float64 on the device
        self._host = 0.0
        self.count = 0

    def add(self, value: Any, n: int) -> None:
        if device_of(value) == "cuda":
            if self._acc is None:
                from ..ops._common import zeros

                self._acc = zeros((1,), np.float64, "cuda")
            v = _cuda.as_device_array(value)
            kernels("cuda", "optim").axpy_(self._acc, v.reshape(1), float(n))
        else:
            self._host += float(value) * n
        self.count += int(n)

    def take(self) -> tuple[float, int]:
        """``(sum, count)`` so far (one device read on the GPU), and start again from zero."""
        total, count = self._host, self.count
        if self._acc is not None:
            total += float(_cuda.to_host(self._acc)[0])
            self._acc = None
        self._host, self.count = 0.0, 0
        return total, count
