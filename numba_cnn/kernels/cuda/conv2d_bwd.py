"""Conv2d weight-gradient kernels: a split-K GEMM over N*P*Q on the core, and a fixed-order sum.

dw[k, (c, r, s)] = sum over m = (n, p, q) of dy[n, k, p, q] * x[n, c, p*sh - pt + r*dlh, ...]
is a GEMM with rows k of K/groups, columns l = (c, r, s) of C/g*R*S and the long reduction
over N*P*Q. The bias gradient rides along as one more column whose gathered value is 1, so
db[k] = sum of dy[n, k, p, q] comes out of the same pass.

The reduction is split into chunks (grid z = groups * chunks): each block runs the core of
``_gemm_core`` over its chunk (both operands gathered k-fast: consecutive threads take
consecutive m, i.e. consecutive output pixels; each thread decodes its m once per slice) and
writes the partial tile to part[chunk]. A second kernel sums part over the chunks in a fixed
order into dw and db: no atomics, the same bits on every run.
"""

from __future__ import annotations

import functools

import numpy as np

from numba_cnn._cuda import cuda, from_dtype, types

from ._gemm_core import guarded_load, inline, make_kernel, out_index, positions, tile_by_name

# the active front end's types (numba-cuda or numba-cuda-mlir)
int32 = types.int32
int64 = types.int64
uint32 = types.uint32


