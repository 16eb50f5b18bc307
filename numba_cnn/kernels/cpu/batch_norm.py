"""CPU kernels for batch normalisation, parallel over channels.

The op views every input as x (N, C, L) with L = H*W (1 for (N, C) inputs). Each channel is
handled start to finish by one thread (statistics, then the elementwise pass), so its N*L
values are read from memory once and revisited from cache. Per-channel sums run in two passes
(mean, then squared deviations) with float64 accumulators, so float32 inputs with a large mean
keep their variance. The reductions may be reassociated (``fastmath={"reassoc", "contract"}``:
no finite-math assumption, NaN still propagates), which lets LLVM vectorise them (6-10x the
serial sum). Measured (2 cores, float32, training): (64, 16, 14, 14) forward 42 us, backward
40 us (torch 2 threads: 138 and 31 us); (64, 32, 32, 32) forward 0.20 ms, backward 0.41 ms
(torch: 1.33 and 0.51 ms).
"""

from __future__ import annotations

import math

from numba import njit, prange

from ._serial import serial_twin
from ._threads import use_parallel

_REDUCE = {"reassoc", "contract"}


# x (N, C, L) -> mean (C,), var (C,) biased, invstd (C,) = 1/sqrt(var + eps);
# y (N, C, L) = (x - mean) * invstd * w + b; prange over C
@njit(cache=True, parallel=True, fastmath=_REDUCE)
def _train_forward(x, eps, w, b, mean, var, invstd, y):
    N, C, L = x.shape
    cnt = N * L
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for l in range(L):
                s += x[n, c, l]
        mu = s / cnt
        q = 0.0
        for n in range(N):
            for l in range(L):
                d = x[n, c, l] - mu
                q += d * d
        v = q / cnt
        k = 1.0 / math.sqrt(v + eps)
        mean[c] = mu
        var[c] = v
        invstd[c] = k
        _normalize_channel(x, c, mean[c], invstd[c] * w[c], b[c], y)


# x (N, C, L) -> y[:, c, :] = (x[:, c, :] - mu) * scale + shift
@njit(cache=True)
def _normalize_channel(x, c, mu, scale, shift, y):
    N, _, L = x.shape
    for n in range(N):
        for l in range(L):
            y[n, c, l] = (x[n, c, l] - mu) * scale + shift


# running stats (C,) -> mean (C,) = running_mean, invstd (C,) = 1/sqrt(running_var + eps);
# y (N, C, L) = (x - mean) * invstd * w + b; prange over N*C planes
@njit(cache=True, parallel=True)
def _eval_forward(x, running_mean, running_var, eps, w, b, mean, invstd, y):
    N, C, L = x.shape
    for c in range(C):
        mean[c] = running_mean[c]
        invstd[c] = 1.0 / math.sqrt(running_var[c] + eps)
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        mu = mean[c]
        scale = invstd[c] * w[c]
        shift = b[c]
        for l in range(L):
            y[n, c, l] = (x[n, c, l] - mu) * scale + shift


# running_mean, running_var (C,) updated in place from the batch mean and biased var over cnt
@njit(cache=True)
def update_running(running_mean, running_var, mean, var, momentum, cnt):
    unbias = cnt / (cnt - 1.0)
    for c in range(mean.shape[0]):
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c]
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * (var[c] * unbias)


# dy, x (N, C, L); mean, invstd, w (C,) -> dbias (C,) = sum dy, dweight (C,) = sum dy * xhat,
#   dx (N, C, L): training: w * invstd * (dy - dbias/cnt - xhat * dweight/cnt)
#                 eval:     w * invstd * dy   (the statistics are constants); prange over C
@njit(cache=True, parallel=True, fastmath=_REDUCE)
def _backward(dy, x, mean, invstd, w, training, dx, dweight, dbias):
    N, C, L = x.shape
    cnt = N * L
    for c in prange(C):
        mu = mean[c]
        sdy = 0.0
        sdyx = 0.0
        for n in range(N):
            for l in range(L):
                g = dy[n, c, l]
                sdy += g
                sdyx += g * (x[n, c, l] - mu)
        dbias[c] = sdy
        dweight[c] = sdyx * invstd[c]
        k = w[c] * invstd[c]
        if training:
            _dx_train_channel(dy, x, c, mu, k, dbias[c] / cnt, dweight[c] * invstd[c] / cnt, dx)
        else:
            for n in range(N):
                for l in range(L):
                    dx[n, c, l] = k * dy[n, c, l]


# dx[:, c, :] = k * (dy - mdy - (x - mu) * mdyx)
@njit(cache=True)
def _dx_train_channel(dy, x, c, mu, k, mdy, mdyx, dx):
    N, _, L = x.shape
    for n in range(N):
        for l in range(L):
            dx[n, c, l] = k * (dy[n, c, l] - mdy - (x[n, c, l] - mu) * mdyx)


_SERIAL = {k: serial_twin(k) for k in (_train_forward, _eval_forward, _backward)}


def _pick(kernel, size: int):
    """The parallel kernel, or its serial twin for small work or one thread."""
    return kernel if use_parallel(size) else _SERIAL[kernel]


def train_forward(x, eps, w, b, mean, var, invstd, y) -> None:
    """Batch statistics of x (N, C, L) and y normalised with them (see ``_train_forward``)."""
    _pick(_train_forward, x.size)(x, eps, w, b, mean, var, invstd, y)


def eval_forward(x, running_mean, running_var, eps, w, b, mean, invstd, y) -> None:
    """y normalised with the running statistics (see ``_eval_forward``)."""
    _pick(_eval_forward, x.size)(x, running_mean, running_var, eps, w, b, mean, invstd, y)


def backward(dy, x, mean, invstd, w, training, dx, dweight, dbias) -> None:
    """dx, dweight, dbias of batch norm (see ``_backward``)."""
    _pick(_backward, x.size)(dy, x, mean, invstd, w, training, dx, dweight, dbias)


__all__ = ["train_forward", "eval_forward", "update_running", "backward"]
