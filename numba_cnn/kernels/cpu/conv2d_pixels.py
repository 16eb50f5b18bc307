"""Conv for few output channels: tiles of MR output pixels x NR channels, x read in place.

The im2col product turned around: C (pixels, channels) = col^T (pixels, taps) @ W^T (taps,
channels). A tile holds MR output pixels (any pixels: across rows and samples, any stride)
by NR channels in vector registers (``_pixel_micro``: 6 x 16 float32 in 12 ymm on AVX2, the
GEMM's tile), W^T is packed once per call as tap-major panels of NR channels, and the x value
of pixel i at tap t is read where it lies, xp[pin[i] + tap[t]]: nothing is packed per pixel.
Each tap step loads one B row of NR channels, broadcasts MR x values and issues MR FMAs, so
the channel count only needs to fill NR lanes (12-16 channels on AVX2), where the GEMM's
packing would cost as much as its arithmetic. The tile leaves through a small buffer to
y[n, k, p, q] (MR * NR scattered stores per CRS * MR * NR multiply-adds).

    y[n, k, p, q] = b[k] + sum_t w[k, t] * xp[n, tap[t] + p*sh*Wp + q*sw]
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _gemm_conv as g_
from ._gemm import workspace
from ._gemm_micro import TILES, counted_loop, tile
from ._serial import serial_twin
from ._threads import num_threads, use_parallel


@intrinsic
def _pixel_micro(typingctx, x, pin, m0, npix, taps, t0, kc, bp, acc, mr, nr):
    """acc[i*NR + j] = sum_{k < kc} x[pin[min(m0 + i, npix - 1)] + taps[t0 + k]] *
    bp[k*NR + j] for i < MR, j < NR (pixels past npix repeat the last one)."""
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(nr, types.IntegerLiteral)):
        return None
    if x.dtype not in (types.float32, types.float64) or not (x.dtype == bp.dtype == acc.dtype):
        return None
    MR, NR, dt = mr.literal_value, nr.literal_value, x.dtype
    sig = types.void(x, pin, m0, npix, taps, t0, kc, bp, acc, mr, nr)

    def codegen(context, builder, signature, args):
        st = signature.args
        xv, pinv, tapv, bpv, accv = args[0], args[1], args[4], args[7], args[8]
        m0v, npv, t0v, kcv = (
            context.cast(builder, args[i], st[i], types.int64) for i in (2, 3, 5, 6)
        )
        x_arr = context.make_array(st[0])(context, builder, xv)
        p_arr = context.make_array(st[1])(context, builder, pinv)
        t_arr = context.make_array(st[4])(context, builder, tapv)
        b_arr = context.make_array(st[7])(context, builder, bpv)
        c_arr = context.make_array(st[8])(context, builder, accv)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        ft = context.get_data_type(dt)
        vt = ir.VectorType(ft, NR)
        sfx = "f32" if dt == types.float32 else "f64"
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{NR}{sfx}"
        )
        last = builder.sub(npv, ir.Constant(i64, 1))
        xs = []  # loop-invariant: the window origin of each pixel
        for i in range(MR):
            m = builder.add(m0v, ir.Constant(i64, i))
            m = builder.select(builder.icmp_signed("<", m, last), m, last)
            xs.append(builder.gep(x_arr.data, [builder.load(builder.gep(p_arr.data, [m]))]))
        pt = builder.gep(t_arr.data, [t0v])
        undef = ir.Constant(vt, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, NR), [0] * NR)
        zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * NR)

        def step(k, accs):
            off = builder.load(builder.gep(pt, [k]))
            bptr = builder.gep(b_arr.data, [builder.mul(k, ir.Constant(i64, NR))])
            bv = builder.load(builder.bitcast(bptr, vt.as_pointer()), align=1)
            out = []
            for i in range(MR):
                a = builder.load(builder.gep(xs[i], [off]))
                av = builder.shuffle_vector(
                    builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat
                )
                out.append(builder.call(fma, [av, bv, accs[i]]))
            return out

        accs = counted_loop(builder, kcv, 1, [zero] * MR, step, "pix")
        for i in range(MR):
            cptr = builder.gep(c_arr.data, [ir.Constant(i64, i * NR)])
            builder.store(accs[i], builder.bitcast(cptr, vt.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


# w (K, T) of G groups of Kg channels -> wt (G, npj, T, NR): tap-major panels of NR channels,
# zero past Kg; bias likewise into bz (G, npj*NR) (zeros without bias)
@njit(cache=True)
def pack_weights(wm, b, has_b, G, wt, bz):
    K, T = wm.shape
    Kg = K // G
    NR = wt.shape[3]
    zero = wm.dtype.type(0)
    for g in range(G):
        for jp in range(wt.shape[1]):
            for j in range(NR):
                k = jp * NR + j
                ok = k < Kg
                bz[g, k] = b[g * Kg + k] if ok and has_b else zero
                for t in range(T):
                    wt[g, jp, t, j] = wm[g * Kg + k, t] if ok else zero


# xf padded samples (flat); wt, bz from pack_weights; taps (G*T,) window offsets of each
# group's taps; pin/pout (NPQ,) window origin and y offset of each output pixel; y flat
# (N, K, P, Q). prange over slots, each taking a contiguous run of MR-pixel panels.
@njit(cache=True, parallel=True, _nrt=False)
def pixels_fwd(xf, wt, bz, taps, pin, pout, PQ, Kg, yf, nslot, wacc):
    MR, NR = tile(xf)
    G, npj, T = wt.shape[0], wt.shape[1], wt.shape[2]
    npix = pin.shape[0]
    npan = (npix + MR - 1) // MR
    per = (npan + nslot - 1) // nslot
    wf = wt.reshape(-1)
    for s in prange(nslot):
        acc = wacc[s * MR * NR : (s + 1) * MR * NR]
        for pan in range(s * per, min(npan, (s + 1) * per)):
            m0 = pan * MR
            mp = min(MR, npix - m0)
            for g in range(G):
                for jp in range(npj):
                    bp = wf[(g * npj + jp) * T * NR :]
                    _pixel_micro(xf, pin, m0, npix, taps, g * T, T, bp, acc, MR, NR)
                    nj = min(NR, Kg - jp * NR)
                    k0 = g * Kg + jp * NR
                    bb = bz[g, jp * NR :]
                    for i in range(mp):
                        yo = yf[pout[m0 + i] + k0 * PQ :]
                        a = acc[i * NR :]
                        for j in range(nj):
                            yo[j * PQ] = a[j] + bb[j]


pixels_fwd_serial = serial_twin(pixels_fwd)


def _product(xp, Hp, Wp, wm, b, y, stride, dilation, groups, R, S) -> None:
    """As ``_gemm_conv._forward``: y (N,K,P,Q) = conv of xp (N, C*Hp*Wp) with wm + b."""
    N, K, P, Q = y.shape
    C = xp.shape[1] // (Hp * Wp)
    G, Kg = groups, K // groups
    (sh, sw), (dh, dw) = stride, dilation
    T = (C // G) * R * S
    MR, NR = TILES[y.dtype]
    npj = -(-Kg // NR)
    wt = workspace("pix_w", G * npj * T * NR, y.dtype).reshape(G, npj, T, NR)
    bz = workspace("pix_b", G * npj * NR, y.dtype).reshape(G, npj * NR)
    has_b = b is not None
    pack_weights(wm, b if has_b else bz[0], has_b, G, wt, bz)
    pin, pout = g_._pix(N, P, Q, xp.shape[1], sh * Wp, sw, K * P * Q, Q)
    taps = g_._taps(C, R, S, Hp, Wp, dh, dw)
    par = use_parallel(N * P * Q * K * T)
    nslot = num_threads() if par else 1
    wacc = workspace("pix_acc", nslot * MR * NR, y.dtype)
    kern = pixels_fwd if par else pixels_fwd_serial
    kern(xp.reshape(-1), wt, bz, taps, pin, pout, P * Q, Kg, y.reshape(-1), nslot, wacc)


def conv_forward(x, w, b, y, stride, pad, dilation, groups) -> None:
    """y (N,K,P,Q) = conv(x, w (K,Cg,R,S)) + b, any stride/padding/dilation/groups."""
    g_.conv_forward(x, w, b, y, stride, pad, dilation, groups, product=_product)


def conv_backward_data(dy, w, dx, pad, dilation, groups) -> None:
    """Stride 1: dx (N,C,H,W) = conv of dy padded by the kernel extent, weights flipped."""
    g_.conv_backward_data(dy, w, dx, pad, dilation, groups, product=_product)