@functools.cache
def backward_weight_kernel(dtype: np.dtype, tile_name: str):
    """The split-K weight-gradient GEMM for one float dtype and tile."""
    ft = from_dtype(dtype)
    tile = tile_by_name(dtype, tile_name)
    BM, BN, BK, TM, TN = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    a_pos = positions(tile, True, BM)  # dy: consecutive threads, consecutive m
    b_pos = positions(tile, True, BN)  # x: consecutive threads, consecutive m
    LA, LB = tile.loads(BM), tile.loads(BN)
    rc = out_index(tile)

    # dy (N*K*P*Q,); x (N*C*H*W,); taps (L padded to whole tiles,) int64: l -> (c*H + r*dh)*W
    # + s*dw | s*dw << 32 | r*dh << 48 (``conv2d._taps64``); part (chunks*K*Le,): Le = L =
    # C/g*R*S, or L + 1 with db as the last column;
    # dims = (N, C, H, W, K, K/g, C/g, P, Q, L, Le, chunks, chunk, sh, sw, ph, pw)
    # grid (ceil((K/g)/BM), ceil(Le/BN), groups*chunks); block z = g*chunks + chunk sums m in
    # [chunk*z', +chunk)
    @inline
    def prologue(dy, x, taps, part, dims, t):
        N, C, H, W, K, Kg, Cg, P, Q, L, Le, nch, chunk, sh, sw, ph, pw = dims
        z = uint32(cuda.blockIdx.z)
        g = uint32(z // uint32(nch))
        ch = uint32(z - uint32(g * uint32(nch)))
        k0 = uint32(uint32(cuda.blockIdx.x) * uint32(BM))
        l0 = uint32(uint32(cuda.blockIdx.y) * uint32(BN))
        PQ = uint32(P * Q)
        M = uint32(uint32(N) * PQ)
        mbeg = uint32(ch * uint32(chunk))
        mend = uint32(min(M, uint32(mbeg + uint32(chunk))))
        nk = uint32(uint32(uint32(mend - mbeg) + uint32(BK - 1)) // uint32(BK))
        HW = uint32(H * W)
        kk, _ = a_pos(t, 0)  # this thread's m within a slice (the same for all its values)
        m1 = uint32(mbeg + kk)
        # (n, p, q) of the thread's m: divided once here, then stepped by BK per slice
        at = cuda.local.array(3, uint32)
        at[0] = uint32(m1 // PQ)
        pq = uint32(m1 - uint32(at[0] * PQ))
        at[1] = uint32(pq // uint32(Q))
        at[2] = uint32(pq - uint32(at[1] * uint32(Q)))
        # the taps of the thread's columns (the same in every slice): loaded once
        tp = cuda.local.array(LB, int64)
        for i in range(LB):
            _, row = b_pos(t, i)
            tp[i] = taps[uint32(l0 + row)]
        dyb = uint32(uint32(g * uint32(Kg)) + k0)
        kleft = uint32(Kg) - k0 if k0 < uint32(Kg) else uint32(0)
        ctx_a = (dy, at, m1, mend, PQ, uint32(Q), dyb, kleft, uint32(K))
        xb = uint32(uint32(g * uint32(Cg)) * HW)
        geo = (int32(H), int32(W), uint32(P), uint32(Q), int32(sh), int32(sw), int32(ph), int32(pw))
        CHW = uint32(uint32(C) * HW)
        ctx_b = (x, tp, at, m1, mend, xb, CHW, l0, uint32(L), uint32(Le), geo)
        return nk, ctx_a, ctx_b, (part, ch, g, k0, l0, uint32(Kg), uint32(K), uint32(Le))

    @inline
    def gather_a(ctx, s, regs, t):
        dy, at, m1, mend, PQ, Q, dyb, kleft, K = ctx
        m = uint32(m1 + uint32(s * uint32(BK)))
        pq = uint32(uint32(at[1] * Q) + at[2])
        base = uint32(uint32(uint32(uint32(at[0] * K) + dyb) * PQ) + pq)
        for i in range(LA):
            _, row = a_pos(t, i)
            idx = uint32(base + uint32(row * PQ))
            regs[i] = guarded_load(dy, idx, m < mend and row < kleft, ft(0))

    @inline
    def gather_b(ctx, s, regs, t):
        x, tp, at, m1, mend, xb, CHW, l0, L, Le, geo = ctx
        H, W, P, Q, sh, sw, ph, pw = geo
        m = uint32(m1 + uint32(s * uint32(BK)))
        n = at[0]
        p = at[1]
        q = at[2]
        hb = int32(int32(p * uint32(sh)) - ph)
        wb = int32(int32(q * uint32(sw)) - pw)
        pix = int32(int32(uint32(n * CHW) + xb) + int32(hb * W) + wb)
        for i in range(LB):
            _, row = b_pos(t, i)
            col = uint32(l0 + row)
            hi = uint32(tp[i] >> 32)
            hh = int32(hb + int32(hi >> uint32(16)))  # padding entries: huge, hh fails
            ww = int32(wb + int32(hi & uint32(0xFFFF)))
            inside = m < mend and hh >= 0 and hh < H and ww >= 0 and ww < W
            v = guarded_load(x, uint32(pix + int32(tp[i] & 0xFFFFFFFF)), inside, ft(0))
            regs[i] = ft(1) if m < mend and col == L and col < Le else v  # the bias column
        # step (n, p, q) to the next slice's m = m + BK (the last gather of a slice)
        q = uint32(q + uint32(BK))
        while q >= Q:
            q = uint32(q - Q)
            p = uint32(p + uint32(1))
        while p >= P:
            p = uint32(p - P)
            n = uint32(n + uint32(1))
        at[0] = n
        at[1] = p
        at[2] = q

    @inline
    def epilogue(acc, t, ctx):
        part, ch, g, k0, l0, Kg, K, Le = ctx
        for i in range(TM):
            r, _ = rc(t, i, 0)
            k = uint32(k0 + r)
            if k < Kg:
                base = uint32(uint32(uint32(ch * K) + uint32(g * Kg) + k) * Le)
                for j in range(TN):
                    _, c = rc(t, i, j)
                    col = uint32(l0 + c)
                    if col < Le:
                        part[uint32(base + col)] = acc[i, j]

    params = "dy, x, taps, part, dims"
    return make_kernel(
        "conv2d_bwd_weight", params, tile, ft, prologue, gather_a, True, gather_b, True, epilogue
    )


@functools.cache
def finalize_kernel(dtype: np.dtype):
    """Sums the weight-gradient partials over the chunks, in chunk order."""
    ft = from_dtype(dtype)

    @cuda.jit
    def conv2d_bwd_weight_sum(part, dw2, db):
        # part (nchunks, K, Le); dw2 (K, L) = dw viewed 2-D; db (K,) written when Le == L + 1
        # grid-stride over the K*Le outputs, one thread per output
        nch = part.shape[0]
        K = part.shape[1]
        Le = part.shape[2]
        L = dw2.shape[1]
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for idx in range(start, K * Le, stride):
            k = idx // Le
            col = idx - k * Le
            s = ft(0)
            for ch in range(nch):
                s += part[ch, k, col]
            if col < L:
                dw2[k, col] = s
            elif k < db.shape[0]:
                db[k] = s

    return conv2d_bwd_weight_sum
