"""Direct stride-1 weight gradient: dw = wide dy (K, P*Wp) times the shifted windows of the
padded input (see ``conv2d_direct``), as dot products reduced over fixed sample chunks.
"""

from __future__ import annotations

from numba import njit, prange

from .conv2d_direct import _FM


# dy (N,K,P,Q) -> dyw (N, K, L16): row p at p*Wp, zeros at q >= Q and past P*Wp; per (n, k)
@njit(parallel=True, cache=True)
def widen(dy, dyw, Wp):
    N, K, P, Q = dy.shape
    L16 = dyw.shape[2]
    zero = dy.dtype.type(0)
    for nk in prange(N * K):
        n = nk // K
        k = nk % K
        for t in range(L16):
            dyw[n, k, t] = zero
        for p in range(P):
            for q in range(Q):
                dyw[n, k, p * Wp + q] = dy[n, k, p, q]


# dyw (N, K, L16) wide dy; xp as direct_fwd; part (nchunk, K, Cg*R*S) partial sums over the
# samples of each chunk. One prange iteration per (chunk, four output channels of a group):
# 4 channels x 4 taps = 16 dot products share every load.
@njit(parallel=True, cache=True, fastmath=_FM)
def direct_dw(dyw, xp, offs, part, nchunk):
    N, K, L = dyw.shape
    CRS = part.shape[2]
    G = offs.shape[0] // CRS
    Kg = K // G
    nq = (Kg + 3) // 4
    per = (N + nchunk - 1) // nchunk
    zero = dyw.dtype.type(0)
    for it in prange(nchunk * G * nq):
        ci = it // (G * nq)
        g = (it // nq) % G
        last = (g + 1) * Kg - 1
        k0 = g * Kg + 4 * (it % nq)
        k1, k2, k3 = min(k0 + 1, last), min(k0 + 2, last), min(k0 + 3, last)  # repeats: no store
        base = g * CRS
        for i in range(CRS):
            part[ci, k0, i] = zero
            part[ci, k1, i] = zero
            part[ci, k2, i] = zero
            part[ci, k3, i] = zero
        for n in range(ci * per, min(N, (ci + 1) * per)):
            d0, d1, d2, d3 = dyw[n, k0], dyw[n, k1], dyw[n, k2], dyw[n, k3]
            xs = xp[n]
            i = 0
            while i < CRS:  # slices: non-negative loop indices vectorise
                i1, i2, i3 = min(i + 1, CRS - 1), min(i + 2, CRS - 1), min(i + 3, CRS - 1)
                x0 = xs[offs[base + i] :]
                x1 = xs[offs[base + i1] :]
                x2 = xs[offs[base + i2] :]
                x3 = xs[offs[base + i3] :]
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                c0 = c1 = c2 = c3 = e0 = e1 = e2 = e3 = zero
                for j in range(L):
                    u0, u1, u2, u3 = x0[j], x1[j], x2[j], x3[j]
                    f = d0[j]
                    a0 += f * u0
                    a1 += f * u1
                    a2 += f * u2
                    a3 += f * u3
                    f = d1[j]
                    b0 += f * u0
                    b1 += f * u1
                    b2 += f * u2
                    b3 += f * u3
                    f = d2[j]
                    c0 += f * u0
                    c1 += f * u1
                    c2 += f * u2
                    c3 += f * u3
                    f = d3[j]
                    e0 += f * u0
                    e1 += f * u1
                    e2 += f * u2
                    e3 += f * u3
                _store4(part, ci, k0, i, i1, i2, i3, a0, a1, a2, a3)
                if k1 != k0:
                    _store4(part, ci, k1, i, i1, i2, i3, b0, b1, b2, b3)
                if k2 != k1:
                    _store4(part, ci, k2, i, i1, i2, i3, c0, c1, c2, c3)
                if k3 != k2:
                    _store4(part, ci, k3, i, i1, i2, i3, e0, e1, e2, e3)
                i += 4


@njit(cache=True, inline="always")
def _store4(part, ci, k, i, i1, i2, i3, v0, v1, v2, v3):
    # taps past the end repeat the last one (i1..i3 clipped): add each distinct tap once
    part[ci, k, i] += v0
    if i1 != i:
        part[ci, k, i1] += v1
    if i2 != i1:
        part[ci, k, i2] += v2
    if i3 != i2:
        part[ci, k, i3] += v3


# part (nchunk, K, CRS) -> dw (K, CRS), summed in chunk order (deterministic)
@njit(cache=True)
def sum_parts(part, dw):
    nchunk, K, CRS = part.shape
    for k in range(K):
        for i in range(CRS):
            acc = part[0, k, i]
            for ci in range(1, nchunk):
                acc += part[ci, k, i]
            dw[k, i] = acc
