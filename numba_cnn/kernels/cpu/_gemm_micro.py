"""The GEMM micro-kernel: an MR x NR tile of C in vector registers, written as LLVM IR.

Numba's loop and SLP vectorisers turn a plain-Python register tile into scalar FMAs with
spills (tried first: 1.3 GFLOP/s on one core), so ``micro`` emits the IR itself: MR vector
accumulators of NR lanes (``<NR x float>`` phis), each k step loads one NR-wide row of the
packed B panel, broadcasts MR values of the packed A panel and issues MR ``llvm.fma`` calls.
LLVM legalises ``<16 x float>`` to two ymm registers on AVX2 and one zmm where 512-bit
vectors are enabled (``numba_cnn._cpu_target``). On the AVX2 EPYC (znver1) of 2026-11-30:
12 ``vfmadd231ps`` ymm in the loop, 39.8 GFLOP/s on one core for kc = 256 (the core's peak
is 16 FLOP a cycle).

Tile sizes come from the compile target's features (``tile_for``): enough accumulators to
hide FMA latency, one or two vector registers of B, one broadcast, within the register file.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ... import _cpu_target


def tile_for(dtype: np.dtype, bits: int, nregs: int) -> tuple[int, int]:
    """(MR, NR) for a vector width of ``bits`` and ``nregs`` vector registers."""
    lanes = bits // (8 * np.dtype(dtype).itemsize)
    nr = 2 * lanes  # two vector registers of B per k step
    mr = 12 if nregs >= 32 else (6 if bits >= 256 else 4)
    return mr, nr


_BITS, _NREGS = _cpu_target.vector_shape()
TILES = {np.dtype(d): tile_for(d, _BITS, _NREGS) for d in (np.float32, np.float64)}


def tile(a):
    """(MR, NR) of the micro-kernel for a's dtype (a compile-time constant inside njit)."""
    return TILES[np.dtype(a.dtype)]


@overload(tile, jit_options=dict(cache=True))
def _tile_overload(a):
    mr, nr = TILES[np.dtype(str(a.dtype))]
    return lambda a: (mr, nr)


def counted_loop(builder, n, step, init, body, name):
    """IR of ``for i in range(0, n, step)`` carrying the values ``init`` (phis); ``body(i,
    vals)`` emits one iteration and returns the next values. Returns the values at exit."""
    i64 = ir.IntType(64)
    pre = builder.block
    head = builder.append_basic_block(f"{name}.head")
    loop = builder.append_basic_block(f"{name}.body")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(head)
    builder.position_at_end(head)
    i = builder.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), pre)
    vals = []
    for v in init:
        p = builder.phi(v.type)
        p.add_incoming(v, pre)
        vals.append(p)
    builder.cbranch(builder.icmp_signed("<", i, n), loop, done)
    builder.position_at_end(loop)
    new = body(i, vals)
    end = builder.block
    i.add_incoming(builder.add(i, ir.Constant(i64, step)), end)
    for p, v in zip(vals, new, strict=True):
        p.add_incoming(v, end)
    builder.branch(head)
    builder.position_at_end(done)
    return vals


def micro(ap, ao, bp, bo, kc, acc, out):
    """acc[i*NR + j] = sum_k ap[ao + k*MR + i] * bp[bo + k*NR + j] (njit only); with ``out``
    a tuple the tile goes to C instead (``_micro``'s epilogue)."""
    raise NotImplementedError("micro runs inside njit code only")


