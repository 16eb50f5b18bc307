"""Packing for the CPU GEMM (``_gemm``): A and B blocks gathered through their index vectors
into the micro-kernel's panel layouts (``ap[p*kc*MR + k*MR + i]``, ``bp[k*NR + j]``), for the
operands that cannot be read where they lie.
"""

from __future__ import annotations

from numba import njit


# A[m0:m0+mc, k0:k0+kc] -> ap: micro-panels of MR rows, ap[p*kc*MR + k*MR + i], zero rows
# past M; k_inner reads along k (A contiguous along k), else along m. A whole panel of evenly
# spaced rows read along k, or of contiguous rows read along m, is copied k by k (MR values
# a step, no index loads: 0.8 ns an element against 0.9 and 2.4 by the general loops, AMD
# EPYC, one thread, 256 x 1000 float32)
@njit(cache=True, inline="always")
def pack_a(af, arow, acol, m0, mc, k0, kc, ap, MR, k_inner):
    M = arow.shape[0]
    zero = ap.dtype.type(0)
    for p in range((mc + MR - 1) // MR):
        base = p * kc * MR
        m = m0 + p * MR
        full = m + MR <= min(M, m0 + mc)
        if full and k_inner and acol[k0 + kc - 1] - acol[k0] == kc - 1:
            ld = arow[m + 1] - arow[m] if MR > 1 else 0
            even = True
            for i in range(2, MR):
                even = even and arow[m + i] - arow[m] == i * ld
            if even:
                src, dst = af[arow[m] + acol[k0] :], ap[base:]
                for k in range(kc):
                    for i in range(MR):
                        dst[k * MR + i] = src[i * ld + k]
                continue
        if full and not k_inner and arow[m + MR - 1] - arow[m] == MR - 1:
            dst = ap[base:]
            for k in range(kc):
                src = af[acol[k0 + k] + arow[m] :]
                for i in range(MR):
                    dst[k * MR + i] = src[i]
            continue
        for i in range(MR):
            if m + i >= M or m + i >= m0 + mc:
                for k in range(kc):
                    ap[base + k * MR + i] = zero
            elif k_inner:
                src = af[arow[m + i] :]
                for k in range(kc):
                    ap[base + k * MR + i] = src[acol[k0 + k]]
        if k_inner:
            continue
        for k in range(kc):
            src = af[acol[k0 + k] :]
            for i in range(min(MR, min(M, m0 + mc) - m)):
                ap[base + k * MR + i] = src[arow[m + i]]


# B[k0:k0+kc, n0:n0+nq] -> bp[k*NR + j] (one micro-panel, zero columns past nq); k_inner
# reads along k (B contiguous along k), else along n
@njit(cache=True, inline="always")
def pack_b(bf, brow, bcol, k0, kc, n0, nq, bp, NR, k_inner):
    zero = bp.dtype.type(0)
    if k_inner:
        run = brow[k0 + kc - 1] - brow[k0] == kc - 1
        for j in range(nq):
            src = bf[bcol[n0 + j] :]
            if run:
                s2 = src[brow[k0] :]
                for k in range(kc):
                    bp[k * NR + j] = s2[k]
            else:
                for k in range(kc):
                    bp[k * NR + j] = src[brow[k0 + k]]
    elif nq == NR and bcol[n0 + NR - 1] - bcol[n0] == NR - 1:  # contiguous columns
        c0 = bcol[n0]
        for k in range(kc):
            src = bf[brow[k0 + k] + c0 :]
            dst = bp[k * NR :]
            for j in range(NR):
                dst[j] = src[j]
    else:
        cols = bcol[n0 : n0 + nq]
        for k in range(kc):
            src = bf[brow[k0 + k] :]
            dst = bp[k * NR :]
            for j in range(nq):
                dst[j] = src[cols[j]]
    for j in range(nq, NR):
        for k in range(kc):
            bp[k * NR + j] = zero
