"""CUDA softmax, log-softmax and cross-entropy: one block per reduced line.

An input of any rank is viewed as ``(outer, D, inner)``; a line is ``x[o, :, j]``. Each block
takes lines ``blockIdx.x, blockIdx.x + gridDim.x, ...``; its threads stride over ``D`` by
``THREADS`` (any ``D`` works) and combine their partial max and sum with shared-memory tree
reductions. No atomics: every result is the same bits on every run.

Cross-entropy writes one loss per row, then a single block sums them in a fixed order into the
mean. Labels arrive as int64 (``labels_int64`` casts other integer dtypes on the device); a
label outside ``[0, C)`` is NOT reported by an exception here (that would need a host sync):
its row's loss and gradient are NaN, so the mean loss is NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda

THREADS = 16 if SIMULATOR else 128  # threads per block (a power of two: tree reductions)
MAX_BLOCKS = 4 if SIMULATOR else 65535  # lines beyond are taken by block-stride
CAST_THREADS = 32 if SIMULATOR else 256


@functools.cache
def _kernels(ft) -> dict[str, Any]:
    """The softmax-family kernels for one numba float type ``ft``."""
    T = THREADS
    zero = ft(0)
    one = ft(1)
    ninf = ft(-math.inf)
    nan = ft(math.nan)

    @cuda.jit
    def softmax_fwd(x, y, log):
        # x, y (outer, D, inner): softmax (log != 0: log-softmax) of each line x[o, :, j];
        # one block per line (block-stride over outer*inner lines), threads stride over D
        sm = cuda.shared.array(T, dtype=ft)
        tid = cuda.threadIdx.x
        outer, D, inner = x.shape
        for line in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = line // inner
            j = line - o * inner
            m = ninf
            for d in range(tid, D, T):
                v = x[o, d, j]
                if v > m:
                    m = v
            sm[tid] = m
            cuda.syncthreads()  # partial maxima stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h and sm[tid + h] > sm[tid]:
                    sm[tid] = sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            m = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            s = zero
            for d in range(tid, D, T):
                s += math.exp(x[o, d, j] - m)
            sm[tid] = s
            cuda.syncthreads()  # partial sums stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h:
                    sm[tid] += sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            s = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            if log:
                ls = math.log(s)
                for d in range(tid, D, T):
                    y[o, d, j] = (x[o, d, j] - m) - ls
            else:
                inv = one / s
                for d in range(tid, D, T):
                    y[o, d, j] = math.exp(x[o, d, j] - m) * inv

    @cuda.jit
    def softmax_bwd(dy, y, dx, log):
        # dy, y, dx (outer, D, inner), per line: softmax dx = y * (dy - sum(dy * y));
        # log-softmax dx = dy - exp(y) * sum(dy); blocks and threads as softmax_fwd
        sm = cuda.shared.array(T, dtype=ft)
        tid = cuda.threadIdx.x
        outer, D, inner = y.shape
        for line in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = line // inner
            j = line - o * inner
            s = zero
            for d in range(tid, D, T):
                s += dy[o, d, j] if log else dy[o, d, j] * y[o, d, j]
            sm[tid] = s
            cuda.syncthreads()  # partial sums stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h:
                    sm[tid] += sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            s = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            for d in range(tid, D, T):
                if log:
                    dx[o, d, j] = dy[o, d, j] - math.exp(y[o, d, j]) * s
                else:
                    dx[o, d, j] = y[o, d, j] * (dy[o, d, j] - s)

    @cuda.jit
    def ce_rows(x, labels, rows):
        # x (N, C), labels (N,) int64, rows (N,): rows[n] = logsumexp(x[n]) - x[n, label]
        # (NaN for a label outside [0, C)); one block per row, threads stride over C
        sm = cuda.shared.array(T, dtype=ft)
        tid = cuda.threadIdx.x
        N, C = x.shape
        for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
            m = ninf
            for c in range(tid, C, T):
                v = x[n, c]
                if v > m:
                    m = v
            sm[tid] = m
            cuda.syncthreads()  # partial maxima stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h and sm[tid + h] > sm[tid]:
                    sm[tid] = sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            m = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            s = zero
            for c in range(tid, C, T):
                s += math.exp(x[n, c] - m)
            sm[tid] = s
            cuda.syncthreads()  # partial sums stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h:
                    sm[tid] += sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            s = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            if tid == 0:
                lab = labels[n]
                if lab >= 0 and lab < C:
                    rows[n] = (m - x[n, lab]) + math.log(s)
                else:
                    rows[n] = nan

    @cuda.jit
    def ce_mean(rows, loss):
        # rows (N,), loss (1,): loss[0] = mean(rows); launched as ONE block, fixed order
        sm = cuda.shared.array(T, dtype=ft)
        tid = cuda.threadIdx.x
        N = rows.shape[0]
        s = zero
        for n in range(tid, N, T):
            s += rows[n]
        sm[tid] = s
        cuda.syncthreads()  # partial sums stored before the tree reads them
        h = T // 2
        while h > 0:
            if tid < h:
                sm[tid] += sm[tid + h]
            cuda.syncthreads()  # this level written before the next one reads it
            h //= 2
        s = sm[0]
        cuda.syncthreads()  # all threads read sm[0] before sm is reused
        if tid == 0:
            loss[0] = s / ft(N)

    @cuda.jit
    def ce_bwd(x, labels, dx):
        # x, dx (N, C), labels (N,) int64: dx[n] = (softmax(x[n]) - onehot(label)) / N
        # (a NaN row for a label outside [0, C)); one block per row, threads stride over C
        sm = cuda.shared.array(T, dtype=ft)
        tid = cuda.threadIdx.x
        N, C = x.shape
        inv_n = one / ft(N)
        for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
            m = ninf
            for c in range(tid, C, T):
                v = x[n, c]
                if v > m:
                    m = v
            sm[tid] = m
            cuda.syncthreads()  # partial maxima stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h and sm[tid + h] > sm[tid]:
                    sm[tid] = sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            m = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            s = zero
            for c in range(tid, C, T):
                s += math.exp(x[n, c] - m)
            sm[tid] = s
            cuda.syncthreads()  # partial sums stored before the tree reads them
            h = T // 2
            while h > 0:
                if tid < h:
                    sm[tid] += sm[tid + h]
                cuda.syncthreads()  # this level written before the next one reads it
                h //= 2
            s = sm[0]
            cuda.syncthreads()  # all threads read sm[0] before sm is reused
            lab = labels[n]
            ok = lab >= 0 and lab < C
            scale = inv_n / s
            for c in range(tid, C, T):
                g = math.exp(x[n, c] - m) * scale
                if c == lab:
                    g -= inv_n
                dx[n, c] = g if ok else nan

    return {
        "softmax_fwd": softmax_fwd,
        "softmax_bwd": softmax_bwd,
        "ce_rows": ce_rows,
        "ce_mean": ce_mean,
        "ce_bwd": ce_bwd,
    }


@cuda.jit
def _cast_int64(src, dst):
    # src (n,) any integer dtype, dst (n,) int64; grid-stride
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = numba.int64(src[i])


LABEL_DTYPES = ("int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64")
_scratch: dict[np.dtype, Any] = {}


def _workspace(n: int, dtype: Any) -> Any:
    """n elements of device scratch: one grow-only buffer per dtype (launches are ordered on
    one stream, so the next call never overlaps the previous user)."""
    dtype = np.dtype(dtype)
    buf = _scratch.get(dtype)
    if buf is None or buf.size < n:
        buf = cuda.device_array(max(n, 1), dtype=dtype)
        _scratch[dtype] = buf
    return buf[:n]


def _blocks(lines: int) -> int:
    return max(1, min(lines, MAX_BLOCKS))


def _k(a: Any) -> dict[str, Any]:
    return _kernels(numba.from_dtype(np.dtype(a.dtype)))


def softmax(x: Any, y: Any, log: bool) -> None:
    """x, y (outer, D, inner) device arrays: softmax (or log-softmax) over axis 1."""
    outer, D, inner = x.shape
    if x.size:
        _k(x)["softmax_fwd"][_blocks(outer * inner), THREADS](x, y, int(log))


def softmax_backward(dy: Any, y: Any, dx: Any, log: bool) -> None:
    """dy, y, dx (outer, D, inner): the backward of ``softmax`` over axis 1."""
    outer, D, inner = y.shape
    if y.size:
        _k(y)["softmax_bwd"][_blocks(outer * inner), THREADS](dy, y, dx, int(log))


def labels_int64(labels: Any) -> Any:
    """Labels of any integer dtype as an int64 device array (cast by a kernel, no host trip;
    values that do not fit stay out of range)."""
    if np.dtype(labels.dtype) == np.int64:
        return labels
    n = labels.size
    out = _workspace(n, np.int64)
    if n:
        blocks = min(-(-n // CAST_THREADS), MAX_BLOCKS)
        _cast_int64[blocks, CAST_THREADS](labels.reshape(n), out)
    return out.reshape(labels.shape)


def cross_entropy(logits: Any, labels: Any, loss: Any) -> None:
    """logits (N, C), labels (N,) int64, loss (1,): the mean cross-entropy, on the device."""
    N = logits.shape[0]
    ks = _k(logits)
    rows = _workspace(N, logits.dtype)
    ks["ce_rows"][_blocks(N), THREADS](logits, labels, rows)
    ks["ce_mean"][1, THREADS](rows, loss)


def cross_entropy_backward(logits: Any, labels: Any, dx: Any) -> None:
    """logits, dx (N, C), labels (N,) int64: dlogits = (softmax - onehot) / N."""
    _k(logits)["ce_bwd"][_blocks(logits.shape[0]), THREADS](logits, labels, dx)


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every kernel specialisation the launchers above use, for ``ptx_report``."""
    specs = [
        (f"cast_int64_{t}", _cast_int64.py_func, f"void({t}[::1], int64[::1])")
        for t in LABEL_DTYPES
    ]
    for name in ("float32", "float64"):
        ks = _kernels(getattr(numba, name))
        a3 = f"{name}[:, :, ::1]"
        a2 = f"{name}[:, ::1]"
        a1 = f"{name}[::1]"
        lab = "int64[::1]"
        specs += [
            (f"softmax_fwd_{name}", ks["softmax_fwd"].py_func, f"void({a3}, {a3}, int64)"),
            (f"softmax_bwd_{name}", ks["softmax_bwd"].py_func, f"void({a3}, {a3}, {a3}, int64)"),
            (f"ce_rows_{name}", ks["ce_rows"].py_func, f"void({a2}, {lab}, {a1})"),
            (f"ce_mean_{name}", ks["ce_mean"].py_func, f"void({a1}, {a1})"),
            (f"ce_bwd_{name}", ks["ce_bwd"].py_func, f"void({a2}, {lab}, {a2})"),
        ]
    return specs
