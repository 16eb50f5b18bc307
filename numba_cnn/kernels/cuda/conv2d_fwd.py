"""Conv2d forward and data-gradient kernels: implicit GEMMs on the core of ``_gemm_core``.

Both are the core's tiled GEMM with their own gathers (im2col on the fly, never in global
memory) and epilogues; groups (and stride phases) are the grid's z dimension.

- forward: rows m = (n, p, q) of N*P*Q, columns k of K/groups, reduction l = (c, r, s) of
  C/g*R*S. Each thread gathers one output pixel of the tile (decoded once per tile) at
  several l; a tap table (host-built, per geometry) gives l's input offset and (r*dh, s*dw).
- data gradient: the transposed convolution in gather form, split by stride phase: output
  pixels (h, w) with h = a + sh*i, w = b + sw*j for one phase (a, b) use only the taps with
  (a + ph - r*dh) divisible by sh, at dy row p = i + pr (pr exact, from the phase's table).
  So no division and no multiply-by-zero is left in the loop; rows m = (n, i, j) of the
  phase, columns c of C/groups, reduction (k, r, s) over the phase's taps. No atomics.
"""

from __future__ import annotations

import functools

import numpy as np

from numba_cnn._cuda import cuda, from_dtype, types

from ._gemm_core import guarded_load, inline, make_kernel, out_index, positions, tile_by_name

# the active front end's types (numba-cuda or numba-cuda-mlir)
int32 = types.int32
uint32 = types.uint32


