"""Conv2d forward and data-gradient kernels: implicit GEMMs with shared-memory tiles.

Both kernels are the same tiled GEMM with a different gather (im2col on the fly, never in
global memory). A 16x16-thread block computes a 64x64 output tile, each thread a 4x4 register
tile whose rows are strided by 16 (``tx + 16*i``) so that shared-memory reads are conflict-free
and the output writes are coalesced along the pixel (row) dimension. The reduction runs in
slices of 16: the block gathers a (16, 64) slice of each operand into shared memory
(zero-filled outside the image, past the reduction length and past the tile's edges), waits,
multiplies, waits, and moves on. Groups are the grid's z dimension.

- forward: rows m = (n, p, q) of N*P*Q, columns k of K/groups, reduction (c, r, s) of C/g*R*S.
- data gradient: the transposed convolution in gather form: rows m = (n, h, w) of N*H*W,
  columns c of C/groups, reduction (k, r, s) of K/g*R*S, taking dy[n, k, p, q] where
  p = (h + pad_top - r*dh) / sh divides exactly and lies in [0, P). No atomics.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from numba_cnn._cuda import cuda

BM = 64  # rows (output pixels) per block tile
BN = 64  # columns (channels) per block tile
BK = 16  # reduction slice held in shared memory
TX = 16  # threads per block along rows
TY = 16  # threads per block along columns
NT = TX * TY  # 256 threads
RT = 4  # register tile: RT x RT outputs per thread (BM = TX*RT, BN = TY*RT)
A_STEP = NT // BM  # 4: slice positions between one thread's gathers of the pixel operand
B_STEP = NT // BK  # 16: column stride of the weight operand's loader
BMP = BM + 1  # padded row length of shared tiles written column-wise (no bank conflicts)
BNP = BN + 1


@functools.cache
def forward_kernel(dtype: np.dtype):
    """The forward implicit-GEMM kernel for one float dtype."""
    ft = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def conv2d_fwd(x, w2, taps, b, has_bias, y, groups, sh, sw, ph, pw):
        # x (N,C,H,W); w2 (K,L) = w (K,C/g,R,S) viewed 2-D, L = C/g*R*S; b (K,) read when
        # has_bias; y (N,K,P,Q); taps (4,L): reduction index l -> c, r*S+s, r*dh, s*dw
        # grid (ceil(N*P*Q/64), ceil((K/g)/64), groups); 16x16 threads; 4x4 outputs each
        xs = cuda.shared.array((BK, BM), ft)
        ws = cuda.shared.array((BK, BNP), ft)
        acc = cuda.local.array((RT, RT), ft)
        av = cuda.local.array(RT, ft)
        bv = cuda.local.array(RT, ft)
        N, C, H, W = x.shape
        K, L = w2.shape
        P = y.shape[2]
        Q = y.shape[3]
        Cg = C // groups
        Kg = K // groups
        PQ = P * Q
        M = N * PQ
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.x * BM
        k0 = cuda.blockIdx.y * BN
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        t = ty * TX + tx
        # pixel loader: one row of the tile (fixed for the whole loop), A_STEP apart slices
        am = t % BM
        akk = t // BM
        mrow = m0 + am
        row_ok = mrow < M
        an = mrow // PQ
        apq = mrow - an * PQ
        ap = apq // Q
        h0 = ap * sh - ph
        w0 = (apq - ap * Q) * sw - pw
        # weight loader: one reduction index of the slice, columns B_STEP apart
        bkk = t % BK
        bcol = t // BK
        for i in range(RT):
            for j in range(RT):
                acc[i, j] = ft(0)
        for l0 in range(0, L, BK):
            for i in range(BK // A_STEP):
                kk = akk + A_STEP * i
                l = l0 + kk
                v = ft(0)
                if row_ok and l < L:
                    hh = h0 + taps[2, l]
                    ww = w0 + taps[3, l]
                    if hh >= 0 and hh < H and ww >= 0 and ww < W:
                        v = x[an, g * Cg + taps[0, l], hh, ww]
                xs[kk, am] = v
            l = l0 + bkk
            for j in range(BN // B_STEP):
                col = bcol + B_STEP * j
                k = k0 + col
                v = ft(0)
                if l < L and k < Kg:
                    v = w2[g * Kg + k, l]
                ws[bkk, col] = v
            cuda.syncthreads()  # both tiles are complete before any thread multiplies
            for kk in range(BK):
                for i in range(RT):
                    av[i] = xs[kk, tx + TX * i]
                for j in range(RT):
                    bv[j] = ws[kk, ty + TY * j]
                for i in range(RT):
                    for j in range(RT):
                        acc[i, j] += av[i] * bv[j]
            cuda.syncthreads()  # every thread is done reading before the next slice overwrites
        for i in range(RT):
            m = m0 + tx + TX * i
            if m < M:
                n = m // PQ
                pq = m - n * PQ
                p = pq // Q
                q = pq - p * Q
                for j in range(RT):
                    k = k0 + ty + TY * j
                    if k < Kg:
                        v = acc[i, j]
                        if has_bias:
                            v += b[g * Kg + k]
                        y[n, g * Kg + k, p, q] = v

    return conv2d_fwd


@functools.cache
def backward_data_kernel(dtype: np.dtype):
    """The data-gradient implicit-GEMM kernel (transposed conv, gather form) for one dtype."""
    ft = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def conv2d_bwd_data(dy, w3, taps, dx, sh, sw, ph, pw):
        # dy (N,K,P,Q); w3 (K,C/g,R*S) = w viewed 3-D; dx (N,C,H,W)
        # taps (4,L), L = K/g*R*S: reduction index l -> k, r*S+s, r*dh, s*dw
        # grid (ceil(N*H*W/64), ceil((C/g)/64), groups); 16x16 threads; 4x4 outputs each
        ds = cuda.shared.array((BK, BM), ft)
        ws = cuda.shared.array((BK, BNP), ft)
        acc = cuda.local.array((RT, RT), ft)
        av = cuda.local.array(RT, ft)
        bv = cuda.local.array(RT, ft)
        N, C, H, W = dx.shape
        K, Cg, RS = w3.shape
        P = dy.shape[2]
        Q = dy.shape[3]
        Kg = K // (C // Cg)
        L = Kg * RS
        HW = H * W
        M = N * HW
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.x * BM
        c0 = cuda.blockIdx.y * BN
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        t = ty * TX + tx
        # dy loader: one input pixel (n, h, w) of the tile, A_STEP apart slices
        am = t % BM
        akk = t // BM
        mrow = m0 + am
        row_ok = mrow < M
        an = mrow // HW
        ahw = mrow - an * HW
        ah = ahw // W
        hp = ah + ph
        wp = ahw - ah * W + pw
        # weight loader: one reduction index (k, r, s) of the slice, columns B_STEP apart
        bkk = t % BK
        bcol = t // BK
        for i in range(RT):
            for j in range(RT):
                acc[i, j] = ft(0)
        for l0 in range(0, L, BK):
            for i in range(BK // A_STEP):
                kk = akk + A_STEP * i
                l = l0 + kk
                v = ft(0)
                if row_ok and l < L:
                    p = hp - taps[2, l]  # p * sh when it divides
                    q = wp - taps[3, l]
                    if sh > 1:  # uniform branch: skip the divisions at stride 1
                        p = p // sh if p % sh == 0 else -1
                    if sw > 1:
                        q = q // sw if q % sw == 0 else -1
                    if p >= 0 and p < P and q >= 0 and q < Q:
                        v = dy[an, g * Kg + taps[0, l], p, q]
                ds[kk, am] = v
            l = l0 + bkk
            k = g * Kg + taps[0, l] if l < L else 0
            rs = taps[1, l] if l < L else 0
            for j in range(BN // B_STEP):
                col = bcol + B_STEP * j
                c = c0 + col
                v = ft(0)
                if l < L and c < Cg:
                    v = w3[k, c, rs]
                ws[bkk, col] = v
            cuda.syncthreads()  # both tiles are complete before any thread multiplies
            for kk in range(BK):
                for i in range(RT):
                    av[i] = ds[kk, tx + TX * i]
                for j in range(RT):
                    bv[j] = ws[kk, ty + TY * j]
                for i in range(RT):
                    for j in range(RT):
                        acc[i, j] += av[i] * bv[j]
            cuda.syncthreads()  # every thread is done reading before the next slice overwrites
        for i in range(RT):
            m = m0 + tx + TX * i
            if m < M:
                n = m // HW
                hw = m - n * HW
                h = hw // W
                ww = hw - h * W
                for j in range(RT):
                    c = c0 + ty + TY * j
                    if c < Cg:
                        dx[n, g * Cg + c, h, ww] = acc[i, j]

    return conv2d_bwd_data
