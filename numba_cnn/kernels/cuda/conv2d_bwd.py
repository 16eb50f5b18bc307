"""Conv2d weight-gradient kernels: a split-K GEMM over N*P*Q and a deterministic sum.

dw[k, (c, r, s)] = sum over m = (n, p, q) of dy[n, k, p, q] * x[n, c, p*sh - pt + r*dlh, ...]
is a GEMM with rows k of K/groups, columns (c, r, s) of C/g*R*S and the long reduction
over N*P*Q. The bias gradient rides along as one more column whose gathered value is 1, so
db[k] = sum of dy[n, k, p, q] comes out of the same pass.

The reduction is split into chunks (grid z = groups * chunks): each block multiplies its 64x64
tile over its chunk in slices of 16 (shared-memory tiles, 16x16 threads, 4x4 register tile per
thread) and writes the partial tile to part[chunk]. A second kernel sums part over the chunks
in a fixed order into dw and db: no atomics, the same bits on every run.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from numba_cnn._cuda import cuda

from .conv2d_fwd import BK, BM, BMP, BN, BNP, NT, RT, TX, TY

L_STEP = NT // BK  # 16: row/column stride of the loaders
ONES = -1  # column-gather code: the bias column (gathers 1)
NONE = -2  # column-gather code: past the columns (gathers 0)


@functools.cache
def backward_weight_kernel(dtype: np.dtype):
    """The split-K weight-gradient GEMM for one float dtype."""
    ft = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def conv2d_bwd_weight(dy, x, part, R, S, groups, chunk, sh, sw, ph, pw, dlh, dlw):
        # dy (N,K,P,Q); x (N,C,H,W); part (chunks, K, Le): Le = L = C/g*R*S, or L + 1 with
        # db as the last column; block z = g * chunks + chunk sums m in [chunk*z', +chunk)
        # grid (ceil((K/g)/64), ceil(Le/64), groups * chunks); 16x16 threads; 4x4 outputs each
        dys = cuda.shared.array((BK, BMP), ft)
        xs = cuda.shared.array((BK, BNP), ft)
        acc = cuda.local.array((RT, RT), ft)
        av = cuda.local.array(RT, ft)
        bv = cuda.local.array(RT, ft)
        xc = cuda.local.array(RT, numba.int64)
        xh = cuda.local.array(RT, numba.int64)
        xw = cuda.local.array(RT, numba.int64)
        N, K, P, Q = dy.shape
        C = x.shape[1]
        H = x.shape[2]
        W = x.shape[3]
        Le = part.shape[2]
        nch = part.shape[0]
        Kg = K // groups
        Cg = C // groups
        RS = R * S
        L = Cg * RS
        PQ = P * Q
        M = N * PQ
        z = cuda.blockIdx.z
        g = z // nch
        ch = z - g * nch
        k0 = cuda.blockIdx.x * BM
        l0 = cuda.blockIdx.y * BN
        mbeg = ch * chunk
        mend = min(M, mbeg + chunk)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        t = ty * TX + tx
        kk = t % BK  # the slice position this thread loads
        slot = t // BK  # its first row (dy) and column (x); then every L_STEP
        for i in range(RT):
            col = l0 + slot + L_STEP * i
            xc[i] = NONE
            xh[i] = 0
            xw[i] = 0
            if col < L:
                c = col // RS
                rs = col - c * RS
                r = rs // S
                xc[i] = g * Cg + c
                xh[i] = r * dlh - ph
                xw[i] = (rs - r * S) * dlw - pw
            elif col < Le:
                xc[i] = ONES
        for i in range(RT):
            for j in range(RT):
                acc[i, j] = ft(0)
        for mt in range(mbeg, mend, BK):
            m = mt + kk
            m_ok = m < mend
            n = m // PQ
            pq = m - n * PQ
            p = pq // Q
            q = pq - p * Q
            hb = p * sh
            wb = q * sw
            for i in range(RT):
                k = k0 + slot + L_STEP * i
                v = ft(0)
                if m_ok and k < Kg:
                    v = dy[n, g * Kg + k, p, q]
                dys[kk, slot + L_STEP * i] = v
            for i in range(RT):
                v = ft(0)
                if m_ok:
                    c = xc[i]
                    if c >= 0:
                        hh = hb + xh[i]
                        ww = wb + xw[i]
                        if hh >= 0 and hh < H and ww >= 0 and ww < W:
                            v = x[n, c, hh, ww]
                    elif c == ONES:
                        v = ft(1)
                xs[kk, slot + L_STEP * i] = v
            cuda.syncthreads()  # both tiles are complete before any thread multiplies
            for s in range(BK):
                for i in range(RT):
                    av[i] = dys[s, ty + TY * i]
                for j in range(RT):
                    bv[j] = xs[s, tx + TX * j]
                for i in range(RT):
                    for j in range(RT):
                        acc[i, j] += av[i] * bv[j]
            cuda.syncthreads()  # every thread is done reading before the next slice overwrites
        for i in range(RT):
            k = k0 + ty + TY * i
            if k < Kg:
                for j in range(RT):
                    col = l0 + tx + TX * j
                    if col < Le:
                        part[ch, g * Kg + k, col] = acc[i, j]

    return conv2d_bwd_weight


@functools.cache
def finalize_kernel(dtype: np.dtype):
    """Sums the weight-gradient partials over the chunks, in chunk order."""
    ft = numba.from_dtype(np.dtype(dtype))

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
