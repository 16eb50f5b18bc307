"""Elementwise activations on the CPU: one ``prange`` loop over a flat view each (a serial
twin of each for small arrays).

Launchers take C-contiguous arrays of any rank and preallocated outputs of the same shape.
Arithmetic stays in the input dtype (constants are made with ``x.dtype.type``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._serial import serial_twin
from ._threads import use_parallel

_JIT = dict(cache=True, parallel=True, error_model="numpy")


# x (n,); y (n,): y = x if x > 0 else 0 (NaN stays NaN, as torch.relu)
@njit(**_JIT)
def _relu(x, y):
    zero = x.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        y[i] = zero if v <= zero else v


# dy, x, dx (n,): dx = dy where x > 0, else 0 (0 at x == 0). dy is read whatever x: read
# only where x > 0, LLVM made the load a masked one (vmaskmovps), and the loop ran 25%
# slower on the AMD EPYC (two threads, 2M float32: 1.39 -> 1.06 ms)
@njit(**_JIT)
def _relu_backward(dy, x, dx):
    zero = dy.dtype.type(0)
    for i in prange(dy.size):
        g = dy[i]
        dx[i] = g if x[i] > zero else zero


# x, y (n,): y = x if x > 0 else slope * x
@njit(**_JIT)
def _leaky_relu(x, y, slope):
    zero = x.dtype.type(0)
    a = x.dtype.type(slope)
    for i in prange(x.size):
        v = x[i]
        y[i] = a * v if v <= zero else v


# dy, x, dx (n,): dx = dy if x > 0 else slope * dy
@njit(**_JIT)
def _leaky_relu_backward(dy, x, dx, slope):
    zero = dy.dtype.type(0)
    a = dy.dtype.type(slope)
    for i in prange(dy.size):
        g = dy[i]
        dx[i] = g if x[i] > zero else a * g


# x, y (n,): y = 1 / (1 + exp(-x)) via exp(-|x|) so neither sign overflows
@njit(**_JIT)
def _sigmoid(x, y):
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    for i in prange(x.size):
        v = x[i]
        e = math.exp(-abs(v))
        r = one / (one + e)
        y[i] = r if v >= zero else e * r


# dy, y, dx (n,): dx = dy * y * (1 - y)
@njit(**_JIT)
def _sigmoid_backward(dy, y, dx):
    one = y.dtype.type(1)
    for i in prange(dy.size):
        v = y[i]
        dx[i] = dy[i] * v * (one - v)


# x, y (n,): y = tanh(x)
@njit(**_JIT)
def _tanh(x, y):
    for i in prange(x.size):
        y[i] = math.tanh(x[i])


# dy, y, dx (n,): dx = dy * (1 - y^2)
@njit(**_JIT)
def _tanh_backward(dy, y, dx):
    one = y.dtype.type(1)
    for i in prange(dy.size):
        v = y[i]
        dx[i] = dy[i] * (one - v * v)


_KERNELS = (
    _relu,
    _relu_backward,
    _leaky_relu,
    _leaky_relu_backward,
    _sigmoid,
    _sigmoid_backward,
    _tanh,
    _tanh_backward,
)
_SERIAL = {k: serial_twin(k) for k in _KERNELS}


def _run(kernel, *arrays: np.ndarray, slope: float | None = None) -> None:
    """Launch on flat views; the serial twin for small work or one thread (``use_parallel``)."""
    flat = [a.reshape(-1) for a in arrays]
    k = kernel if use_parallel(flat[0].size) else _SERIAL[kernel]
    if slope is None:
        k(*flat)
    else:
        k(*flat, float(slope))


def relu(x: np.ndarray, y: np.ndarray) -> None:
    _run(_relu, x, y)


def relu_backward(dy: np.ndarray, x: np.ndarray, dx: np.ndarray) -> None:
    _run(_relu_backward, dy, x, dx)


def leaky_relu(x: np.ndarray, y: np.ndarray, negative_slope: float) -> None:
    _run(_leaky_relu, x, y, slope=negative_slope)


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, dx: np.ndarray, negative_slope: float):
    _run(_leaky_relu_backward, dy, x, dx, slope=negative_slope)


def sigmoid(x: np.ndarray, y: np.ndarray) -> None:
    _run(_sigmoid, x, y)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray, dx: np.ndarray) -> None:
    _run(_sigmoid_backward, dy, y, dx)


def tanh(x: np.ndarray, y: np.ndarray) -> None:
    _run(_tanh, x, y)


def tanh_backward(dy: np.ndarray, y: np.ndarray, dx: np.ndarray) -> None:
    _run(_tanh_backward, dy, y, dx)
