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
        itemsize = 4 if dt == types.float32 else 8
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
        # each row's TB accumulators -> one vector of TB sums (a fixed tree, see lane_sums),
        # added into part[p0 + kk*prow : + TB] at once when the block is full
        full_t = builder.icmp_signed("==", tvv, ir.Constant(i64, TB))
        for kk in range(KB):
            sums = lane_sums(builder, acc_s[kk * TB : kk * TB + TB], VL, 16 // itemsize)
            row = builder.add(p0v, builder.mul(ir.Constant(i64, kk), prowv))
            ptr = builder.gep(p_arr.data, [row])
            ok_k = builder.icmp_signed("<", ir.Constant(i64, kk), kvv)
            with builder.if_else(builder.and_(ok_k, full_t)) as (full, part_):
                with full:
                    vp = builder.bitcast(ptr, sums.type.as_pointer())
                    builder.store(builder.fadd(builder.load(vp, align=1), sums), vp, align=1)
                with part_:
                    for tt in range(TB):
                        ok = builder.and_(ok_k, builder.icmp_signed("<", ir.Constant(i64, tt), tvv))
                        with builder.if_then(ok):
                            pt = builder.gep(ptr, [ir.Constant(i64, tt)])
                            sumv = builder.extract_element(sums, ir.Constant(i32, tt))
                            builder.store(builder.fadd(builder.load(pt), sumv), pt)
        return context.get_dummy_value()

    return sig, codegen


def lane_sums(builder, vecs, vl, seg):
    """[sum of the lanes of v for v in vecs] as one vector, by a fixed tree of shuffles.

    At each stride, pairs of vectors fold into one (lanes whose stride bit is clear keep the
    first vector's partial sums, the others the second's), strides inside a ``seg``-lane
    (128-bit) segment first, where shuffles are cheap: n vectors cost about n fadds, not
    n * log2(vl). One vector left is halved instead. A last shuffle orders the sums as vecs.
    """
    i32 = ir.IntType(32)

    def shuffle(a, b, idx):
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, len(idx)), idx))

    bits = vl.bit_length() - 1
    inner = seg.bit_length() - 1
    strides = [1 << b for b in range(inner - 1, -1, -1)]
    strides += [1 << b for b in range(bits - 1, inner - 1, -1)]
    items = [(v, [t] * vl) for t, v in enumerate(vecs)]
    width = vl
    while strides:
        s = strides.pop(0)
        if len(items) > 1:
            if len(items) % 2:
                items.append((ir.Constant(vecs[0].type, None), [None] * width))
            h = len(items) // 2
            lo = [i if not i & s else width + i - s for i in range(width)]
            hi = [i + s if not i & s else width + i for i in range(width)]
            items = [
                (builder.fadd(shuffle(a, b, lo), shuffle(a, b, hi)),
                 [la[i] if not i & s else lb[i] for i in range(width)])
                for (a, la), (b, lb) in zip(items[:h], items[h:], strict=True)
            ]  # fmt: skip
        else:
            ((a, la),) = items
            keep = [i for i in range(width) if not i & s]
            v = builder.fadd(shuffle(a, a, keep), shuffle(a, a, [i + s for i in keep]))
            items, width = [(v, [la[i] for i in keep])], width // 2
            strides = [t if t < s else t // 2 for t in strides]  # lane bit s is gone
    ((v, labels),) = items
    order = [labels.index(t) for t in range(len(vecs))]
    return v if order == list(range(width)) else shuffle(v, v, order)


@overload(dots, jit_options=dict(cache=True), inline="always")
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
