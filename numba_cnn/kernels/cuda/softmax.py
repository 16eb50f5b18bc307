"""CUDA softmax, log-softmax and cross-entropy: a group of threads per reduced line.

An input of any rank is viewed as ``(outer, D, inner)``; a line is ``x[o, :, j]``. A block of
``THREADS`` threads splits into ``R`` groups of ``G = THREADS / R`` threads, one line per
group: the launcher picks ``G`` as the power of two at or above ``D`` (capped at the block),
so 10 classes take 16 threads and 8 lines share a 128-thread block, while long lines keep a
whole block whose threads stride over ``D``. Lines with ``inner == 1`` (contiguous rows) put
a group's lanes on consecutive threads; otherwise the groups are interleaved (lane-major) so
that consecutive threads read consecutive lines ``j``: loads coalesce either way. Each group
reduces its max and sum with shared-memory trees (``_reduce``); all groups of a block share
the barriers. No atomics: every result is the same bits on every run.

Cross-entropy writes one loss per row and sums them into the mean in a fixed order: in the
same launch when one block covers the batch in at most ``FUSE_GROUPS`` passes, else in a
second one-block launch (same order, same bits). Labels arrive as int64 (``labels_int64``
casts other integer dtypes on the device); a label outside ``[0, C)`` is NOT reported by an
exception here (that would need a host sync): its row's loss and gradient are NaN, so the
mean loss is NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda, from_dtype, types

from ._reduce import MAX_32, block_sum, grid_start, grid_step, group_max, group_sum

THREADS = 32 if SIMULATOR else 128  # threads per block (a power of two: tree reductions)
LOG_T = THREADS.bit_length() - 1
MAX_BLOCKS = 4 if SIMULATOR else 65535  # line groups beyond are taken by block-stride
CAST_THREADS = 32 if SIMULATOR else 256
uint32 = types.uint32
FUSE_GROUPS = 8  # cross-entropy: ONE block (rows and mean) when the batch is <= 8 line groups


@functools.cache
def _kernels(ft) -> dict[str, Any]:
    """The softmax-family kernels for one numba float type ``ft``."""
    T = THREADS
    zero, one, ninf, nan = ft(0), ft(1), ft(-math.inf), ft(math.nan)
    inline = cuda.jit(device=True, inline="always")

    @inline
    def layout(gs, slow):
        # -> (lane, g, base, stride, G, R): this thread's lane in its group g of G = 2**gs
        # threads, the group's shared slots base + lane*stride, R groups per block
        t = uint32(cuda.threadIdx.x)
        G = uint32(1) << uint32(gs)
        rs = uint32(LOG_T - gs)
        R = uint32(1) << rs
        if slow:  # lane-major: consecutive threads hold consecutive groups
            g = t & (R - uint32(1))
            return t >> rs, g, g, R, G, R
        lane = t & (G - uint32(1))
        return lane, t >> uint32(gs), t - lane, uint32(1), G, R

    @inline
    def line_at(l0, g, a):
        # line l0 + g of a (outer, D, inner): (on, o, j); on = False past the last line
        inner = uint32(a.shape[2])
        line = uint32(l0 + g)
        o = line // inner
        return line < uint32(a.shape[0]) * inner, o, line - o * inner

    @inline
    def max_sum(x, o, j, on, lane, G, sm, base, stride):
        # line x[o, :, j] (on: the group has a line) -> (max, sum exp(x - max)) in every lane
        D = uint32(x.shape[1])
        m = ninf
        d = lane
        while on and d < D:
            v = x[o, d, j]
            if v > m or v != v:  # NaN wins: the line turns NaN
                m = v
            d = uint32(d + G)
        m = group_max(sm, base, stride, lane, G, m)
        s = zero
        d = lane
        while on and d < D:
            s += math.exp(x[o, d, j] - m)
            d = uint32(d + G)
        return m, group_sum(sm, base, stride, lane, G, s)

    @inline
    def mean_of(rows, sm):
        # rows (N,) -> mean, in every thread of the block; fixed order
        N = uint32(rows.shape[0])
        s = zero
        n = uint32(cuda.threadIdx.x)
        while n < N:
            s += rows[n]
            n = uint32(n + uint32(T))
        return block_sum(sm, s) / ft(N)

    @cuda.jit
    def softmax_fwd(x, y, log, gs, slow):
        # x, y (outer, D, inner): softmax (log != 0: log-softmax) of each line x[o, :, j];
        # R lines per block (see layout), block-stride over the outer*inner lines
        sm = cuda.shared.array(T, dtype=ft)
        lane, g, base, stride, G, R = layout(gs, slow)
        D = uint32(x.shape[1])
        nl = uint32(x.shape[0]) * uint32(x.shape[2])
        l0 = uint32(cuda.blockIdx.x) * R
        while l0 < nl:
            on, o, j = line_at(l0, g, x)
            m, s = max_sum(x, o, j, on, lane, G, sm, base, stride)
            ls = math.log(s) if on else zero  # (s > 0 on a line; the simulator's log(0) raises)
            inv = one / s if on else zero
            d = lane
            while on and d < D:
                v = x[o, d, j] - m
                y[o, d, j] = v - ls if log else math.exp(v) * inv
                d = uint32(d + G)
            l0 = uint32(l0 + uint32(cuda.gridDim.x) * R)

    @cuda.jit
    def softmax_bwd(dy, y, dx, log, gs, slow):
        # dy, y, dx (outer, D, inner), per line: softmax dx = y * (dy - sum(dy * y));
        # log-softmax dx = dy - exp(y) * sum(dy); lines as softmax_fwd
        sm = cuda.shared.array(T, dtype=ft)
        lane, g, base, stride, G, R = layout(gs, slow)
        D = uint32(y.shape[1])
        nl = uint32(y.shape[0]) * uint32(y.shape[2])
        l0 = uint32(cuda.blockIdx.x) * R
        while l0 < nl:
            on, o, j = line_at(l0, g, y)
            s = zero
            d = lane
            while on and d < D:
                s += dy[o, d, j] if log else dy[o, d, j] * y[o, d, j]
                d = uint32(d + G)
            s = group_sum(sm, base, stride, lane, G, s)
            d = lane
            while on and d < D:
                if log:
                    dx[o, d, j] = dy[o, d, j] - math.exp(y[o, d, j]) * s
                else:
                    dx[o, d, j] = y[o, d, j] * (dy[o, d, j] - s)
                d = uint32(d + G)
            l0 = uint32(l0 + uint32(cuda.gridDim.x) * R)

    @cuda.jit
    def ce_rows(x, labels, rows, loss, gs, fuse):
        # x (N, C, 1), labels (N,) int64, rows (N,), loss (1,): rows[n] = logsumexp(x[n]) -
        # x[n, label] (NaN for a label outside [0, C)); R rows per block; fuse (one block
        # only): also loss[0] = mean(rows)
        sm = cuda.shared.array(T, dtype=ft)
        lane, g, base, stride, G, R = layout(gs, 0)
        N = uint32(x.shape[0])
        C = x.shape[1]
        n0 = uint32(cuda.blockIdx.x) * R
        while n0 < N:
            n = uint32(n0 + g)
            on = n < N
            m, s = max_sum(x, n, 0, on, lane, G, sm, base, stride)
            if on and lane == 0:
                lab = labels[n]
                if lab >= 0 and lab < C:
                    rows[n] = (m - x[n, lab, 0]) + math.log(s)
                else:
                    rows[n] = nan
            n0 = uint32(n0 + uint32(cuda.gridDim.x) * R)
        if fuse:
            cuda.syncthreads()  # this block's row losses written before the mean reads them
            mean = mean_of(rows, sm)
            if cuda.threadIdx.x == 0:
                loss[0] = mean

    @cuda.jit
    def ce_mean(rows, loss):
        # rows (N,), loss (1,): loss[0] = mean(rows); ONE block, same order as fused ce_rows
        sm = cuda.shared.array(T, dtype=ft)
        mean = mean_of(rows, sm)
        if cuda.threadIdx.x == 0:
            loss[0] = mean

    @cuda.jit
    def ce_bwd(x, labels, dx, gs):
        # x, dx (N, C, 1), labels (N,) int64: dx[n] = (softmax(x[n]) - onehot(label)) / N
        # (a NaN row for a label outside [0, C)); R rows per block
        sm = cuda.shared.array(T, dtype=ft)
        lane, g, base, stride, G, R = layout(gs, 0)
        N = uint32(x.shape[0])
        C = uint32(x.shape[1])
        inv_n = one / ft(N)
        n0 = uint32(cuda.blockIdx.x) * R
        while n0 < N:
            n = uint32(n0 + g)
            on = n < N
            m, s = max_sum(x, n, 0, on, lane, G, sm, base, stride)
            lab = labels[n] if on else -1
            ok = lab >= 0 and lab < C
            scale = inv_n / s if on else zero
            c = lane
            while on and c < C:
                v = math.exp(x[n, c, 0] - m) * scale
                if c == lab:
                    v -= inv_n
                dx[n, c, 0] = v if ok else nan
                c = uint32(c + G)
            n0 = uint32(n0 + uint32(cuda.gridDim.x) * R)

    return {
        "softmax_fwd": softmax_fwd,
        "softmax_bwd": softmax_bwd,
        "ce_rows": ce_rows,
        "ce_mean": ce_mean,
        "ce_bwd": ce_bwd,
    }


@cuda.jit
def _cast_int64(src, dst):
    # src (n,) any integer dtype, dst (n,) int64; grid-stride, 32-bit index
    n = uint32(src.shape[0])
    i = grid_start()
    while i < n:
        dst[i] = types.int64(src[i])
        i = uint32(i + grid_step())


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


def group_shift(D: int) -> int:
    """log2 of the threads per line: the power of two at or above ``D``, at most THREADS."""
    return min(max(int(D) - 1, 0).bit_length(), LOG_T)


def _grid(lines: int, gs: int) -> int:
    per_block = THREADS >> gs
    return max(1, min(-(-lines // per_block), MAX_BLOCKS))


def _k(a: Any) -> dict[str, Any]:
    return _kernels(from_dtype(a.dtype))


def _check_size(a: Any) -> None:
    if a.size > MAX_32:
        raise ValueError(f"softmax: {a.size} elements exceed the CUDA kernels' {MAX_32}")


def softmax(x: Any, y: Any, log: bool) -> None:
    """x, y (outer, D, inner) device arrays: softmax (or log-softmax) over axis 1."""
    outer, D, inner = x.shape
    if x.size:
        _check_size(x)
        gs = group_shift(D)
        _k(x)["softmax_fwd"][_grid(outer * inner, gs), THREADS](x, y, int(log), gs, int(inner > 1))


def softmax_backward(dy: Any, y: Any, dx: Any, log: bool) -> None:
    """dy, y, dx (outer, D, inner): the backward of ``softmax`` over axis 1."""
    outer, D, inner = y.shape
    if y.size:
        _check_size(y)
        gs = group_shift(D)
        _k(y)["softmax_bwd"][_grid(outer * inner, gs), THREADS](
            dy, y, dx, int(log), gs, int(inner > 1)
        )


def labels_int64(labels: Any) -> Any:
    """Labels of any integer dtype as an int64 device array (cast by a kernel, no host trip;
    values that do not fit stay out of range)."""
    if np.dtype(labels.dtype) == np.int64:
        return labels
    n = labels.size
    out = _workspace(n, np.int64)
    if n:
        _check_size(labels)
        blocks = min(-(-n // CAST_THREADS), MAX_BLOCKS)
        _cast_int64[blocks, CAST_THREADS](labels.reshape(n), out)
    return out.reshape(labels.shape)


def cross_entropy(logits: Any, labels: Any, loss: Any) -> None:
    """logits (N, C), labels (N,) int64, loss (1,): the mean cross-entropy, on the device."""
    N, C = logits.shape
    _check_size(logits)
    ks = _k(logits)
    rows = _workspace(N, logits.dtype)
    gs = group_shift(C)
    fuse = -(-N // (THREADS >> gs)) <= FUSE_GROUPS  # one block covers the batch: mean too
    grid = 1 if fuse else _grid(N, gs)
    ks["ce_rows"][grid, THREADS](logits.reshape(N, C, 1), labels, rows, loss, gs, int(fuse))
    if not fuse:
        ks["ce_mean"][1, THREADS](rows, loss)


def cross_entropy_backward(logits: Any, labels: Any, dx: Any) -> None:
    """logits, dx (N, C), labels (N,) int64: dlogits = (softmax - onehot) / N."""
    N, C = logits.shape
    _check_size(logits)
    gs = group_shift(C)
    _k(logits)["ce_bwd"][_grid(N, gs), THREADS](
        logits.reshape(N, C, 1), labels, dx.reshape(N, C, 1), gs
    )


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every kernel specialisation the launchers above use, for ``ptx_report``."""
    specs = [
        (f"cast_int64_{t}", _cast_int64.py_func, f"void({t}[::1], int64[::1])")
        for t in LABEL_DTYPES
    ]
    for name in ("float32", "float64"):
        ks = _kernels(getattr(types, name))
        a3 = f"{name}[:, :, ::1]"
        a1 = f"{name}[::1]"
        lab = "int64[::1]"
        i2 = "int64, int64"
        specs += [
            (f"softmax_fwd_{name}", ks["softmax_fwd"].py_func, f"void({a3}, {a3}, int64, {i2})"),
            (
                f"softmax_bwd_{name}",
                ks["softmax_bwd"].py_func,
                f"void({a3}, {a3}, {a3}, int64, {i2})",
            ),
            (f"ce_rows_{name}", ks["ce_rows"].py_func, f"void({a3}, {lab}, {a1}, {a1}, {i2})"),
            (f"ce_mean_{name}", ks["ce_mean"].py_func, f"void({a1}, {a1})"),
            (f"ce_bwd_{name}", ks["ce_bwd"].py_func, f"void({a3}, {lab}, {a3}, int64)"),
        ]
    return specs
