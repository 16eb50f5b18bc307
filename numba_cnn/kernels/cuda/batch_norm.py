"""CUDA kernels for batch normalisation: per-channel block reductions + elementwise passes.

The op views every input as x (N, C, L). Per-channel statistics run one block per channel:
each thread sums a strided slice of the N*L values, then a shared-memory tree reduces them
(two passes, mean then squared deviations). Elementwise kernels are grid-stride loops over
the flat (N*C*L) arrays. Deterministic: no atomics.
"""

from __future__ import annotations

import functools
import math

import numba

from numba_cnn._cuda import SIMULATOR, cuda

RT = 256  # shared slots of the reductions: the largest block a reduction is launched with
TPB = 32 if SIMULATOR else 256  # threads per block (a power of two, <= RT)
MAX_BLOCKS = 4 if SIMULATOR else 1024  # elementwise grids stride beyond this


def _grid(n: int) -> int:
    return max(1, min(MAX_BLOCKS, math.ceil(n / TPB)))


@functools.cache
def _kernels(dtype: str):
    ft = getattr(numba, dtype)

    # x (N, C, L) -> mean, var (biased), invstd (C,); one block per channel, threads stride N*L
    def batch_stats(x, eps, mean, var, invstd):
        part = cuda.shared.array(RT, dtype=ft)
        c = cuda.blockIdx.x
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        L = x.shape[2]
        cnt = x.shape[0] * L
        s = ft(0)
        for i in range(t, cnt, nt):
            n = i // L
            s += x[n, c, i - n * L]
        part[t] = s
        cuda.syncthreads()  # all partial sums are stored before the tree reads them
        step = nt // 2
        while step > 0:
            if t < step:
                part[t] += part[t + step]
            cuda.syncthreads()  # this level is complete before the next one reads it
            step //= 2
        mu = part[0] / ft(cnt)
        cuda.syncthreads()  # every thread has read the mean before part is reused
        q = ft(0)
        for i in range(t, cnt, nt):
            n = i // L
            d = x[n, c, i - n * L] - mu
            q += d * d
        part[t] = q
        cuda.syncthreads()  # all partial sums of squares are stored
        step = nt // 2
        while step > 0:
            if t < step:
                part[t] += part[t + step]
            cuda.syncthreads()  # this level is complete before the next one reads it
            step //= 2
        if t == 0:
            v = part[0] / ft(cnt)
            mean[c] = mu
            var[c] = v
            invstd[c] = ft(1) / math.sqrt(v + ft(eps))

    # running_mean, running_var (C,) updated in place; mean, var (C,) of cnt values; grid-stride
    def update_running(running_mean, running_var, mean, var, momentum, cnt):
        unbias = ft(cnt) / ft(cnt - 1)
        mo = ft(momentum)
        for c in range(cuda.grid(1), mean.shape[0], cuda.gridsize(1)):
            running_mean[c] = (ft(1) - mo) * running_mean[c] + mo * mean[c]
            running_var[c] = (ft(1) - mo) * running_var[c] + mo * (var[c] * unbias)

    # running stats (C,) -> mean (C,) = running_mean, invstd (C,) = 1/sqrt(var + eps); grid-stride
    def eval_stats(running_mean, running_var, eps, mean, invstd):
        for c in range(cuda.grid(1), mean.shape[0], cuda.gridsize(1)):
            mean[c] = running_mean[c]
            invstd[c] = ft(1) / math.sqrt(running_var[c] + ft(eps))

    # x, y flat (N*C*L); mean, invstd, w, b (C,); y = (x - mean) * invstd * w + b; grid-stride
    def normalize(x, mean, invstd, w, b, C, L, y):
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            c = (i // L) % C
            y[i] = (x[i] - mean[c]) * (invstd[c] * w[c]) + b[c]

    # dy, x (N, C, L) -> dbias (C,) = sum dy, dweight (C,) = sum dy * xhat; one block per channel
    def backward_sums(dy, x, mean, invstd, dweight, dbias):
        pdy = cuda.shared.array(RT, dtype=ft)
        pdx = cuda.shared.array(RT, dtype=ft)
        c = cuda.blockIdx.x
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        L = x.shape[2]
        cnt = x.shape[0] * L
        mu = mean[c]
        sdy = ft(0)
        sdx = ft(0)
        for i in range(t, cnt, nt):
            n = i // L
            g = dy[n, c, i - n * L]
            sdy += g
            sdx += g * (x[n, c, i - n * L] - mu)
        pdy[t] = sdy
        pdx[t] = sdx
        cuda.syncthreads()  # all partial sums are stored before the tree reads them
        step = nt // 2
        while step > 0:
            if t < step:
                pdy[t] += pdy[t + step]
                pdx[t] += pdx[t + step]
            cuda.syncthreads()  # this level is complete before the next one reads it
            step //= 2
        if t == 0:
            dbias[c] = pdy[0]
            dweight[c] = pdx[0] * invstd[c]

    # dy, x, dx flat (N*C*L); per-channel (C,) stats, w and sums; grid-stride
    #   training: dx = w * invstd * (dy - dbias/cnt - xhat * dweight/cnt);  eval: w * invstd * dy
    def backward_dx(dy, x, mean, invstd, w, dweight, dbias, training, C, L, dx):
        cnt = ft(x.shape[0] // C)
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            c = (i // L) % C
            k = w[c] * invstd[c]
            if training:
                xh = (x[i] - mean[c]) * invstd[c]
                dx[i] = k * (dy[i] - dbias[c] / cnt - xh * dweight[c] / cnt)
            else:
                dx[i] = k * dy[i]

    fns = (batch_stats, update_running, eval_stats, normalize, backward_sums, backward_dx)
    return {f.__name__: cuda.jit(f) for f in fns}


def _k(a, name: str):
    return _kernels(a.dtype.name)[name]


def _normalize(x, mean, invstd, w, b, y) -> None:
    N, C, L = x.shape
    if y.size:
        _k(x, "normalize")[_grid(y.size), TPB](
            x.reshape(y.size), mean, invstd, w, b, int(C), int(L), y.reshape(y.size)
        )


# x (N, C, L) -> batch mean, var, invstd (C,) and y (N, C, L)
def train_forward(x, eps, w, b, mean, var, invstd, y) -> None:
    C = mean.shape[0]
    if C:
        _k(x, "batch_stats")[C, TPB](x, float(eps), mean, var, invstd)
    _normalize(x, mean, invstd, w, b, y)


# x (N, C, L); running stats (C,) -> mean, invstd (C,) and y (N, C, L)
def eval_forward(x, running_mean, running_var, eps, w, b, mean, invstd, y) -> None:
    C = mean.shape[0]
    if C:
        _k(mean, "eval_stats")[_grid(C), TPB](running_mean, running_var, float(eps), mean, invstd)
    _normalize(x, mean, invstd, w, b, y)


def update_running(running_mean, running_var, mean, var, momentum, cnt) -> None:
    C = mean.shape[0]
    if C:
        _k(mean, "update_running")[_grid(C), TPB](
            running_mean, running_var, mean, var, float(momentum), int(cnt)
        )


# dy, x (N, C, L); mean, invstd, w (C,) -> dx (N, C, L), dweight, dbias (C,)
def backward(dy, x, mean, invstd, w, training, dx, dweight, dbias) -> None:
    N, C, L = x.shape
    if C:
        _k(x, "backward_sums")[C, TPB](dy, x, mean, invstd, dweight, dbias)
    if dx.size:
        flat = dx.size
        _k(x, "backward_dx")[_grid(flat), TPB](
            dy.reshape(flat),
            x.reshape(flat),
            mean,
            invstd,
            w,
            dweight,
            dbias,
            bool(training),
            int(C),
            int(L),
            dx.reshape(flat),
        )


def ptx_specs() -> list[tuple[str, object, str]]:
    """Every batch-norm kernel the library launches, float32 and float64."""
    specs = []
    for dt in ("float32", "float64"):
        k = _kernels(dt)
        v, a3 = f"{dt}[::1]", f"{dt}[:, :, ::1]"  # vectors and flat arrays are both 1-D
        sigs = {
            "batch_stats": f"void({a3}, float64, {v}, {v}, {v})",
            "update_running": f"void({v}, {v}, {v}, {v}, float64, int64)",
            "eval_stats": f"void({v}, {v}, float64, {v}, {v})",
            "normalize": f"void({v}, {v}, {v}, {v}, {v}, int64, int64, {v})",
            "backward_sums": f"void({a3}, {a3}, {v}, {v}, {v}, {v})",
            "backward_dx": f"void({v}, {v}, {v}, {v}, {v}, {v}, {v}, boolean, int64, int64, {v})",
        }
        specs += [(f"{n}_{dt}", k[n].py_func, s) for n, s in sigs.items()]
    return specs
