"""CUDA conv2d launchers: implicit-GEMM forward and data gradient, split-K weight gradient.

The op (``numba_cnn.ops.conv2d``) validates and allocates; these launchers pick the grids and
scratch buffers and launch the kernels of ``conv2d_fwd``, ``conv2d_bwd`` and ``conv2d_dw``. All
arrays are C-contiguous device arrays of one float dtype; ``stride``, ``pad`` (top, left) and
``dilation`` are pairs of Python ints (bottom/right padding is implied by the output size).

GEMM tiling (forward, data and weight gradient): the one core of ``_gemm_core`` (8x8 outputs
per thread on 128x128 / 128x64 tiles, 8x4 on 64x32 for small layers, 4x4 for float64; the
launcher picks the tile with ``pick_tile``). Depthwise convolutions (one input and one output
channel per group) use per-element kernels instead. Results are deterministic: no atomics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numba_cnn._cuda import cuda

from ._gemm_core import TILES, jit_options, pick_tile
from .conv2d_bwd import backward_weight_kernel, finalize_kernel
from .conv2d_dw import (
    NTHREADS,
    dw_backward_data_kernel,
    dw_backward_weight_kernel,
    dw_forward_kernel,
)
from .conv2d_fwd import BIAS, backward_data_kernel, forward_kernel

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
_taps_cache: dict[tuple, Any] = {}


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


#: tap tables are padded to a multiple of every slice and every tile width (no l < L tests)
_SLICE = max(max(t.bk, t.bn) for tiles in TILES.values() for t in tiles)
_FAR = 2**30  # the tap shift of a padding entry: every bounds test fails


def _taps64(Cg: int, R: int, S: int, H: int, W: int, dilation: tuple[int, int]) -> Any:
    """The forward's table (L padded to whole slices,) int64: ``_taps`` packed as
    offset | (s*dw << 32) | (r*dh << 48), one 64-bit load per gathered value."""
    key = ("fwd64", Cg, R, S, H, W, *dilation)
    if key not in _taps_cache:
        tab = _taps_host(Cg, R, S, H, W, dilation).astype(np.int64)
        packed = (tab[0] & 0xFFFFFFFF) | (np.minimum(tab[2], 0xFFFF) << 32)
        packed |= np.minimum(tab[1], 0x7FFF) << 48
        _taps_cache[key] = cuda.to_device(np.ascontiguousarray(packed))
    return _taps_cache[key]


def _taps_host(Cg: int, R: int, S: int, H: int, W: int, dilation: tuple[int, int]) -> Any:
    c, r, s = np.meshgrid(np.arange(Cg), np.arange(R), np.arange(S), indexing="ij")
    rd, sd = r * dilation[0], s * dilation[1]
    tab = np.stack([(c * H + rd) * W + sd, rd, sd]).reshape(3, -1)
    pad = np.array([[0], [_FAR], [_FAR]]).repeat(-tab.shape[1] % _SLICE, axis=1)
    return np.concatenate([tab, pad], axis=1)  # whole slices: the gathers test no l < L


def _taps(Cg: int, R: int, S: int, H: int, W: int, dilation: tuple[int, int]) -> Any:
    """Device table (3, Cg*R*S) int32: reduction index l = (c, r, s) -> input offset
    (c*H + r*dh)*W + s*dw, r*dh, s*dw, so the gathers divide nothing; cached per geometry."""
    key = ("fwd", Cg, R, S, H, W, *dilation)
    if key not in _taps_cache:
        tab = _taps_host(Cg, R, S, H, W, dilation)
        _taps_cache[key] = cuda.to_device(np.ascontiguousarray(tab, dtype=np.int32))
    return _taps_cache[key]


def _phase_taps(Kg, Cg, R, S, H, W, P, Q, stride, pad, dilation) -> tuple[Any, Any, Any]:
    """Data-gradient tables per stride phase (ha, wb) (pixels h = ha + sh*i, w = wb + sw*j):
    taps (phases, Lmax) int64: l = (k, r, s) over the phase's valid taps -> dy offset
    k*P*Q + pr*Q + qs | (qs + BIAS) << 32 | (pr + BIAS) << 48, where the dy row of pixel i is
    pr + i (pr = (ha + ph - r*dh) / sh, exact); wtab (phases, Lmax) int32: weight offset
    k*Cg*R*S + r*S + s; phase (phases, 5) int32: tap count L, ha, wb, Ha, Wb. Cached."""
    key = ("bwd", Kg, Cg, R, S, H, W, P, Q, *stride, *pad, *dilation)
    if key not in _taps_cache:
        (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
        rows, phase = [], []
        for ha in range(sh):
            rs = [(r, (ha + ph - r * dh) // sh) for r in range(R) if (ha + ph - r * dh) % sh == 0]
            for wb in range(sw):
                ss = [
                    (t, (wb + pw - t * dw) // sw) for t in range(S) if (wb + pw - t * dw) % sw == 0
                ]
                tab = [
                    (k * P * Q + pr * Q + qs, pr, qs, (k * Cg * R + r) * S + t)
                    for k in range(Kg)
                    for r, pr in rs
                    for t, qs in ss
                ]
                rows.append(tab)
                Ha, Wb = max(0, -(-(H - ha) // sh)), max(0, -(-(W - wb) // sw))
                phase.append((len(tab), ha, wb, Ha, Wb))
        lmax = _cdiv(max(1, max(len(t) for t in rows)), _SLICE) * _SLICE
        pad_entry = np.uint64(0xFFFF << 48 | 0xFFFF << 32).view(np.int64)  # the top bit is set
        taps = np.full((len(rows), lmax), pad_entry, dtype=np.int64)
        wtab = np.zeros((len(rows), lmax), dtype=np.int32)  # past a phase's taps: huge pr, qs
        for i, tab in enumerate(rows):
            if tab:
                t = np.array(tab, dtype=np.int64).T
                b = BIAS
                taps[i, : t.shape[1]] = (t[0] & 0xFFFFFFFF) | (t[2] + b) << 32 | (t[1] + b) << 48
                wtab[i, : t.shape[1]] = t[3]
        phase_ = cuda.to_device(np.array(phase, dtype=np.int32))
        _taps_cache[key] = (cuda.to_device(taps), cuda.to_device(wtab), phase_)
    return _taps_cache[key]


def _check_size(op: str, *arrays: Any) -> None:
    """The kernels index with unsigned 32-bit offsets: refuse arrays of 2**31 elements or more."""
    for a in arrays:
        if a is not None and a.size >= 2**31:
            raise ValueError(f"{op}: an array of shape {tuple(a.shape)} has 2**31 elements or more")


def _flat(a: Any) -> Any:
    return a.reshape(a.size)


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
    _check_size("conv2d", x, w, y)
    if x.shape[2] + pad[0] >= 2**15 or x.shape[3] + pad[1] >= 2**15:
        raise ValueError(
            f"conv2d: x {tuple(x.shape)} with padding {pad}: the CUDA kernels take "
            "H + padding and W + padding below 32768"
        )
    H, W = x.shape[2], x.shape[3]
    Kg = K // groups
    tile = pick_tile(dtype, N * P * Q, Kg, groups)
    grid = (_cdiv(N * P * Q, tile.bm), _cdiv(Kg, tile.bn), groups)
    dims = (N, x.shape[1], H, W, K, Kg, Cg, Cg * R * S, P, Q, *stride, *pad)
    forward_kernel(dtype, tile.name)[grid, tile.threads](
        _flat(x), _flat(w), _taps64(Cg, R, S, H, W, dilation), bias, int(has_bias), _flat(y), dims
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
    _check_size("conv2d_backward", dy, w, dx)
    P, Q = dy.shape[2], dy.shape[3]
    dtype = np.dtype(dx.dtype)
    Kg = K // groups
    if max((R - 1) * dilation[0], (S - 1) * dilation[1], *pad) >= BIAS or max(P, Q) >= 2**15:
        raise ValueError(
            f"conv2d_backward: weight {tuple(w.shape)}, dilation {dilation}, padding {pad}, dy "
            f"{tuple(dy.shape)}: the CUDA data gradient takes (R-1)*dh, (S-1)*dw and padding "
            f"below {BIAS}, P and Q below 32768"
        )
    taps, wtab, phase = _phase_taps(Kg, Cg, R, S, H, W, P, Q, stride, pad, dilation)
    nph = stride[0] * stride[1]
    rows = N * _cdiv(H, stride[0]) * _cdiv(W, stride[1])  # phase (0, 0) has the most pixels
    tile = pick_tile(dtype, rows, Cg, groups * nph)
    grid = (_cdiv(rows, tile.bm), _cdiv(Cg, tile.bn), groups * nph)
    dims = (N, C, H, W, K, Kg, Cg, P, Q, R * S, *stride)
    backward_data_kernel(dtype, tile.name)[grid, tile.threads](
        _flat(dy), _flat(w), taps, wtab, phase, _flat(dx), dims
    )


def _chunking(M: int, tiles: int, min_chunk: int | None = None, align: int = 8) -> tuple[int, int]:
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
    _check_size("conv2d_backward", dy, x, dw)
    Kg = K // groups
    tile = pick_tile(dtype, Kg, Le, TARGET_BLOCKS)  # the chunks fill the GPU: shape alone
    tiles = _cdiv(Kg, tile.bm) * _cdiv(Le, tile.bn) * groups
    chunk, nch = _chunking(N * P * Q, tiles, align=tile.bk)
    part = _workspace((nch, K, Le), dtype)
    if nch:
        H, W = x.shape[2], x.shape[3]
        grid = (_cdiv(Kg, tile.bm), _cdiv(Le, tile.bn), groups * nch)
        dims = (N, x.shape[1], H, W, K, Kg, Cg, P, Q, L, Le, nch, chunk, *stride, *pad)
        backward_weight_kernel(dtype, tile.name)[grid, tile.threads](
            _flat(dy), _flat(x), _taps64(Cg, R, S, H, W, dilation), _flat(part), dims
        )
    _sum_partials(part, dw, db, K, L, dtype)


def _sum_partials(part, dw, db, K: int, L: int, dtype: np.dtype) -> None:
    """dw (and db) = part summed over its chunks, in chunk order."""
    blocks = min(_cdiv(part.shape[1] * part.shape[2], SUM_THREADS), 4096)
    finalize_kernel(dtype)[blocks, SUM_THREADS](
        part, dw.reshape(K, L), db if db is not None else _placeholder(dtype)[:0]
    )


_GEMMS = ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight")


def ptx_specs() -> list[tuple]:
    """(name, kernel function, Numba signature[, compile options]) of every kernel the
    launchers use: the GEMM kernels once per tile variant, float32 and float64."""
    specs: list[tuple] = []
    for name in ("float32", "float64"):
        dt = np.dtype(name)
        a1, a2, a3, a4 = (f"{name}[{', '.join([':'] * (d - 1) + ['::1'])}]" for d in range(1, 5))
        i6 = ", ".join(["int64"] * 6)
        i2 = "int32[:, ::1]"
        tup = lambda n: f"UniTuple(int64, {n})"  # noqa: E731
        for tile in TILES[name]:
            opts = jit_options(tile)
            specs += [
                (
                    f"conv2d_fwd_{tile.name}_{name}",
                    forward_kernel(dt, tile.name).py_func,
                    f"void({a1}, {a1}, int64[::1], {a1}, int64, {a1}, {tup(14)})",
                    opts,
                ),
                (
                    f"conv2d_bwd_data_{tile.name}_{name}",
                    backward_data_kernel(dt, tile.name).py_func,
                    f"void({a1}, {a1}, int64[:, ::1], {i2}, {i2}, {a1}, {tup(12)})",
                    opts,
                ),
                (
                    f"conv2d_bwd_weight_{tile.name}_{name}",
                    backward_weight_kernel(dt, tile.name).py_func,
                    f"void({a1}, {a1}, int64[::1], {a1}, {tup(17)})",
                    opts,
                ),
            ]
        specs += [
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


#: The GEMM-like specialisations of ``ptx_specs`` (on the core of ``_gemm_core``).
GEMM_KERNELS = {f"{k}_{t.name}_{dt}" for dt in TILES for t in TILES[dt] for k in _GEMMS}
