"""Tiled shared-memory GEMM with register blocking, and a deterministic column sum.

    C (M, N) = op(A) @ op(B) [+ bias[n]]
    op(A)[m, k] = A[k, m] if TA else A[m, k]      (A stored (K, M) or (M, K))
    op(B)[k, n] = B[n, k] if TB else B[k, n]      (B stored (N, K) or (K, N))

One block of 16x16 threads computes a 64x64 tile of C; each thread owns 4x4 outputs strided by
16 (rows ty + 16i, columns tx + 16j: conflict-free shared reads, coalesced stores). K is walked
in tiles of 16 staged through shared memory; the load mapping follows the storage order, so
global reads are coalesced for either transpose. Every load and store is guarded, so any M, N,
K work (K = 0 gives the bias). The transposes and the bias are compile-time flags of the factory.
"""

from __future__ import annotations

import functools
import math

import numba

from numba_cnn._cuda import cuda

BM = 64  # rows of C per block
BN = 64  # columns of C per block
BK = 16  # K-tile staged in shared memory
TPB = 16  # threads per block edge (16 x 16)
TM = BM // TPB  # outputs per thread along M
TN = BN // TPB  # outputs per thread along N
NT = TPB * TPB  # threads per block
LOADS_A = BM * BK // NT  # elements of the A tile each thread loads
LOADS_B = BN * BK // NT
BMP = BM + 1  # padded shared rows: stores along k hit distinct banks
BNP = BN + 1


@functools.cache
def gemm_kernel(dtype: str, ta: bool, tb: bool, has_bias: bool):
    """The GEMM kernel for ``dtype`` ("float32"/"float64") and the given transposes.

    Signature ``(a, b, bias, c)``; ``bias`` (N,) is read only when ``has_bias`` (the launcher
    passes any 1-D array of the dtype otherwise)."""
    ft = getattr(numba, dtype)

    # a (M, K) or (K, M); b (K, N) or (N, K); bias (N,); c (M, N); one block per 64x64 tile
    def gemm(a, b, bias, c):
        M = c.shape[0]
        N = c.shape[1]
        K = a.shape[0] if ta else a.shape[1]
        As = cuda.shared.array((BK, BMP), dtype=ft)  # [k, m]
        Bs = cuda.shared.array((BK, BNP), dtype=ft)  # [k, n]
        acc = cuda.local.array((TM, TN), dtype=ft)
        ra = cuda.local.array(TM, dtype=ft)
        rb = cuda.local.array(TN, dtype=ft)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        t = ty * TPB + tx
        m0 = cuda.blockIdx.x * BM  # row tiles on grid x: M (batch rows) may pass 65535 tiles
        n0 = cuda.blockIdx.y * BN
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = ft(0)
        for k0 in range(0, K, BK):
            for r in range(LOADS_A):
                e = t + r * NT
                if ta:  # A (K, M): consecutive threads read consecutive m
                    kk = e // BM
                    mm = e - kk * BM
                else:  # A (M, K): consecutive threads read consecutive k
                    mm = e // BK
                    kk = e - mm * BK
                gm = m0 + mm
                gk = k0 + kk
                v = ft(0)
                if gm < M and gk < K:
                    v = a[gk, gm] if ta else a[gm, gk]
                As[kk, mm] = v
            for r in range(LOADS_B):
                e = t + r * NT
                if tb:  # B (N, K): consecutive threads read consecutive k
                    nn = e // BK
                    kk = e - nn * BK
                else:  # B (K, N): consecutive threads read consecutive n
                    kk = e // BN
                    nn = e - kk * BN
                gn = n0 + nn
                gk = k0 + kk
                v = ft(0)
                if gn < N and gk < K:
                    v = b[gn, gk] if tb else b[gk, gn]
                Bs[kk, nn] = v
            cuda.syncthreads()  # both tiles are complete before anyone reads them
            for kk in range(BK):
                for i in range(TM):
                    ra[i] = As[kk, ty + i * TPB]
                for j in range(TN):
                    rb[j] = Bs[kk, tx + j * TPB]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += ra[i] * rb[j]
            cuda.syncthreads()  # all reads of this tile are done before the next overwrites it
        for i in range(TM):
            gm = m0 + ty + i * TPB
            if gm < M:
                for j in range(TN):
                    gn = n0 + tx + j * TPB
                    if gn < N:
                        v = acc[i, j]
                        if has_bias:
                            v += bias[gn]
                        c[gm, gn] = v

    return cuda.jit(gemm)


def launch_gemm(a, b, bias, c, *, ta: bool, tb: bool) -> None:
    """C = op(A) @ op(B) (+ bias when ``bias`` is not None) into the preallocated ``c``."""
    M, N = c.shape
    if M == 0 or N == 0:
        return
    kern = gemm_kernel(c.dtype.name, ta, tb, bias is not None)
    # rows on grid x (up to 2**31 - 1 blocks), columns on grid y (at most 65535 blocks on a
    # GPU: N <= 4,194,240 output columns, i.e. features, which no layer reaches)
    grid = (math.ceil(M / BM), math.ceil(N / BN))
    kern[grid, (TPB, TPB)](a, b, c[0] if bias is None else bias, c)


CS = 16  # column-sum block edge: 16 columns x 16 row-strides


@functools.cache
def colsum_kernel(dtype: str):
    """``out[n] = sum_m a[m, n]``: one block per 16 columns, tree-reduced in shared memory."""
    ft = getattr(numba, dtype)

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


def ptx_specs() -> list[tuple[str, object, str]]:
    """Every GEMM and column-sum specialisation the library launches, float32 and float64."""
    specs = []
    for dt in ("float32", "float64"):
        m2 = f"{dt}[:, ::1]"
        m1 = f"{dt}[::1]"
        for name, ta, tb, bias in (
            ("gemm_nt_bias", False, True, True),  # y = x @ w.T + b
            ("gemm_nt", False, True, False),  # y = x @ w.T
            ("gemm_nn", False, False, False),  # dx = dy @ w
            ("gemm_tn", True, False, False),  # dw = dy.T @ x
        ):
            fn = gemm_kernel(dt, ta, tb, bias).py_func
            specs.append((f"{name}_{dt}", fn, f"void({m2}, {m2}, {m1}, {m2})"))
        specs.append((f"colsum_{dt}", colsum_kernel(dt).py_func, f"void({m2}, {m1})"))
    return specs
