"""CUDA kernels for batch normalisation: several blocks per channel, two launches per pass.

The op views every input as x (N, C, L). Channel c's ``cnt = N*L`` values, flat index
``i = n*L + l``, are cut into ``S`` chunks; the grid is (C, S), one block per chunk. Threads
walk their chunk with 32-bit ``(n, l)`` counters advanced by a precomputed ``divmod(T, L)``:
no division per element, and consecutive threads read consecutive ``l``.

- training forward: ``bn_partial`` writes each chunk's mean and M2 (sum of squared deviations
  from the chunk's own mean: two passes over the chunk, no cancellation) to ``part (C, S, 2)``;
  ``bn_apply`` merges the S partials of its channel in a fixed order (Chan et al.'s pairwise
  formula) in every block, then normalises its chunk. Block (c, 0) also writes mean, var,
  invstd and updates the running statistics (unbiased variance), so there is no third launch.
- eval forward: ``bn_apply`` alone, with the running statistics (one launch).
- backward: ``bn_bwd_partial`` writes each chunk's sum dy and sum dy*(x - mean);
  ``bn_bwd_apply`` adds the S partials in a fixed order, block (c, 0) writes dweight and dbias,
  and every block writes its chunk of dx.
Deterministic: every sum has a fixed order, no atomics.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda, types

from ._reduce import MAX_32, block_sum, tree_sum2, udivmod

TPB = 32 if SIMULATOR else 256  # threads per block (a power of two: tree reductions)
EPT = 2 if SIMULATOR else 8  # elements per thread below which a channel is not split further
uint32 = types.uint32
MAX_SPLITS = 4 if SIMULATOR else 32  # chunks per channel (merged sequentially by one thread)


@functools.cache
def _kernels(dtype: str) -> dict[str, Any]:
    ft = getattr(types, dtype)
    zero, one = ft(0), ft(1)
    inline = cuda.jit(device=True, inline="always")

    @inline
    def walk(L, chunk):
        # this thread's start in the block's chunk of channel blockIdx.x: (i, end, n, l, qT, rT)
        s = uint32(cuda.blockIdx.y)
        t = uint32(cuda.threadIdx.x)
        start = s * uint32(chunk)
        i = uint32(start + t)
        Lp = max(uint32(L), uint32(1))  # (L = 0: an empty chunk, no division by zero)
        n, l = udivmod(i, Lp)
        qT, rT = udivmod(cuda.blockDim.x, Lp)
        return i, n, l, qT, rT

    @inline
    def step(i, n, l, qT, rT, L):
        # (i, n, l) advanced by blockDim.x elements, 32-bit, no division
        l = uint32(l + rT)
        n = uint32(n + qT)
        if l >= L:
            l = uint32(l - L)
            n = uint32(n + 1)
        return uint32(i + cuda.blockDim.x), n, l

    @inline
    def chunk_end(cnt, chunk):
        return min(uint32(cuda.blockIdx.y + 1) * uint32(chunk), uint32(cnt))

    @cuda.jit
    def bn_partial(x, chunk, part):
        # x (N, C, L); part (C, S, 2): mean and M2 of chunk blockIdx.y of channel blockIdx.x
        sm = cuda.shared.array(TPB, dtype=ft)
        c = cuda.blockIdx.x
        L = uint32(x.shape[2])
        end = chunk_end(x.shape[0] * L, chunk)
        i, n, l, qT, rT = walk(L, chunk)
        acc = zero
        while i < end:
            acc += x[n, c, l]
            i, n, l = step(i, n, l, qT, rT, L)
        cnt_s = end - uint32(cuda.blockIdx.y) * uint32(chunk)
        mu = block_sum(sm, acc) / ft(cnt_s)
        i, n, l, qT, rT = walk(L, chunk)
        acc = zero
        while i < end:
            d = x[n, c, l] - mu
            acc += d * d
            i, n, l = step(i, n, l, qT, rT, L)
        m2 = block_sum(sm, acc)
        if cuda.threadIdx.x == 0:
            part[c, cuda.blockIdx.y, 0] = mu
            part[c, cuda.blockIdx.y, 1] = m2

    @cuda.jit
    def bn_apply(x, chunk, part, run_m, run_v, w, b, eps, momentum, mode, mean, var, invstd, y):
        # x, y (N, C, L); part (C, S, 2); (C,) vectors; grid (C, S) as bn_partial; mode bits:
        # 1 training (merge part), 2/16 update running mean/var, 4/8 weight/bias given
        st = cuda.shared.array(3, dtype=ft)
        c = cuda.blockIdx.x
        L = uint32(x.shape[2])
        cnt = uint32(x.shape[0]) * L
        if cuda.threadIdx.x == 0:
            if mode & 1:
                ch = uint32(chunk)
                na = ft(min(ch, cnt))
                mu = part[c, 0, 0]
                m2 = part[c, 0, 1]
                for s in range(1, cuda.gridDim.y):  # Chan's pairwise merge, fixed order
                    nb = ft(min(ch, cnt - uint32(s) * ch))
                    nab = na + nb
                    d = part[c, s, 0] - mu
                    f = nb / nab
                    mu += d * f
                    m2 += part[c, s, 1] + d * d * na * f
                    na = nab
                v = m2 / ft(cnt)
            else:
                mu = run_m[c]
                v = run_v[c]
            inv = one / math.sqrt(v + ft(eps))
            st[0] = mu
            st[1] = inv * w[c] if mode & 4 else inv
            st[2] = b[c] if mode & 8 else zero
            if cuda.blockIdx.y == 0:
                mean[c] = mu
                invstd[c] = inv
                if mode & 1:
                    var[c] = v
                mo = ft(momentum)
                if mode & 2:
                    run_m[c] = (one - mo) * run_m[c] + mo * mu
                if mode & 16:
                    unbias = ft(cnt) / ft(cnt - 1)
                    run_v[c] = (one - mo) * run_v[c] + mo * (v * unbias)
        cuda.syncthreads()  # the channel's statistics are in st before any thread reads them
        mu, k, sh = st[0], st[1], st[2]
        end = chunk_end(cnt, chunk)
        i, n, l, qT, rT = walk(L, chunk)
        while i < end:
            y[n, c, l] = (x[n, c, l] - mu) * k + sh
            i, n, l = step(i, n, l, qT, rT, L)

    @cuda.jit
    def bn_bwd_partial(dy, x, mean, chunk, part):
        # dy, x (N, C, L); part (C, S, 2): sum dy and sum dy * (x - mean) of each chunk
        sa = cuda.shared.array(TPB, dtype=ft)
        sb = cuda.shared.array(TPB, dtype=ft)
        c = cuda.blockIdx.x
        t = cuda.threadIdx.x
        L = uint32(x.shape[2])
        end = chunk_end(x.shape[0] * L, chunk)
        mu = mean[c]
        i, n, l, qT, rT = walk(L, chunk)
        a = zero
        q = zero
        while i < end:
            g = dy[n, c, l]
            a += g
            q += g * (x[n, c, l] - mu)
            i, n, l = step(i, n, l, qT, rT, L)
        sa[t] = a
        sb[t] = q
        cuda.syncthreads()  # all partials stored before the trees read them
        tree_sum2(sa, sb, 0, 1, t, cuda.blockDim.x)
        if t == 0:
            part[c, cuda.blockIdx.y, 0] = sa[0]
            part[c, cuda.blockIdx.y, 1] = sb[0]

    @cuda.jit
    def bn_bwd_apply(dy, x, mean, invstd, w, chunk, part, mode, dweight, dbias, dx):
        # dy, x, dx (N, C, L); grid (C, S); mode bits: 1 training (through the batch stats),
        # 4 weight given. training: dx = k*(dy - sum dy/cnt - xhat*dweight/cnt), k = w*invstd;
        # eval: dx = k*dy. Block (c, 0) writes dbias = sum dy, dweight = invstd*sum dy*(x-mean)
        st = cuda.shared.array(3, dtype=ft)
        c = cuda.blockIdx.x
        L = uint32(x.shape[2])
        cnt = uint32(x.shape[0]) * L
        if cuda.threadIdx.x == 0:
            sdy = part[c, 0, 0]
            sdx = part[c, 0, 1]
            for s in range(1, cuda.gridDim.y):  # fixed order
                sdy += part[c, s, 0]
                sdx += part[c, s, 1]
            inv = invstd[c]
            dw_c = sdx * inv
            if cuda.blockIdx.y == 0:
                dbias[c] = sdy
                dweight[c] = dw_c
            st[0] = inv * w[c] if mode & 4 else inv
            st[1] = sdy / ft(max(cnt, 1))
            st[2] = dw_c / ft(max(cnt, 1))
        cuda.syncthreads()  # the channel's sums are in st before any thread reads them
        k, mdy, mdx = st[0], st[1], st[2]
        mu = mean[c]
        inv = invstd[c]
        end = chunk_end(cnt, chunk)
        i, n, l, qT, rT = walk(L, chunk)
        while i < end:
            g = dy[n, c, l]
            if mode & 1:
                g = g - mdy - (x[n, c, l] - mu) * inv * mdx
            dx[n, c, l] = k * g
            i, n, l = step(i, n, l, qT, rT, L)

    fns = (bn_partial, bn_apply, bn_bwd_partial, bn_bwd_apply)
    return {f.py_func.__name__: f for f in fns}


def _k(a: Any, name: str) -> Any:
    return _kernels(np.dtype(a.dtype).name)[name]


def split(N: int, L: int) -> tuple[int, int]:
    """(chunk, S): each channel's N*L values cut into S chunks of ``chunk`` (the last shorter)."""
    cnt = max(N * L, 1)
    S = max(1, min(MAX_SPLITS, cnt // (TPB * EPT)))
    chunk = -(-cnt // S)
    return chunk, -(-cnt // chunk)


_work: dict[Any, Any] = {}  # grow-only device scratch per dtype; launches are stream-ordered


def _part(C: int, S: int, dtype: Any) -> Any:
    key = np.dtype(dtype)
    buf = _work.get(key)
    if buf is None or buf.size < C * S * 2:
        buf = cuda.device_array(max(C * S * 2, 64), dtype=key)
        _work[key] = buf
    return buf[: C * S * 2].reshape(C, S, 2)


def _one(dtype: Any) -> Any:
    """A 1-element placeholder for absent vectors (never read)."""
    key = ("one", np.dtype(dtype))
    if key not in _work:
        _work[key] = cuda.device_array(1, dtype=np.dtype(dtype))
    return _work[key]


def _apply(x, chunk, S, part, rm, rv, w, b, eps, momentum, mode, mean, var, invstd, y) -> None:
    if x.size > MAX_32:
        raise ValueError(f"batch_norm: {x.size} elements exceed the CUDA kernels' {MAX_32}")
    ph = _one(x.dtype)
    mode |= (4 if w is not None else 0) | (8 if b is not None else 0)
    args = [a if a is not None else ph for a in (rm, rv, w, b)]
    _k(x, "bn_apply")[(x.shape[1], S), TPB](
        x, chunk, part, *args, float(eps), float(momentum), mode, mean, var, invstd, y
    )


def train_forward(x, eps, w, b, mean, var, invstd, y, running=None) -> None:
    """x (N, C, L) -> batch mean, var, invstd (C,) and y; ``w``/``b`` may be None (ones,
    zeros); ``running = (running_mean, running_var, momentum)`` updates them in the same
    launch (either may be None)."""
    N, C, L = x.shape
    if not C or not x.size:
        return
    chunk, S = split(N, L)
    part = _part(C, S, x.dtype)
    _k(x, "bn_partial")[(C, S), TPB](x, chunk, part)
    rm, rv, mo = running if running is not None else (None, None, 0.0)
    mode = 1 | (2 if rm is not None else 0) | (16 if rv is not None else 0)
    _apply(x, chunk, S, part, rm, rv, w, b, eps, mo, mode, mean, var, invstd, y)


def eval_forward(x, running_mean, running_var, eps, w, b, mean, invstd, y) -> None:
    """x (N, C, L); running stats (C,) -> mean, invstd (C,) and y (N, C, L): one launch."""
    N, C, L = x.shape
    if not C:
        return
    chunk, S = split(N, L)
    ph = _one(x.dtype)
    part = _part(1, 1, x.dtype)  # not read in eval
    _apply(x, chunk, S, part, running_mean, running_var, w, b, eps, 0.0, 0, mean, ph, invstd, y)


def backward(dy, x, mean, invstd, w, training, dx, dweight, dbias) -> None:
    """dy, x (N, C, L); mean, invstd, w (C,; w may be None) -> dx (N, C, L), dweight, dbias."""
    N, C, L = x.shape
    if not C:
        return
    if x.size > MAX_32:
        raise ValueError(f"batch_norm: {x.size} elements exceed the CUDA kernels' {MAX_32}")
    chunk, S = split(N, L)
    part = _part(C, S, x.dtype)
    _k(x, "bn_bwd_partial")[(C, S), TPB](dy, x, mean, chunk, part)
    mode = (1 if training else 0) | (4 if w is not None else 0)
    _k(x, "bn_bwd_apply")[(C, S), TPB](
        dy, x, mean, invstd, w if w is not None else _one(x.dtype), chunk, part, mode,
        dweight, dbias, dx,
    )  # fmt: skip


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every batch-norm kernel the library launches, float32 and float64."""
    specs = []
    for dt in ("float32", "float64"):
        k = _kernels(dt)
        v, a3 = f"{dt}[::1]", f"{dt}[:, :, ::1]"
        sigs = {
            "bn_partial": f"void({a3}, int64, {a3})",
            "bn_apply": f"void({a3}, int64, {a3}, {v}, {v}, {v}, {v}, float64, float64, int64, "
            f"{v}, {v}, {v}, {a3})",
            "bn_bwd_partial": f"void({a3}, {a3}, {v}, int64, {a3})",
            "bn_bwd_apply": f"void({a3}, {a3}, {v}, {v}, {v}, int64, {a3}, int64, {v}, {v}, {a3})",
        }
        specs += [(f"{n}_{dt}", k[n].py_func, s) for n, s in sigs.items()]
    return specs
