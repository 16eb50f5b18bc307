"""CUDA elementwise activations: one grid-stride kernel per function and float dtype.

Launchers take C-contiguous device arrays of any rank (viewed flat) and preallocated outputs.
Index math is unsigned 32-bit (``_reduce.grid_start``/``grid_step``, while loops: a ``range``
loop would compute its trip count with a 64-bit division); arrays above ``MAX_32`` elements
are launched in flat slices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda, from_dtype, types

from ._reduce import MAX_32, grid_start, grid_step

uint32 = types.uint32
THREADS = 32 if SIMULATOR else 256
MAX_BLOCKS = 4 if SIMULATOR else 2048  # grid-stride loops cover the rest


@functools.cache
def _kernels(ft) -> dict[str, Any]:
    """The activation kernels for one numba float type ``ft``."""
    zero = ft(0)
    one = ft(1)

    @cuda.jit
    def relu(x, y):
        # x, y (n,): y = x if x > 0 else 0 (NaN stays NaN); grid-stride over n
        n = uint32(x.shape[0])
        i = grid_start()
        while i < n:
            v = x[i]
            y[i] = zero if v <= zero else v
            i = uint32(i + grid_step())

    @cuda.jit
    def relu_backward(dy, x, dx):
        # dy, x, dx (n,): dx = dy where x > 0, else 0
        n = uint32(dy.shape[0])
        i = grid_start()
        while i < n:
            dx[i] = dy[i] if x[i] > zero else zero
            i = uint32(i + grid_step())

    @cuda.jit
    def leaky_relu(x, y, slope):
        # x, y (n,): y = x if x > 0 else slope * x
        n = uint32(x.shape[0])
        i = grid_start()
        while i < n:
            v = x[i]
            y[i] = slope * v if v <= zero else v
            i = uint32(i + grid_step())

    @cuda.jit
    def leaky_relu_backward(dy, x, dx, slope):
        # dy, x, dx (n,): dx = dy if x > 0 else slope * dy
        n = uint32(dy.shape[0])
        i = grid_start()
        while i < n:
            g = dy[i]
            dx[i] = g if x[i] > zero else slope * g
            i = uint32(i + grid_step())

    @cuda.jit
    def sigmoid(x, y):
        # x, y (n,): y = 1 / (1 + exp(-x)) via exp(-|x|), no overflow for either sign
        n = uint32(x.shape[0])
        i = grid_start()
        while i < n:
            v = x[i]
            e = math.exp(-abs(v))
            r = one / (one + e)
            y[i] = r if v >= zero else e * r
            i = uint32(i + grid_step())

    @cuda.jit
    def sigmoid_backward(dy, y, dx):
        # dy, y, dx (n,): dx = dy * y * (1 - y)
        n = uint32(dy.shape[0])
        i = grid_start()
        while i < n:
            v = y[i]
            dx[i] = dy[i] * v * (one - v)
            i = uint32(i + grid_step())

    @cuda.jit
    def tanh(x, y):
        # x, y (n,): y = tanh(x)
        n = uint32(x.shape[0])
        i = grid_start()
        while i < n:
            y[i] = math.tanh(x[i])
            i = uint32(i + grid_step())

    @cuda.jit
    def tanh_backward(dy, y, dx):
        # dy, y, dx (n,): dx = dy * (1 - y^2)
        n = uint32(dy.shape[0])
        i = grid_start()
        while i < n:
            v = y[i]
            dx[i] = dy[i] * (one - v * v)
            i = uint32(i + grid_step())

    return {
        "relu": relu,
        "relu_backward": relu_backward,
        "leaky_relu": leaky_relu,
        "leaky_relu_backward": leaky_relu_backward,
        "sigmoid": sigmoid,
        "sigmoid_backward": sigmoid_backward,
        "tanh": tanh,
        "tanh_backward": tanh_backward,
    }


_ARGS = {  # kernel name -> (number of array arguments, takes a slope)
    "relu": (2, False),
    "relu_backward": (3, False),
    "leaky_relu": (2, True),
    "leaky_relu_backward": (3, True),
    "sigmoid": (2, False),
    "sigmoid_backward": (3, False),
    "tanh": (2, False),
    "tanh_backward": (3, False),
}


def _launch(name: str, *arrays: Any, slope: float | None = None) -> None:
    n = arrays[0].size
    if n == 0:
        return
    dtype = np.dtype(arrays[0].dtype)
    k = _kernels(from_dtype(dtype))[name]
    flat = [a.reshape(n) for a in arrays]
    extra = () if slope is None else (dtype.type(slope),)
    for lo in range(0, n, MAX_32):  # one launch below 2**31 elements
        m = min(n - lo, MAX_32)
        part = flat if m == n else [a[lo : lo + m] for a in flat]
        k[min(-(-m // THREADS), MAX_BLOCKS), THREADS](*part, *extra)


def relu(x: Any, y: Any) -> None:
    _launch("relu", x, y)


def relu_backward(dy: Any, x: Any, dx: Any) -> None:
    _launch("relu_backward", dy, x, dx)


def leaky_relu(x: Any, y: Any, negative_slope: float) -> None:
    _launch("leaky_relu", x, y, slope=negative_slope)


def leaky_relu_backward(dy: Any, x: Any, dx: Any, negative_slope: float) -> None:
    _launch("leaky_relu_backward", dy, x, dx, slope=negative_slope)


def sigmoid(x: Any, y: Any) -> None:
    _launch("sigmoid", x, y)


def sigmoid_backward(dy: Any, y: Any, dx: Any) -> None:
    _launch("sigmoid_backward", dy, y, dx)


def tanh(x: Any, y: Any) -> None:
    _launch("tanh", x, y)


def tanh_backward(dy: Any, y: Any, dx: Any) -> None:
    _launch("tanh_backward", dy, y, dx)


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every kernel specialisation the launchers above use, for ``ptx_report``."""
    specs = []
    for name in ("float32", "float64"):
        ks = _kernels(getattr(types, name))
        a = f"{name}[::1]"
        for kname, (narr, slope) in _ARGS.items():
            args = ", ".join([a] * narr + ([name] if slope else []))
            specs.append((f"{kname}_{name}", ks[kname].py_func, f"void({args})"))
    return specs
