"""The dense layer's GEMMs on the one core of ``_gemm_core``, and a deterministic column sum.

    C (M, N) = op(A) @ op(B) [+ bias[n]]
    op(A)[m, k] = A[k, m] if TA else A[m, k]      (A stored (K, M) or (M, K))
    op(B)[k, n] = B[n, k] if TB else B[k, n]      (B stored (N, K) or (K, N))

A block computes one tile of C (``_gemm_core.TILES``: 128x128 with 8x8 outputs per thread for
float32, smaller tiles for small problems and float64). The gathers follow the storage order
so global reads are coalesced for either transpose: an operand contiguous along k is stored
k-fast, one contiguous along m (or n) m-fast. Every load and store is guarded, so any M, N,
K work (K = 0 gives the bias). The transposes, the bias and the tile are factory arguments.
"""

from __future__ import annotations

import functools
import math

from numba_cnn._cuda import cuda, from_dtype, types

from ._gemm_core import (
    TILES,
    inline,
    jit_options,
    make_kernel,
    out_index,
    pick_tile,
    positions,
    tile_by_name,
)

uint32 = types.uint32  # the active front end's types (numba-cuda or numba-cuda-mlir)


def _gather(tile, ft, rows: int, trans: bool):
    """Gather of an operand stored (rows, K) (``trans``: (K, rows)) as a GEMM operand
    ``op[m, k]``; ctx = (flat array, first row of the tile, rows in all, K)."""
    kfast = not trans
    pos = positions(tile, kfast, rows)
    n = tile.loads(rows)
    BK = tile.bk

    @inline
    def gather(ctx, s, regs, t):
        arr, r0, R, K = ctx
        for i in range(n):
            kk, r = pos(t, i)
            gr = uint32(r0 + r)
            gk = uint32(uint32(s * uint32(BK)) + kk)
            v = ft(0)
            if gr < R and gk < K:
                v = arr[uint32(gk * R + gr)] if trans else arr[uint32(gr * K + gk)]
            regs[i] = v

    return gather, kfast


