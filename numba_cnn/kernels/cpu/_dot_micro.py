"""The weight-gradient micro-kernel: KB x TB dot products in vector registers, as LLVM IR.

The stride-1 weight gradient is a sum of dot products along the wide output plane (see
``conv2d_direct``): dw[k, t] = sum_n sum_j dyw[n, k, j] * xp[n, tap[t] + j]. ``dots`` keeps a
KB x TB block of them in vector accumulators (3 x 4 ymm on AVX2, 4 x 6 zmm with 32 vector
registers): each step of VL lanes loads KB rows of dy and TB shifted windows of x and issues
KB * TB FMAs, 7 loads for 12 FMAs on AVX2. The sums run over ``ns`` samples before the lanes
are added (a fixed tree: the result does not depend on the thread count) into ``part``.
Plain Python with 12 accumulators vectorises into spills, hence the IR (as ``_gemm_micro``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ... import _cpu_target
from ._gemm_micro import counted_loop


def block_for(dtype: np.dtype, bits: int, nregs: int) -> tuple[int, int, int]:
    """(KB, TB, VL): KB*TB accumulators + KB dy vectors + one x vector fit the registers."""
    vl = bits // (8 * np.dtype(dtype).itemsize)
    kb, tb = (4, 6) if nregs >= 32 else (3, 4)
    return kb, tb, vl


_BITS, _NREGS = _cpu_target.vector_shape()
BLOCKS = {np.dtype(d): block_for(d, _BITS, _NREGS) for d in (np.float32, np.float64)}


def dots(d, d0, drow, dsn, x, x0, xsn, taps, t0, ns, L, part, p0, prow, kv, tv):
    """part[p0 + kk*prow + tt] += sum_{s < ns, j < L} d[d0 + s*dsn + kk*drow + j] *
    x[x0 + s*xsn + taps[t0 + tt] + j] for kk < kv <= KB, tt < tv <= TB; L a multiple of VL,
    every row and window readable to L (njit only)."""
    raise NotImplementedError("dots runs inside njit code only")


@intrinsic
def _dots(typingctx, d, d0, drow, dsn, x, x0, xsn, taps, t0, ns, L, part, p0, prow, kv, tv, kb,
          tb, vl):  # fmt: skip
    lits = (kb, tb, vl)
    if not all(isinstance(v, types.IntegerLiteral) for v in lits):
        return None
    if d.dtype not in (types.float32, types.float64) or not (d.dtype == x.dtype == part.dtype):
        return None
    KB, TB, VL = (v.literal_value for v in lits)
    dt = d.dtype
    sig = types.void(d, d0, drow, dsn, x, x0, xsn, taps, t0, ns, L, part, p0, prow, kv, tv,
                     kb, tb, vl)  # fmt: skip

    def codegen(context, builder, signature, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        st = signature.args
        dv, xv, tapv, partv = args[0], args[4], args[7], args[11]
        ints = [
            context.cast(builder, args[i], st[i], types.int64)
            for i in (1, 2, 3, 5, 6, 8, 9, 10, 12, 13, 14, 15)
        ]
        d0v, drowv, dsnv, x0v, xsnv, t0v, nsv, Lv, p0v, prowv, kvv, tvv = ints
        d_arr = context.make_array(st[0])(context, builder, dv)
        x_arr = context.make_array(st[4])(context, builder, xv)
        t_arr = context.make_array(st[7])(context, builder, tapv)
        p_arr = context.make_array(st[11])(context, builder, partv)
        ft = context.get_data_type(dt)
        vt = ir.VectorType(ft, VL)
        sfx = "f32" if dt == types.float32 else "f64"
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{VL}{sfx}"
        )
        one = ir.Constant(i64, 1)

        def clamp(i, n):  # min(i, n - 1): rows/taps past the valid ones repeat the last one
            last = builder.sub(n, one)
            c = ir.Constant(i64, i)
            return builder.select(builder.icmp_signed("<", c, last), c, last)

        # loop-invariant bases: row kk of d and window tt of x in sample 0
        dbase = [
            builder.gep(d_arr.data, [builder.add(d0v, builder.mul(clamp(kk, kvv), drowv))])
            for kk in range(KB)
        ]
        xbase = []
        for tt in range(TB):
            off = builder.load(builder.gep(t_arr.data, [builder.add(t0v, clamp(tt, tvv))]))
            xbase.append(builder.gep(x_arr.data, [builder.add(x0v, off)]))
        zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * VL)

        def vload(base, off):
            p = builder.gep(base, [off])
            return builder.load(builder.bitcast(p, vt.as_pointer()), align=1)

        def sample(s, acc_s):  # for s in range(ns): for j in range(0, L, VL)
            sd, sx = builder.mul(s, dsnv), builder.mul(s, xsnv)

            def step(j, acc):
                dj, xj = builder.add(sd, j), builder.add(sx, j)
                dvec = [vload(b, dj) for b in dbase]
                new = list(acc)
                for tt in range(TB):
                    xvec = vload(xbase[tt], xj)
                    for kk in range(KB):
                        k = kk * TB + tt
                        new[k] = builder.call(fma, [dvec[kk], xvec, acc[k]])
                return new

            return counted_loop(builder, Lv, VL, acc_s, step, "dots.j")

        acc_s = counted_loop(builder, nsv, 1, [zero] * (KB * TB), sample, "dots.s")
        # lanes added by a fixed halving tree, valid sums added into part
        for kk in range(KB):
            for tt in range(TB):
                v, w = acc_s[kk * TB + tt], VL
                while w > 1:
                    h = w // 2
                    lo = builder.shuffle_vector(
                        v, v, ir.Constant(ir.VectorType(i32, h), list(range(h)))
                    )
                    hi = builder.shuffle_vector(
                        v, v, ir.Constant(ir.VectorType(i32, h), list(range(h, w)))
                    )
                    v, w = builder.fadd(lo, hi), h
                sumv = builder.extract_element(v, ir.Constant(i32, 0))
                ok = builder.and_(
                    builder.icmp_signed("<", ir.Constant(i64, kk), kvv),
                    builder.icmp_signed("<", ir.Constant(i64, tt), tvv),
                )
                with builder.if_then(ok):
                    off = builder.add(p0v, builder.add(builder.mul(ir.Constant(i64, kk), prowv),
                                                       ir.Constant(i64, tt)))  # fmt: skip
                    ptr = builder.gep(p_arr.data, [off])
                    builder.store(builder.fadd(builder.load(ptr), sumv), ptr)
        return context.get_dummy_value()

    return sig, codegen


@overload(dots, jit_options=dict(cache=True))
def _dots_overload(d, d0, drow, dsn, x, x0, xsn, taps, t0, ns, L, part, p0, prow, kv, tv):
    kb, tb, vl = BLOCKS[np.dtype(str(d.dtype))]

    def impl(d, d0, drow, dsn, x, x0, xsn, taps, t0, ns, L, part, p0, prow, kv, tv):
        _dots(d, d0, drow, dsn, x, x0, xsn, taps, t0, ns, L, part, p0, prow, kv, tv, kb, tb, vl)

    return impl


def block(a):
    """(KB, TB, VL) of ``dots`` for a's dtype (a compile-time constant inside njit)."""
    return BLOCKS[np.dtype(a.dtype)]


@overload(block, jit_options=dict(cache=True))
def _block_overload(a):
    kb, tb, vl = BLOCKS[np.dtype(str(a.dtype))]
    return lambda a: (kb, tb, vl)
