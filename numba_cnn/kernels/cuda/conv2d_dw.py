"""Depthwise conv2d kernels (groups == C == K: one input and one output channel per group).

A depthwise convolution has no channel reduction, so the implicit GEMMs of ``conv2d_fwd``
would fill one column of each 64-column tile. These kernels work per element instead:
forward and data gradient are grid-stride loops with one output element per thread and the
R*S taps in registers; the weight gradient reduces N*P*Q per channel in blocks of 256 threads,
16 taps at a time in registers, then a shared-memory tree; it is split into chunks whose
partials ``conv2d_bwd``'s sum kernel adds in a fixed order (the bias gradient is one more tap
whose input is 1).
"""

from __future__ import annotations

import functools

import numpy as np

from numba_cnn._cuda import cuda, from_dtype

NTHREADS = 256  # threads per block (a power of two: the tree reduction halves it)
TAPS = 16  # weight-gradient taps (r, s and the bias) accumulated per pass over N*P*Q


@functools.cache
def dw_forward_kernel(dtype: np.dtype):
    """Depthwise forward for one float dtype."""
    ft = from_dtype(dtype)

    @cuda.jit
    def conv2d_dw_fwd(x, w, b, has_bias, y, sh, sw, ph, pw, dlh, dlw):
        # x (N,C,H,W); w (C,1,R,S); b (C,) read when has_bias; y (N,C,P,Q)
        # grid-stride, one output element per thread
        N, C, H, W = x.shape
        R = w.shape[2]
        S = w.shape[3]
        P = y.shape[2]
        Q = y.shape[3]
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for idx in range(start, N * C * P * Q, stride):
            q = idx % Q
            p = (idx // Q) % P
            k = (idx // (P * Q)) % C
            n = idx // (C * P * Q)
            acc = ft(0)
            for r in range(R):
                h = p * sh - ph + r * dlh
                if h >= 0 and h < H:
                    for s in range(S):
                        ww = q * sw - pw + s * dlw
                        if ww >= 0 and ww < W:
                            acc += x[n, k, h, ww] * w[k, 0, r, s]
            if has_bias:
                acc += b[k]
            y[n, k, p, q] = acc

    return conv2d_dw_fwd


@functools.cache
def dw_backward_data_kernel(dtype: np.dtype):
    """Depthwise data gradient (gather form, no atomics) for one float dtype."""
    ft = from_dtype(dtype)

    @cuda.jit
    def conv2d_dw_bwd_data(dy, w, dx, sh, sw, ph, pw, dlh, dlw):
        # dy (N,C,P,Q); w (C,1,R,S); dx (N,C,H,W)
        # grid-stride, one input element per thread, p = (h + ph - r*dlh) / sh when exact
        N, C, H, W = dx.shape
        R = w.shape[2]
        S = w.shape[3]
        P = dy.shape[2]
        Q = dy.shape[3]
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for idx in range(start, N * C * H * W, stride):
            ww = idx % W
            h = (idx // W) % H
            c = (idx // (H * W)) % C
            n = idx // (C * H * W)
            acc = ft(0)
            for r in range(R):
                th = h + ph - r * dlh
                p = th // sh
                if th >= 0 and p * sh == th and p < P:
                    for s in range(S):
                        tw = ww + pw - s * dlw
                        q = tw // sw
                        if tw >= 0 and q * sw == tw and q < Q:
                            acc += dy[n, c, p, q] * w[c, 0, r, s]
            dx[n, c, h, ww] = acc

    return conv2d_dw_bwd_data


@functools.cache
def dw_backward_weight_kernel(dtype: np.dtype):
    """Depthwise weight (and bias) gradient partials for one float dtype."""
    ft = from_dtype(dtype)

    @cuda.jit
    def conv2d_dw_bwd_weight(dy, x, part, R, S, chunk, sh, sw, ph, pw, dlh, dlw):
        # dy (N,C,P,Q); x (N,C,H,W); part (chunks, C, Le): Le = R*S taps (+1: db column)
        # grid (C, chunks); 256 threads sum m = (n,p,q) over [chunk*blockIdx.y, +chunk) for
        # TAPS taps at a time in registers, then tree-reduce them in shared memory
        red = cuda.shared.array((TAPS, NTHREADS), ft)
        acc = cuda.local.array(TAPS, ft)
        N, C, P, Q = dy.shape
        H = x.shape[2]
        W = x.shape[3]
        Le = part.shape[2]
        RS = R * S
        PQ = P * Q
        M = N * PQ
        k = cuda.blockIdx.x
        ch = cuda.blockIdx.y
        t = cuda.threadIdx.x
        mend = min(M, ch * chunk + chunk)
        for c0 in range(0, Le, TAPS):
            for j in range(TAPS):
                acc[j] = ft(0)
            for m in range(ch * chunk + t, mend, NTHREADS):
                n = m // PQ
                pq = m - n * PQ
                p = pq // Q
                q = pq - p * Q
                g = dy[n, k, p, q]
                h0 = p * sh - ph
                w0 = q * sw - pw
                for j in range(TAPS):
                    col = c0 + j
                    if col < RS:
                        r = col // S
                        h = h0 + r * dlh
                        ww = w0 + (col - r * S) * dlw
                        if h >= 0 and h < H and ww >= 0 and ww < W:
                            acc[j] += g * x[n, k, h, ww]
                    elif col < Le:
                        acc[j] += g
            for j in range(TAPS):
                red[j, t] = acc[j]
            cuda.syncthreads()  # every partial is in shared memory before the tree reads it
            half = NTHREADS // 2
            while half > 0:
                if t < half:
                    for j in range(TAPS):
                        red[j, t] += red[j, t + half]
                cuda.syncthreads()  # this level's sums are written before the next reads
                half //= 2
            if t < TAPS and c0 + t < Le:
                part[ch, k, c0 + t] = red[t, 0]
            cuda.syncthreads()  # red's totals are read before the next taps overwrite red

    return conv2d_dw_bwd_weight