@functools.cache
def gemm_kernel(dtype: str, ta: bool, tb: bool, has_bias: bool, tile_name: str):
    """The GEMM kernel for ``dtype`` ("float32"/"float64"), the transposes and the tile.

    Signature ``(a, b, bias, c, M, N, K)`` on flat arrays; ``bias`` (N,) is read only when
    ``has_bias`` (the launcher passes any 1-D array of the dtype otherwise)."""
    ft = from_dtype(dtype)
    tile = tile_by_name(dtype, tile_name)
    ga, a_kfast = _gather(tile, ft, tile.bm, ta)
    gb, b_kfast = _gather(tile, ft, tile.bn, not tb)  # op(B)^T is stored (N, K) when tb
    rc = out_index(tile)
    BM, BN, BK, TM, TN = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn

    # a (M*K,) = (M, K) or (K, M); b (K*N,) = (K, N) or (N, K); bias (N,); c (M*N,)
    # grid (ceil(M/BM), ceil(N/BN)); BM/TM * BN/TN threads, TM x TN outputs each
    @inline
    def prologue(a, b, bias, c, M, N, K, t):
        m0 = uint32(uint32(cuda.blockIdx.x) * uint32(BM))  # row tiles on grid x (> 65535 ok)
        n0 = uint32(uint32(cuda.blockIdx.y) * uint32(BN))
        M = uint32(M)
        N = uint32(N)
        K = uint32(K)
        nk = uint32(uint32(K + uint32(BK - 1)) // uint32(BK))
        return nk, (a, m0, M, K), (b, n0, N, K), (bias, c, m0, n0, M, N)

    @inline
    def epilogue(acc, t, ctx):
        bias, c, m0, n0, M, N = ctx
        for i in range(TM):
            for j in range(TN):
                r, col = rc(t, i, j)
                gm = uint32(m0 + r)
                gn = uint32(n0 + col)
                if gm < M and gn < N:
                    v = acc[i, j]
                    if has_bias:
                        v += bias[gn]
                    c[uint32(gm * N + gn)] = v

    name = f"gemm_{'t' if ta else 'n'}{'t' if tb else 'n'}{'_bias' if has_bias else ''}"
    params = "a, b, bias, c, M, N, K"
    return make_kernel(name, params, tile, ft, prologue, ga, a_kfast, gb, b_kfast, epilogue)


def launch_gemm(a, b, bias, c, *, ta: bool, tb: bool, tile=None) -> None:
    """C = op(A) @ op(B) (+ bias when ``bias`` is not None) into the preallocated ``c``."""
    M, N = c.shape
    if M == 0 or N == 0:
        return
    K = a.shape[0] if ta else a.shape[1]
    if max(a.size, b.size, c.size) >= 2**31:
        raise ValueError(f"gemm: operands of {a.size}, {b.size}, {c.size} elements pass 2**31")
    tile = tile or pick_tile(c.dtype, M, N)
    kern = gemm_kernel(c.dtype.name, ta, tb, bias is not None, tile.name)
    # rows on grid x (up to 2**31 - 1 blocks), columns on grid y (at most 65535 blocks)
    grid = (math.ceil(M / tile.bm), math.ceil(N / tile.bn))
    a1, b1, c1 = (v.reshape(v.size) for v in (a, b, c))
    kern[grid, tile.threads](a1, b1, c1[:1] if bias is None else bias, c1, M, N, K)


CS = 16  # column-sum block edge: 16 columns x 16 row-strides


@functools.cache
def colsum_kernel(dtype: str):
    """``out[n] = sum_m a[m, n]``: one block per 16 columns, tree-reduced in shared memory."""
    ft = from_dtype(dtype)

    # a (M, N) -> out (N,); block (16, 16): threadIdx.x picks the column, threadIdx.y strides rows
    def colsum(a, out):
        M = a.shape[0]
        N = a.shape[1]
        part = cuda.shared.array((CS, CS), dtype=ft)  # [row-stride, column]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n = cuda.blockIdx.x * CS + tx
        s = ft(0)
        if n < N:
            for m in range(ty, M, CS):
                s += a[m, n]
        part[ty, tx] = s
        cuda.syncthreads()  # every partial sum is stored before the tree reads them
        step = CS // 2
        while step > 0:
            if ty < step:
                part[ty, tx] += part[ty + step, tx]
            cuda.syncthreads()  # this level is complete before the next reads it
            step //= 2
        if ty == 0 and n < N:
            out[n] = part[0, tx]

    return cuda.jit(colsum)


def launch_colsum(a, out) -> None:
    """``out[n] = a[:, n].sum()`` into the preallocated ``out`` (N,)."""
    N = out.shape[0]
    if N == 0:
        return
    colsum_kernel(out.dtype.name)[math.ceil(N / CS), (CS, CS)](a, out)


_GEMMS = (
    ("gemm_nt_bias", False, True, True),  # y = x @ w.T + b
    ("gemm_nt", False, True, False),  # y = x @ w.T
    ("gemm_nn", False, False, False),  # dx = dy @ w
    ("gemm_tn", True, False, False),  # dw = dy.T @ x
)


def ptx_specs() -> list[tuple[str, object, str]]:
    """Every GEMM (each tile variant) and column-sum specialisation, float32 and float64."""
    specs = []
    for dt in ("float32", "float64"):
        m1 = f"{dt}[::1]"
        for name, ta, tb, bias in _GEMMS:
            for tile in TILES[dt]:
                fn = gemm_kernel(dt, ta, tb, bias, tile.name).py_func
                sig = f"void({m1}, {m1}, {m1}, {m1}, int64, int64, int64)"
                specs.append((f"{name}_{tile.name}_{dt}", fn, sig, jit_options(tile)))
        specs.append((f"colsum_{dt}", colsum_kernel(dt).py_func, f"void({dt}[:, ::1], {m1})"))
    return specs


#: The GEMM-like specialisations of ``ptx_specs`` (the column sum is not one).
GEMM_KERNELS = {
    f"{name}_{tile.name}_{dt}" for dt in TILES for name, *_ in _GEMMS for tile in TILES[dt]
}
