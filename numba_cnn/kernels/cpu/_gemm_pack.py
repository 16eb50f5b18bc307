"""Packing for the CPU GEMM (``_gemm``): A and B blocks gathered through their index vectors
into the micro-kernel's panel layouts (``ap[p*kc*MR + k*MR + i]``, ``bp[k*NR + j]``), for the
operands that cannot be read where they lie.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._gemm_micro import TILES


def copy_mr(src, s0, dst, d0):
    """dst[d0 : d0 + MR] = src[s0 : s0 + MR] (njit only; both ranges in bounds)."""
    raise NotImplementedError("copy_mr runs inside njit code only")


def copy_nr(src, s0, dst, d0):
    """dst[d0 : d0 + NR] = src[s0 : s0 + NR] (njit only; both ranges in bounds)."""
    raise NotImplementedError("copy_nr runs inside njit code only")


@intrinsic
def _copy(typingctx, src, s0, dst, d0, n):
    # a fixed-length memcpy: LLVM expands it into a few vector moves. The element loops it
    # replaces became one scalar load and store an element (the arrays may alias, as far as
    # LLVM knows), plus a view with index wrap-around a row: 15% of a (256,512)->1000 dw.
    if not isinstance(n, types.IntegerLiteral) or src.dtype != dst.dtype:
        return None

    def codegen(context, builder, signature, args):
        st = signature.args
        sa = context.make_array(st[0])(context, builder, args[0])
        da = context.make_array(st[2])(context, builder, args[2])
        i0 = context.cast(builder, args[1], st[1], types.int64)
        j0 = context.cast(builder, args[3], st[3], types.int64)
        size = context.get_abi_sizeof(context.get_data_type(st[0].dtype))
        cgutils.raw_memcpy(builder, builder.gep(da.data, [j0]), builder.gep(sa.data, [i0]),
                           ir.Constant(ir.IntType(64), n.literal_value), size)  # fmt: skip
        return context.get_dummy_value()

    return types.void(src, s0, dst, d0, n), codegen


@overload(copy_mr, jit_options=dict(cache=True), inline="always")
def _copy_mr_overload(src, s0, dst, d0):
    mr = TILES[np.dtype(str(src.dtype))][0]
    return lambda src, s0, dst, d0: _copy(src, s0, dst, d0, mr)


@overload(copy_nr, jit_options=dict(cache=True), inline="always")
def _copy_nr_overload(src, s0, dst, d0):
    nr = TILES[np.dtype(str(src.dtype))][1]
    return lambda src, s0, dst, d0: _copy(src, s0, dst, d0, nr)


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
            for k in range(kc):  # MR contiguous values a step
                copy_mr(af, acol[k0 + k] + arow[m], ap, base + k * MR)
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
# reads along k (B contiguous along k), else along n. MR and NR (here and in pack_a) are
# the TILES of the operands' dtype, the lengths copy_mr / copy_nr read from there.
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
            copy_nr(bf, brow[k0 + k] + c0, bp, k * NR)
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