@intrinsic
def _micro(typingctx, ap, ao, bp, bo, brow, k0, kc, acc, out, mr, nr, half):
    """A at ap[ao + k*MR + i] (packed) when ao is an integer; ao = (arow, m1, mp, a0) reads A
    where it lies instead, row i at ap[arow[m1 + min(i, mp - 1)] + a0 + k] (rows contiguous
    along k; rows past mp repeat the last one, whose results are dropped).
    B at bp[bo + k*NR] (packed) when brow is None, else at bp[bo + brow[k0 + k]]; with
    ``half`` given (rows only), lanes NR/2.. of row k come from bp[bo + half + brow[k0 + k]]
    instead (a panel of two contiguous runs, e.g. the end of one image row and the start of
    the next: two vector loads either way).

    ``out`` None: the tile goes to acc. Else out = (cf, crow, m0, c0, mp, beta, bias, bmode,
    n0) and row i < mp of the tile goes straight from the registers to C (the epilogue):
    cf[crow[m0 + i] + c0 + j] = tile[i, j] (+ the old value when beta) (+ bias[m0 + i] when
    bmode == 1, + bias[n0 + j] when bmode == 2), NR contiguous columns."""
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(nr, types.IntegerLiteral)):
        return None
    if ap.dtype not in (types.float32, types.float64) or not (ap.dtype == bp.dtype == acc.dtype):
        return None
    MR, NR, dt = mr.literal_value, nr.literal_value, ap.dtype
    rows = not isinstance(brow, types.NoneType)
    direct = not isinstance(out, types.NoneType)
    split = not isinstance(half, types.NoneType)
    if split and (not rows or NR % 2):
        return None
    a_rows = isinstance(ao, types.BaseTuple)
    sig = types.void(ap, ao, bp, bo, brow, k0, kc, acc, out, mr, nr, half)

    def codegen(context, builder, signature, args):
        apv, aov, bpv, bov, browv, k0v, kcv, accv, outv = args[:9]
        a_arr = context.make_array(signature.args[0])(context, builder, apv)
        b_arr = context.make_array(signature.args[2])(context, builder, bpv)
        c_arr = context.make_array(signature.args[7])(context, builder, accv)
        if rows:
            r_arr = context.make_array(signature.args[4])(context, builder, browv)
            pr = builder.gep(r_arr.data, [k0v])
        ft = context.get_data_type(dt)
        vt = ir.VectorType(ft, NR)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        sfx = "f32" if dt == types.float32 else "f64"
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{NR}{sfx}"
        )
        if a_rows:  # loop-invariant: where each of the MR rows of A starts
            arow, m1, mp, a0 = cgutils.unpack_tuple(builder, aov)
            at = signature.args[1]
            ar_arr = context.make_array(at[0])(context, builder, arow)
            m1, mp, a0 = (context.cast(builder, v, t, types.int64)
                          for v, t in ((m1, at[1]), (mp, at[2]), (a0, at[3])))  # fmt: skip
            last = builder.add(m1, builder.sub(mp, ir.Constant(i64, 1)))
            arows = []
            for i in range(MR):
                m = builder.add(m1, ir.Constant(i64, i))
                m = builder.select(builder.icmp_signed("<", m, last), m, last)
                off = builder.add(builder.load(builder.gep(ar_arr.data, [m])), a0)
                arows.append(builder.gep(a_arr.data, [off]))
        else:
            pa = builder.gep(a_arr.data, [aov])
        pb = builder.gep(b_arr.data, [bov])
        zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * NR)
        undef = ir.Constant(vt, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, NR), [0] * NR)

        def bcast(x):
            return builder.shuffle_vector(
                builder.insert_element(undef, x, ir.Constant(i32, 0)), undef, splat
            )

        if split:
            hv = context.cast(builder, args[11], signature.args[11], types.int64)
            ht = ir.VectorType(ft, NR // 2)
            cat = ir.Constant(ir.VectorType(i32, NR), list(range(NR)))

        def step(k, accs):
            if rows:
                bptr = builder.gep(pb, [builder.load(builder.gep(pr, [k]))])
            else:
                bptr = builder.gep(pb, [builder.mul(k, ir.Constant(i64, NR))])
            if split:  # two half rows, joined (no shuffle once legalised to registers)
                lo = builder.load(builder.bitcast(bptr, ht.as_pointer()), align=1)
                hp = builder.gep(bptr, [hv])
                hi = builder.load(builder.bitcast(hp, ht.as_pointer()), align=1)
                bv = builder.shuffle_vector(lo, hi, cat)
            else:
                bv = builder.load(builder.bitcast(bptr, vt.as_pointer()), align=1)
            if a_rows:
                aptr = [builder.gep(arows[i], [k]) for i in range(MR)]
            else:
                abase = builder.gep(pa, [builder.mul(k, ir.Constant(i64, MR))])
                aptr = [builder.gep(abase, [ir.Constant(i64, i)]) for i in range(MR)]
            return [
                builder.call(fma, [bcast(builder.load(aptr[i])), bv, accs[i]]) for i in range(MR)
            ]

        accs = counted_loop(builder, kcv, 1, [zero] * MR, step, "micro")
        if not direct:
            for i in range(MR):
                cptr = builder.gep(c_arr.data, [ir.Constant(i64, i * NR)])
                builder.store(accs[i], builder.bitcast(cptr, vt.as_pointer()), align=1)
            return context.get_dummy_value()
        _epilogue(context, builder, signature.args[8], outv, accs, vt, ft, bcast)
        return context.get_dummy_value()

    return sig, codegen


def _epilogue(context, builder, out_ty, outv, accs, vt, ft, bcast):
    """Rows i < mp of the register tile to C (see ``_micro``); a branch a row and a mode.
    A tenth entry of ``out``, chalf, sends lanes NR/2.. to c0 + chalf instead (two half-rows
    of C; where they overlap both halves hold the same values)."""
    vals = cgutils.unpack_tuple(builder, outv)
    cf, crow, m0, c0, mp, beta, bias, bmode, n0 = vals[:9]
    split = len(vals) == 10
    cf_arr = context.make_array(out_ty[0])(context, builder, cf)
    cr_arr = context.make_array(out_ty[1])(context, builder, crow)
    b_arr = context.make_array(out_ty[6])(context, builder, bias)
    i64 = ir.IntType(64)
    m0, c0, mp, n0, bmode = (
        context.cast(builder, v, t, types.int64)
        for v, t in ((m0, out_ty[2]), (c0, out_ty[3]), (mp, out_ty[4]), (n0, out_ty[8]),
                     (bmode, out_ty[7]))
    )  # fmt: skip
    beta = context.cast(builder, beta, out_ty[5], types.boolean)
    zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * vt.count)
    if split:
        ch = context.cast(builder, vals[9], out_ty[9], types.int64)
        h = vt.count // 2
        ht = ir.VectorType(ft, h)
        i32 = ir.IntType(32)
        lanes = [ir.Constant(ir.VectorType(i32, h), list(range(o, o + h))) for o in (0, h)]
        cat = ir.Constant(ir.VectorType(i32, vt.count), list(range(vt.count)))

    def load_c(ptr):
        if not split:
            return builder.load(ptr, align=1)
        lo = builder.load(builder.bitcast(ptr, ht.as_pointer()), align=1)
        p2 = builder.bitcast(builder.gep(builder.bitcast(ptr, ft.as_pointer()), [ch]),
                             ht.as_pointer())  # fmt: skip
        return builder.shuffle_vector(lo, builder.load(p2, align=1), cat)

    def store_c(v, ptr):
        if not split:
            builder.store(v, ptr, align=1)
            return
        builder.store(builder.shuffle_vector(v, v, lanes[0]),
                      builder.bitcast(ptr, ht.as_pointer()), align=1)  # fmt: skip
        p2 = builder.bitcast(builder.gep(builder.bitcast(ptr, ft.as_pointer()), [ch]),
                             ht.as_pointer())  # fmt: skip
        builder.store(builder.shuffle_vector(v, v, lanes[1]), p2, align=1)

    is1 = builder.icmp_signed("==", bmode, ir.Constant(i64, 1))
    bn = cgutils.alloca_once_value(builder, zero)  # bias[n0 : n0 + NR] in mode 2, else 0
    with builder.if_then(builder.icmp_signed("==", bmode, ir.Constant(i64, 2))):
        p = builder.bitcast(builder.gep(b_arr.data, [n0]), vt.as_pointer())
        builder.store(builder.load(p, align=1), bn)
    bcol = builder.load(bn)
    for i, a in enumerate(accs):
        with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, i), mp)):
            m = builder.add(m0, ir.Constant(i64, i))
            off = builder.add(builder.load(builder.gep(cr_arr.data, [m])), c0)
            ptr = builder.bitcast(builder.gep(cf_arr.data, [off]), vt.as_pointer())
            v = builder.fadd(a, bcol)
            slot = cgutils.alloca_once_value(builder, v)
            with builder.if_then(is1):
                bm = builder.load(builder.gep(b_arr.data, [m]))
                builder.store(builder.fadd(builder.load(slot), bcast(bm)), slot)
            with builder.if_then(beta):
                builder.store(builder.fadd(builder.load(slot), load_c(ptr)), slot)
            store_c(builder.load(slot), ptr)


@overload(micro, jit_options=dict(cache=True))
def _micro_overload(ap, ao, bp, bo, kc, acc, out):
    mr, nr = TILES[np.dtype(str(ap.dtype))]
    return lambda ap, ao, bp, bo, kc, acc, out: _micro(
        ap, ao, bp, bo, None, 0, kc, acc, out, mr, nr, None
    )


def micro_rows(ap, ao, bf, brow, k0, bo, kc, acc, out, half):
    """As ``micro`` with B read in place: row k at bf[brow[k0 + k] + bo], its lanes NR/2..
    at bf[brow[k0 + k] + bo + half] (``half`` = NR/2 when the panel is one run; njit only)."""
    raise NotImplementedError("micro_rows runs inside njit code only")


@overload(micro_rows, jit_options=dict(cache=True))
def _micro_rows_overload(ap, ao, bf, brow, k0, bo, kc, acc, out, half):
    mr, nr = TILES[np.dtype(str(ap.dtype))]
    return lambda ap, ao, bf, brow, k0, bo, kc, acc, out, half: _micro(
        ap, ao, bf, bo, brow, k0, kc, acc, out, mr, nr, half
    )
