"""CUDA conv2d launchers: implicit-GEMM forward and data gradient, split-K weight gradient.

The op (``numba_cnn.ops.conv2d``) validates and allocates; these launchers pick the grids and
scratch buffers and launch the kernels of ``conv2d_fwd``, ``conv2d_bwd`` and ``conv2d_dw``. All
arrays are C-contiguous device arrays of one float dtype; ``stride``, ``pad`` (top, left) and
``dilation`` are pairs of Python ints (bottom/right padding is implied by the output size).

GEMM tiling (forward, data and weight gradient): 16x16 threads per block, a 64x64 output
tile per block, a 4x4 register tile per thread, reduction slices of 16 staged in shared
memory. Depthwise convolutions (one input and one output channel per group) use per-element
kernels instead. Results are deterministic: no atomics anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numba_cnn._cuda import cuda

from .conv2d_bwd import backward_weight_kernel, finalize_kernel
from .conv2d_dw import (
    NTHREADS,
    dw_backward_data_kernel,
    dw_backward_weight_kernel,
    dw_forward_kernel,
)
from .conv2d_fwd import BK, BM, BN, TX, TY, backward_data_kernel, forward_kernel

__all__ = ["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight", "ptx_specs"]

#: Split-K: aim for this many blocks in the weight-gradient GEMM (two waves on a 132-SM GPU),
#: but give no block less than MIN_CHUNK terms of the N*P*Q reduction.
TARGET_BLOCKS = 264
MIN_CHUNK = 64
DW_MIN_CHUNK = 1024  # depthwise weight gradient: at least 4 terms per thread of a block
SUM_THREADS = 256  # threads per block of the partial-sum kernel
EW_THREADS = 256  # threads per block of the depthwise elementwise kernels
EW_MAX_BLOCKS = 8192  # grid-stride beyond this many blocks

_placeholders: dict[np.dtype, Any] = {}
_scratch: dict[np.dtype, Any] = {}
_taps: dict[tuple[int, ...], Any] = {}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _placeholder(dtype: np.dtype) -> Any:
    """A 1-element device array passed where an optional array (bias, db) is absent."""
    if dtype not in _placeholders:
        _placeholders[dtype] = cuda.device_array(1, dtype=dtype)
    return _placeholders[dtype]


def _workspace(shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """A device scratch array of ``shape``, carved from one grow-only buffer per dtype (the
    kernels run in order on one stream, so a launch never overlaps the previous user)."""
    size = int(np.prod(shape))
    buf = _scratch.get(dtype)
    if buf is None or buf.size < size:
        buf = cuda.device_array(max(size, 1), dtype=dtype)
        _scratch[dtype] = buf
    return buf[:size].reshape(shape)


def _tap_table(outer: int, R: int, S: int, dilation: tuple[int, int]) -> Any:
    """Device table (4, outer*R*S) int32 decoding a reduction index l = (o, r, s) into
    o, r*S + s, r*dh, s*dw, so the gathers divide nothing; cached per geometry."""
    key = (outer, R, S, *dilation)
    if key not in _taps:
        o, r, s = np.meshgrid(np.arange(outer), np.arange(R), np.arange(S), indexing="ij")
        tab = np.stack([o, r * S + s, r * dilation[0], s * dilation[1]]).reshape(4, -1)
        _taps[key] = cuda.to_device(np.ascontiguousarray(tab, dtype=np.int32))
    return _taps[key]


def _depthwise(w: Any, groups: int) -> bool:
    """One input and one output channel per group: the per-element kernels of conv2d_dw."""
    return w.shape[1] == 1 and w.shape[0] == groups


def _ew_grid(n: int) -> int:
    return max(1, min(_cdiv(n, EW_THREADS), EW_MAX_BLOCKS))


def conv2d_forward(x, w, b, y, stride, pad, dilation, groups) -> None:
    """y = conv2d(x, w) + b. x (N,C,H,W); w (K,C/groups,R,S); b (K,) or None; y (N,K,P,Q)."""
    N = x.shape[0]
    K, Cg, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    if y.size == 0:
        return
    dtype = np.dtype(x.dtype)
    has_bias = b is not None
    bias = b if has_bias else _placeholder(dtype)
    if _depthwise(w, groups):
        dw_forward_kernel(dtype)[_ew_grid(y.size), EW_THREADS](
            x, w, bias, int(has_bias), y, *stride, *pad, *dilation
        )
        return
    grid = (_cdiv(N * P * Q, BM), _cdiv(K // groups, BN), groups)
    forward_kernel(dtype)[grid, (TX, TY)](
        x,
        w.reshape(K, Cg * R * S),
        _tap_table(Cg, R, S, dilation),
        bias,
        int(has_bias),
        y,
        groups,
        *stride,
        *pad,
    )


def conv2d_backward_data(dy, w, dx, stride, pad, dilation, groups) -> None:
    """dx = the transposed convolution of dy. dy (N,K,P,Q); w (K,C/g,R,S); dx (N,C,H,W)."""
    N, C, H, W = dx.shape
    K, Cg, R, S = w.shape
    if dx.size == 0:
        return
    if _depthwise(w, groups):
        dw_backward_data_kernel(np.dtype(dx.dtype))[_ew_grid(dx.size), EW_THREADS](
            dy, w, dx, *stride, *pad, *dilation
        )
        return
    grid = (_cdiv(N * H * W, BM), _cdiv(Cg, BN), groups)
    backward_data_kernel(np.dtype(dx.dtype))[grid, (TX, TY)](
        dy, w.reshape(K, Cg, R * S), _tap_table(K // groups, R, S, dilation), dx, *stride, *pad
    )


def _chunking(M: int, tiles: int, min_chunk: int | None = None, align: int = BK) -> tuple[int, int]:
    """(chunk, number of chunks) splitting a reduction of M terms across blocks: enough
    chunks for TARGET_BLOCKS blocks, none under ``min_chunk`` terms (default MIN_CHUNK),
    chunk a multiple of ``align``."""
    if M == 0:
        return align, 0
    min_chunk = MIN_CHUNK if min_chunk is None else min_chunk
    n = max(1, min(_cdiv(TARGET_BLOCKS, tiles), _cdiv(M, min_chunk)))
    chunk = _cdiv(_cdiv(M, n), align) * align
    return chunk, _cdiv(M, chunk)


def conv2d_backward_weight(dy, x, dw, db, stride, pad, dilation, groups) -> None:
    """dw (and db = dy.sum((0, 2, 3)) when db is not None). dy (N,K,P,Q); x (N,C,H,W);
    dw (K,C/g,R,S); db (K,) or None."""
    N, K, P, Q = dy.shape
    _, Cg, R, S = dw.shape
    dtype = np.dtype(dw.dtype)
    L = Cg * R * S
    Le = L + (db is not None)
    if K * Le == 0:
        return
    if _depthwise(dw, groups):
        chunk, nch = _chunking(N * P * Q, K, DW_MIN_CHUNK, 1)
        part = _workspace((nch, K, Le), dtype)
        if nch:
            dw_backward_weight_kernel(dtype)[(K, nch), NTHREADS](
                dy, x, part, R, S, chunk, *stride, *pad, *dilation
            )
        _sum_partials(part, dw, db, K, L, dtype)
        return
    tiles = _cdiv(K // groups, BM) * _cdiv(Le, BN) * groups
    chunk, nch = _chunking(N * P * Q, tiles)
    part = _workspace((nch, K, Le), dtype)
    if nch:
        grid = (_cdiv(K // groups, BM), _cdiv(Le, BN), groups * nch)
        backward_weight_kernel(dtype)[grid, (TX, TY)](
            dy, x, part, R, S, groups, chunk, *stride, *pad, *dilation
        )
    _sum_partials(part, dw, db, K, L, dtype)


def _sum_partials(part, dw, db, K: int, L: int, dtype: np.dtype) -> None:
    """dw (and db) = part summed over its chunks, in chunk order."""
    blocks = min(_cdiv(part.shape[1] * part.shape[2], SUM_THREADS), 4096)
    finalize_kernel(dtype)[blocks, SUM_THREADS](
        part, dw.reshape(K, L), db if db is not None else _placeholder(dtype)[:0]
    )


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """(name, kernel function, Numba signature) of every kernel the launchers use."""
    specs = []
    for name in ("float32", "float64"):
        dt = np.dtype(name)
        a1, a2, a3, a4 = (f"{name}[{', '.join([':'] * (d - 1) + ['::1'])}]" for d in range(1, 5))
        i4, i5, i6 = (", ".join(["int64"] * n) for n in (4, 5, 6))
        specs += [
            (
                f"conv2d_fwd_{name}",
                forward_kernel(dt).py_func,
                f"void({a4}, {a2}, int32[:, ::1], {a1}, int64, {a4}, {i5})",
            ),
            (
                f"conv2d_bwd_data_{name}",
                backward_data_kernel(dt).py_func,
                f"void({a4}, {a3}, int32[:, ::1], {a4}, {i4})",
            ),
            (
                f"conv2d_bwd_weight_{name}",
                backward_weight_kernel(dt).py_func,
                f"void({a4}, {a4}, {a3}, int64, int64, int64, int64, {i6})",
            ),
            (
                f"conv2d_dw_fwd_{name}",
                dw_forward_kernel(dt).py_func,
                f"void({a4}, {a4}, {a1}, int64, {a4}, {i6})",
            ),
            (
                f"conv2d_dw_bwd_data_{name}",
                dw_backward_data_kernel(dt).py_func,
                f"void({a4}, {a4}, {a4}, {i6})",
            ),
            (
                f"conv2d_dw_bwd_weight_{name}",
                dw_backward_weight_kernel(dt).py_func,
                f"void({a4}, {a4}, {a3}, int64, int64, int64, {i6})",
            ),
            (
                f"conv2d_bwd_weight_sum_{name}",
                finalize_kernel(dt).py_func,
                f"void({a3}, {a2}, {a1})",
            ),
        ]
    return specs
