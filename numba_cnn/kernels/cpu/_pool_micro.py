"""Max pooling 2x2, stride 2, eight outputs at a time in vector registers (LLVM IR), and
the kernel that runs it over planes (``pooling`` dispatches to it).

On random data each "is this tap larger" test is a coin toss: compiled as branches (which
LLVM chooses for the scalar loop) every output pays about three mispredictions, 20 ns an
output on the 2-vCPU EPYC (10 ms for a (64, 32, 32, 32) input against 2 ms on sorted
data). ``max2x2`` loads 16 values of each input row, splits even and odd columns with
shuffles and keeps the running maximum and its tap with vector selects (blends): no branch.
The taps are visited in row-major order with the rules of ``pooling._max_fwd_idx`` (strict
``>``: the first maximum wins; a NaN replaces the maximum: the last NaN wins).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic


@intrinsic
def max2x2(typingctx, x0, x1, j, y, o, idx, i0, W, with_idx, vl):
    """y[o + u] = max of x0[j + 2u], x0[j + 2u + 1], x1[j + 2u], x1[j + 2u + 1] for u < vl
    (a literal); with_idx: idx[o + u] = i0 + j + 2u + tap (tap 0, 1, W, W + 1). x0, x1, y
    float32/float64 1-D, idx int64 1-D; every index in bounds (the caller's job)."""
    if not (x0.dtype == x1.dtype == y.dtype and x0.dtype in (types.float32, types.float64)):
        return None
    if not isinstance(vl, types.IntegerLiteral):
        return None
    VL = vl.literal_value
    sig = types.void(x0, x1, j, y, o, idx, i0, W, with_idx, vl)

    def codegen(context, builder, signature, args):
        st = signature.args
        x0v, x1v, jv, yv, ov, iv, i0v, Wv, wiv = args[:9]
        i64, i32 = ir.IntType(64), ir.IntType(32)
        jv, ov, i0v, Wv = (
            context.cast(builder, v, t, types.int64)
            for v, t in ((jv, st[2]), (ov, st[4]), (i0v, st[6]), (Wv, st[7]))
        )
        ft = context.get_data_type(st[0].dtype)
        v2, v1 = ir.VectorType(ft, 2 * VL), ir.VectorType(ft, VL)
        iv1 = ir.VectorType(i64, VL)
        even = ir.Constant(ir.VectorType(i32, VL), list(range(0, 2 * VL, 2)))
        odd = ir.Constant(ir.VectorType(i32, VL), list(range(1, 2 * VL, 2)))

        def halves(arr_ty, arr):
            a = context.make_array(arr_ty)(context, builder, arr)
            p = builder.bitcast(builder.gep(a.data, [jv]), v2.as_pointer())
            v = builder.load(p, align=1)
            return builder.shuffle_vector(v, v, even), builder.shuffle_vector(v, v, odd)

        def splat(s):
            u = ir.Constant(iv1, ir.Undefined)
            u = builder.insert_element(u, s, ir.Constant(i32, 0))
            return builder.shuffle_vector(u, u, ir.Constant(ir.VectorType(i32, VL), [0] * VL))

        a, b = halves(st[0], x0v)
        c, d = halves(st[1], x1v)
        m = a
        t = ir.Constant(iv1, [0] * VL)
        for v, tap in ((b, splat(ir.Constant(i64, 1))), (c, splat(Wv)),
                       (d, splat(builder.add(Wv, ir.Constant(i64, 1))))):  # fmt: skip
            up = builder.or_(builder.fcmp_ordered(">", v, m), builder.fcmp_unordered("uno", v, v))
            m = builder.select(up, v, m)
            t = builder.select(up, tap, t)
        ya = context.make_array(st[3])(context, builder, yv)
        builder.store(m, builder.bitcast(builder.gep(ya.data, [ov]), v1.as_pointer()), align=1)
        with_idx = context.cast(builder, wiv, st[8], types.boolean)
        with builder.if_then(with_idx):
            ia = context.make_array(st[5])(context, builder, iv)
            base = builder.add(splat(builder.add(i0v, jv)),
                               ir.Constant(iv1, list(range(0, 2 * VL, 2))))  # fmt: skip
            p = builder.bitcast(builder.gep(ia.data, [ov]), iv1.as_pointer())
            builder.store(builder.add(base, t), p, align=1)
        return context.get_dummy_value()

    return sig, codegen


_JIT = dict(cache=True, parallel=True, error_model="numpy", fastmath=False)


# x (B,H,W); y, idx (B,P,Q): the 2x2 stride-2 window without padding or dilation, every
# window inside x (2P <= H, 2Q <= W); idx written when with_idx (else a dummy). Eight (or,
# for Q < 8, four) outputs a step branch-free (``_pool_micro``); a last step that overlaps
# the one before covers Q % 8 (the same values written twice), in a loop of its own (in the
# same loop it made LLVM's code for every row 5x slower); scalar only for Q < 4.
@njit(**_JIT)
def _max2x2_fwd(x, y, idx, with_idx):
    B, H, W = x.shape
    P, Q = y.shape[1], y.shape[2]
    for b in prange(B):
        if Q >= 8:
            for oh in range(P):
                x0, x1, yr = x[b, 2 * oh], x[b, 2 * oh + 1], y[b, oh]
                ir = idx[b, oh] if with_idx else idx[0, 0]
                for ow in range(0, Q - 7, 8):
                    max2x2(x0, x1, 2 * ow, yr, ow, ir, 2 * oh * W, W, with_idx, 8)
            if Q % 8:
                for oh in range(P):
                    x0, x1, yr = x[b, 2 * oh], x[b, 2 * oh + 1], y[b, oh]
                    ir = idx[b, oh] if with_idx else idx[0, 0]
                    max2x2(x0, x1, 2 * (Q - 8), yr, Q - 8, ir, 2 * oh * W, W, with_idx, 8)
        elif Q >= 4:
            for oh in range(P):
                x0, x1, yr = x[b, 2 * oh], x[b, 2 * oh + 1], y[b, oh]
                ir = idx[b, oh] if with_idx else idx[0, 0]
                max2x2(x0, x1, 0, yr, 0, ir, 2 * oh * W, W, with_idx, 4)
                max2x2(x0, x1, 2 * (Q - 4), yr, Q - 4, ir, 2 * oh * W, W, with_idx, 4)
        else:
            for oh in range(P):
                x0, x1, yr = x[b, 2 * oh], x[b, 2 * oh + 1], y[b, oh]
                ir = idx[b, oh] if with_idx else idx[0, 0]
                for ow in range(Q):
                    j = 2 * ow
                    m, t = x0[j], 0
                    for v, tap in ((x0[j + 1], 1), (x1[j], W), (x1[j + 1], W + 1)):
                        if (v > m) | (v != v):
                            m, t = v, tap
                    yr[ow] = m
                    if with_idx:
                        ir[ow] = 2 * oh * W + j + t
