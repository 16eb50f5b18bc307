"""Direct stride-1 weight gradient: dw = wide dy (K, P*Wp) times the shifted windows of the
padded input (see ``conv2d_direct``), as dot products (``_dot_micro``) reduced over fixed
sample chunks (the result does not depend on the thread count).
"""

from __future__ import annotations

from numba import njit, prange

from ._dot_micro import block, dots

#: Samples summed in registers before the lanes are added (the x windows of NS samples stay
#: in L2).
NS = 4


# dy (N,K,P,Q) -> dyw (N, K, L16): row p at p*Wp, zeros at q >= Q and past P*Wp; sums (N, K)
# = each plane's sum (for the bias gradient, added over n by sum_parts, while the plane is
# read anyway); per (n, k)
@njit(parallel=True, cache=True, fastmath={"reassoc"}, _nrt=False)
def widen(dy, dyw, Wp, sums):
    N, K, P, Q = dy.shape
    L16 = dyw.shape[2]
    zero = dy.dtype.type(0)
    for nk in prange(N * K):
        n = nk // K
        k = nk % K
        for t in range(L16):
            dyw[n, k, t] = zero
        acc = zero
        for p in range(P):
            src = dy[n, k, p]
            dst = dyw[n, k, p * Wp :]
            for q in range(Q):
                v = src[q]
                dst[q] = v
                acc += v  # reassociated: vector lanes, a fixed order for a given build
        sums[n, k] = acc


# dyw (N, K, L16) wide dy; xp as direct_fwd; part (nchunk, K, Cg*R*S) partial sums over the
# samples of each chunk. One prange iteration per (chunk, KB output channels of a group); the
# micro-kernel (``_dot_micro.dots``) sums KB x TB dot products over NS samples at a time.
@njit(parallel=True, cache=True, _nrt=False)
def direct_dw(dyw, xp, offs, part, nchunk):
    N, K, L = dyw.shape
    CRS = part.shape[2]
    G = offs.shape[0] // CRS
    Kg = K // G
    KB, TB, VL = block(dyw)
    nkb = (Kg + KB - 1) // KB
    per = (N + nchunk - 1) // nchunk
    XS = xp.shape[1]
    df, xf, pf = dyw.reshape(-1), xp.reshape(-1), part.reshape(-1)
    zero = dyw.dtype.type(0)
    for it in prange(nchunk * G * nkb):
        ci = it // (G * nkb)
        g = (it // nkb) % G
        k0 = g * Kg + (it % nkb) * KB
        kv = min(KB, (g + 1) * Kg - k0)
        for k in range(k0, k0 + kv):
            for i in range(CRS):
                part[ci, k, i] = zero
        end = min(N, (ci + 1) * per)
        for n0 in range(ci * per, end, NS):
            ns = min(NS, end - n0)
            for t0 in range(0, CRS, TB):
                dots(df, (n0 * K + k0) * L, L, K * L, xf, n0 * XS, XS, offs, g * CRS + t0, ns,
                     L, pf, (ci * K + k0) * CRS + t0, CRS, kv, min(TB, CRS - t0))  # fmt: skip


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