@functools.cache
def forward_kernel(dtype: np.dtype, tile_name: str):
    """The forward implicit-GEMM kernel for one float dtype and tile."""
    ft = from_dtype(dtype)
    tile = tile_by_name(dtype, tile_name)
    BM, BN, BK, TM, TN = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    a_pos = positions(tile, False, BM)  # pixels: consecutive threads, consecutive pixels
    b_pos = positions(tile, True, BN)  # weights: consecutive threads, consecutive l
    LA, LB = tile.loads(BM), tile.loads(BN)
    rc = out_index(tile)

    # x (N*C*H*W,); w (K*L,) = w (K,C/g,R,S) flat, L = C/g*R*S; b (K,) read when has_bias;
    # y (N*K*P*Q,); taps (L padded to slices,) int64: l -> offset (c*H + r*dh)*W + s*dw in
    # the low 32 bits, r*dh and s*dw in the high 16-bit halves (one 64-bit load per value);
    # dims = (N, C, H, W, K, K/g, C/g, L, P, Q, sh, sw, ph, pw)
    # grid (ceil(N*P*Q/BM), ceil((K/g)/BN), groups); one block per BM x BN tile
    @inline
    def prologue(x, w, taps, b, has_bias, y, dims, t):
        N, C, H, W, K, Kg, Cg, L, P, Q, sh, sw, ph, pw = dims
        m0 = uint32(uint32(cuda.blockIdx.x) * uint32(BM))
        k0 = uint32(uint32(cuda.blockIdx.y) * uint32(BN))
        g = uint32(cuda.blockIdx.z)
        PQ = uint32(P * Q)
        M = uint32(N * PQ)
        Kg = uint32(Kg)
        _, r = a_pos(t, 0)  # this thread's pixel (the same for all its A values)
        m = uint32(m0 + r)
        n = uint32(m // PQ)
        pq = uint32(m - uint32(n * PQ))
        p = uint32(pq // uint32(Q))
        h0 = int32(int32(p * sh) - ph)
        w0 = int32(int32(uint32(pq - uint32(p * uint32(Q))) * sw) - pw)
        pix = int32(uint32(uint32(n * uint32(C)) + uint32(g * uint32(Cg))) * uint32(H * W))
        pix = int32(pix + int32(h0 * W) + w0)
        nk = uint32(uint32(uint32(L) + uint32(BK - 1)) // uint32(BK))
        ctx_a = (x, taps, m < M, pix, h0, w0, int32(H), int32(W), uint32(L))
        ctx_b = (w, uint32(uint32(g * Kg) + k0), uint32(Kg - k0) if k0 < Kg else uint32(0), L)
        return nk, ctx_a, ctx_b, (b, has_bias, y, m0, k0, g, Kg, M, PQ, K)

    @inline
    def gather_a(ctx, s, regs, t):
        x, taps, ok, pix, h0, w0, H, W, L = ctx
        for i in range(LA):
            kk, _ = a_pos(t, i)
            lv = uint32(uint32(s * uint32(BK)) + kk)  # < the table's length (padded to BK)
            tap = taps[lv]
            hi = uint32(tap >> 32)
            hh = int32(h0 + int32(hi >> uint32(16)))  # past L: r*dh is huge, hh fails
            ww = int32(w0 + int32(hi & uint32(0xFFFF)))
            inside = ok and hh >= 0 and hh < H and ww >= 0 and ww < W
            regs[i] = guarded_load(x, uint32(pix + int32(tap & 0xFFFFFFFF)), inside, ft(0))

    @inline
    def gather_b(ctx, s, regs, t):
        w, kbase, kleft, L = ctx
        for i in range(LB):
            kk, col = b_pos(t, i)
            lv = uint32(uint32(s * uint32(BK)) + kk)
            idx = uint32(uint32(uint32(kbase + col) * uint32(L)) + lv)
            regs[i] = guarded_load(w, idx, col < kleft and lv < uint32(L), ft(0))

    @inline
    def epilogue(acc, t, ctx):
        b, has_bias, y, m0, k0, g, Kg, M, PQ, K = ctx
        for i in range(TM):
            r, _ = rc(t, i, 0)
            m = uint32(m0 + r)
            if m < M:
                n = uint32(m // PQ)
                base = uint32(uint32(n * uint32(K * PQ)) + uint32(m - uint32(n * PQ)))
                for j in range(TN):
                    _, col = rc(t, i, j)
                    k = uint32(k0 + col)
                    if k < Kg:
                        kg = uint32(uint32(g * Kg) + k)
                        v = acc[i, j]
                        if has_bias:
                            v += b[kg]
                        y[uint32(base + uint32(kg * PQ))] = v

    params = "x, w, taps, b, has_bias, y, dims"
    return make_kernel(
        "conv2d_fwd", params, tile, ft, prologue, gather_a, False, gather_b, True, epilogue
    )


BIAS = 2**14  # added to the 16-bit tap shifts pr, qs of the data gradient's packed table


@functools.cache
def backward_data_kernel(dtype: np.dtype, tile_name: str):
    """The data-gradient implicit-GEMM kernel (transposed conv, gather form, one stride phase
    per grid z slot) for one float dtype and tile."""
    ft = from_dtype(dtype)
    tile = tile_by_name(dtype, tile_name)
    BM, BN, BK, TM, TN = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    a_pos = positions(tile, False, BM)  # dy: consecutive threads, consecutive pixels
    b_pos = positions(tile, True, BN)  # weights: consecutive threads, consecutive taps
    LA, LB = tile.loads(BM), tile.loads(BN)
    rc = out_index(tile)

    # dy (N*K*P*Q,); w (K*C/g*R*S,); dx (N*C*H*W,); taps (phases, Lmax) int64: l of a phase ->
    # dy offset k*P*Q + pr*Q + qs | (qs + 2**14) << 32 | (pr + 2**14) << 48; wtab (phases, Lmax)
    # int32: l -> w offset (k*C/g*R + r)*S + s; phase (phases, 5)
    # int32: taps L, first row ha and column wb, rows Ha and columns Wb of the phase's pixels;
    # dims = (N, C, H, W, K, K/g, C/g, P, Q, R*S, sh, sw)
    # grid (ceil(N*ceil(H/sh)*ceil(W/sw)/BM), ceil((C/g)/BN), groups*sh*sw)
    @inline
    def prologue(dy, w, taps, wtab, phase, dx, dims, t):
        N, C, H, W, K, Kg, Cg, P, Q, RS, sh, sw = dims
        z = uint32(cuda.blockIdx.z)
        nph = uint32(sh * sw)
        g = uint32(z // nph)
        ab = uint32(z - uint32(g * nph))
        ha = uint32(phase[ab, 1])  # this phase's pixels: h = ha + sh*i, w = wb + sw*j
        wb = uint32(phase[ab, 2])
        Wb = uint32(phase[ab, 4])
        HWp = uint32(uint32(phase[ab, 3]) * Wb)
        M = uint32(uint32(N) * HWp)
        Cg = uint32(Cg)
        Kg = uint32(Kg)
        m0 = uint32(uint32(cuda.blockIdx.x) * uint32(BM))
        c0 = uint32(uint32(cuda.blockIdx.y) * uint32(BN))
        _, r = a_pos(t, 0)
        m = uint32(m0 + r)
        n = uint32(m // HWp) if HWp > 0 else uint32(0)
        ij = uint32(m - uint32(n * HWp))
        i = uint32(ij // Wb) if Wb > 0 else uint32(0)
        j = uint32(ij - uint32(i * Wb))
        PQ = uint32(P * Q)
        base = int32(uint32(uint32(n * uint32(K)) + uint32(g * Kg)) * PQ)
        base = int32(base + int32(i * uint32(Q)) + int32(j))
        L = uint32(phase[ab, 0])
        nk = uint32(uint32(L + uint32(BK - 1)) // uint32(BK))
        ctx_a = (dy, taps, ab, m < M, base, int32(i), int32(j), int32(P), int32(Q), L)
        wbase = uint32(uint32(g * Kg) * uint32(Cg * RS))
        ctx_b = (w, wtab, ab, wbase, c0, Cg, uint32(RS), L)
        ctx_e = (dx, m0, c0, g, Cg, M, HWp, Wb, ha, wb, C, H, W, sh, sw)
        return nk, ctx_a, ctx_b, ctx_e

    @inline
    def gather_a(ctx, s, regs, t):
        dy, taps, ab, ok, base, i, j, P, Q, L = ctx
        for e in range(LA):
            kk, _ = a_pos(t, e)
            lv = uint32(uint32(s * uint32(BK)) + kk)  # < the table's length (padded to BK)
            tap = taps[ab, lv]
            hi = uint32(tap >> 32)
            p = int32(int32(i + int32(hi >> uint32(16))) - BIAS)  # padding: huge, p fails
            q = int32(int32(j + int32(hi & uint32(0xFFFF))) - BIAS)
            inside = ok and p >= 0 and p < P and q >= 0 and q < Q
            regs[e] = guarded_load(dy, uint32(base + int32(tap & 0xFFFFFFFF)), inside, ft(0))

    @inline
    def gather_b(ctx, s, regs, t):
        w, wtab, ab, wbase, c0, Cg, RS, L = ctx
        for e in range(LB):
            kk, col = b_pos(t, e)
            lv = uint32(uint32(s * uint32(BK)) + kk)
            c = uint32(c0 + col)
            idx = uint32(uint32(wbase + uint32(wtab[ab, lv])) + uint32(c * RS))
            regs[e] = guarded_load(w, idx, c < Cg and lv < L, ft(0))

    @inline
    def epilogue(acc, t, ctx):
        dx, m0, c0, g, Cg, M, HWp, Wb, ha, wb, C, H, W, sh, sw = ctx
        for e in range(TM):
            r, _ = rc(t, e, 0)
            m = uint32(m0 + r)
            if m < M:
                n = uint32(m // HWp)
                ij = uint32(m - uint32(n * HWp))
                i = uint32(ij // Wb)
                h = uint32(ha + uint32(i * uint32(sh)))
                ww = uint32(wb + uint32(uint32(ij - uint32(i * Wb)) * uint32(sw)))
                pix = uint32(uint32(h * uint32(W)) + ww)
                base = uint32(uint32(uint32(n * uint32(C)) + uint32(g * Cg)) * uint32(H * W))
                for f in range(TN):
                    _, col = rc(t, e, f)
                    c = uint32(c0 + col)
                    if c < Cg:
                        dx[uint32(uint32(base + uint32(c * uint32(H * W))) + pix)] = acc[e, f]

    params = "dy, w, taps, wtab, phase, dx, dims"
    return make_kernel(
        "conv2d_bwd_data", params, tile, ft, prologue, gather_a, False, gather_b, True, epilogue
    )
