"""The CPU path's GEMM: GotoBLAS/BLIS-style packed panels around ``_gemm_micro.micro``.

Every operand is addressed through index vectors, so one driver serves plain matrices, their
transposes and the implicit im2col of a convolution (the packing routines gather straight
from the padded input, no column matrix is ever built):

    A[m, k] = af[arow[m] + acol[k]]     B[k, n] = bf[brow[k] + bcol[n]]
    C[m, n] = cf[crow[m] + ccol[n]] (+)= sum_k A[m, k] * B[k, n]  (+ bias[m] or bias[n])

What lies in a usable layout is read in place, not packed: A whose rows run along K (x, dy,
conv weights: the micro-kernel broadcasts from six row pointers), B panels of one contiguous
run of NR columns or two runs of NR/2 (image rows), unless B's rows sit a multiple of 2 KiB
apart. Blocking: K in blocks of ``kc`` (a B micro-panel of kc x NR stays in L1), M in blocks
of ``mc`` (the packed A block, mc x kc, in L2; larger when A is read in place), N in blocks
of ``nc``. A job is (K chunk, M block, N block); ``prange`` runs ``nslot`` slots, each taking
every nslot-th job with its own packing buffers (workspaces reused across calls: no
allocation per call). With ``ksplit``
K chunks the chunks' sums go to ``part`` and are added in chunk order (deterministic).
A whole panel of MR x NR contiguous C values leaves the micro-kernel's registers straight for
C (its epilogue adds the old C, the bias); edge panels go through ``acc`` and ``_store``.
No BLAS: OpenBLAS's spinning threads slowed the next ``prange`` op up to 80x.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._gemm_micro import micro, micro_rows, tile
from ._gemm_pack import pack_a, pack_b
from ._gemm_plan import _LOCAL, _plan, blocking, ramp, workspace  # noqa: F401 (re-exported)
from ._serial import serial_twin
from ._threads import num_threads


# see the module docstring; bias_mode 0: none, 1: bias[m], 2: bias[n]; accumulate: add to C.
# No NRT (_nrt=False): the kernel allocates nothing, and without it the array views made in
# its loops cost no reference counting (atomic increments and decrements): one thread,
# (64,400)->120 products 0.257 / 0.229 / 0.263 ms -> 0.221 / 0.185 / 0.189 ms
@njit(parallel=True, cache=True, _nrt=False)
def gemm_kernel(
    af, arow, acol, a_k_inner, bf, brow, bcol, b_k_inner, b_in_place, cf, crow, ccol,
    bias, bias_mode, accumulate, kc, mc, nc, ksplit, nslot, a_full, a_in_place, wa, wb, wc,
    part,
):  # fmt: skip
    MR, NR = tile(af)
    HR = NR // 2
    M, N, K = arow.shape[0], bcol.shape[0], acol.shape[0]
    nmb, nnb = (M + mc - 1) // mc, (N + nc - 1) // nc
    kper = (K + ksplit - 1) // ksplit
    njob = ksplit * nmb * nnb
    nkb = (K + kc - 1) // kc
    la, lb = wa.shape[0] // nslot, wb.shape[0] // nslot
    for s in prange(nslot):
        ap, bp = wa[s * la : (s + 1) * la], wb[s * lb : (s + 1) * lb]
        acc = wc[s * MR * NR : (s + 1) * MR * NR]
        if a_full:  # every (M block, K block) of A packed once, side by side
            for mb in range(nmb):
                for kb in range(nkb):
                    aq = ap[(mb * nkb + kb) * mc * kc :]
                    mcb, kcb = min(mc, M - mb * mc), min(kc, K - kb * kc)
                    pack_a(af, arow, acol, mb * mc, mcb, kb * kc, kcb, aq, MR, a_k_inner)
        packed = (-1, -1, -1)  # (m0, k0, kcb) of the A block in ap: repacked only on change
        # (n0, k0, kcb) of the B block in bp, likewise (three scalars: a second tuple compare
        # made the cached serial twin call a null pointer once loaded, numba 0.68)
        bn0, bk0, bkc = -1, -1, -1
        ao = 0
        a0 = acol[0] if K > 0 else 0
        for job in range(s, njob, nslot):
            ci = job // (nmb * nnb)
            m0 = ((job // nnb) % nmb) * mc
            n0 = (job % nnb) * nc
            mcb, ncb = min(mc, M - m0), min(nc, N - n0)
            kbeg, kend = ci * kper, min(K, (ci + 1) * kper)
            for k0 in range(kbeg, kend, kc):
                kcb = min(kc, kend - k0)
                if a_full:
                    ao = ((m0 // mc) * nkb + k0 // kc) * mc * kc
                elif not a_in_place and packed != (m0, k0, kcb):
                    pack_a(af, arow, acol, m0, mcb, k0, kcb, ap, MR, a_k_inner)
                    packed = (m0, k0, kcb)
                first = k0 == kbeg
                npan = (ncb + NR - 1) // NR
                # pack the whole block first (panels side by side); a slot's jobs that differ
                # in M only (K in one block) reuse it
                if not b_in_place and (bn0 != n0 or bk0 != k0 or bkc != kcb):
                    for q in range(npan):
                        nq = min(NR, ncb - q * NR)
                        bq = bp[q * kcb * NR :]
                        pack_b(bf, brow, bcol, k0, kcb, n0 + q * NR, nq, bq, NR, b_k_inner)
                    bn0, bk0, bkc = n0, k0, kcb
                for q in range(npan):
                    nq = min(NR, ncb - q * NR)
                    j0 = n0 + q * NR
                    c0 = bcol[j0]
                    # in place: a whole panel of two contiguous runs of NR/2 columns (often
                    # one run: half == NR/2) is read where it lies
                    direct = False
                    half = HR
                    if b_in_place and nq == NR:
                        half = bcol[j0 + HR] - c0
                        direct = (
                            bcol[j0 + HR - 1] - c0 == HR - 1
                            and bcol[j0 + NR - 1] - bcol[j0 + HR] == HR - 1
                        )
                    if b_in_place and not direct:
                        pack_b(bf, brow, bcol, k0, kcb, n0 + q * NR, nq, bp, NR, b_k_inner)
                    bo = 0 if b_in_place else q * kcb * NR
                    cq = n0 + q * NR
                    # whole contiguous panel of C columns: the epilogue writes C from registers
                    fused = ksplit == 1 and nq == NR and ccol[cq + NR - 1] - ccol[cq] == NR - 1
                    beta = not (first and not accumulate)
                    bmode = bias_mode if first else 0
                    for p in range((mcb + MR - 1) // MR):
                        mp = min(MR, mcb - p * MR)
                        m1 = m0 + p * MR
                        out = (cf, crow, m1, ccol[cq], mp, beta, bias, bmode, cq)
                        if a_in_place:  # A's rows where they lie
                            pa = (arow, m1, mp, a0 + k0)
                            _tile(af, pa, bf, brow, k0, c0, half, bp, bo, kcb, acc, out, fused,
                                  direct)  # fmt: skip
                        else:
                            pa2 = ao + p * kcb * MR
                            _tile(ap, pa2, bf, brow, k0, c0, half, bp, bo, kcb, acc, out, fused,
                                  direct)  # fmt: skip
                        if fused:
                            continue
                        if ksplit > 1:
                            _store_part(acc, part, ci, M, N, m1, cq, mp, nq, NR, first)
                        else:
                            _store(acc, cf, crow, ccol, m1, cq, mp, nq, NR, not beta, first,
                                   bias, bias_mode)  # fmt: skip
    if ksplit > 1:
        _reduce_parts(part, ksplit, cf, crow, ccol, bias, bias_mode, accumulate)


# one MR x NR tile: to C from the registers when fused, else to acc; B in place when direct
@njit(cache=True, inline="always")
def _tile(a, pa, bf, brow, k0, c0, half, bp, bo, kcb, acc, out, fused, direct):
    if fused:
        if direct:
            micro_rows(a, pa, bf, brow, k0, c0, kcb, acc, out, half)
        else:
            micro(a, pa, bp, bo, kcb, acc, out)
    elif direct:
        micro_rows(a, pa, bf, brow, k0, c0, kcb, acc, None, half)
    else:
        micro(a, pa, bp, bo, kcb, acc, None)


@njit(cache=True, inline="always")
def _store(acc, cf, crow, ccol, m0, n0, mp, nq, NR, overwrite, first, bias, bias_mode):
    run = ccol[n0 + nq - 1] - ccol[n0] == nq - 1 and not (first and bias_mode == 2)
    for i in range(mp):
        row = cf[crow[m0 + i] :]
        cols = ccol[n0 : n0 + nq]
        a = acc[i * NR : i * NR + nq]
        bm = bias[m0 + i] if (first and bias_mode == 1) else a.dtype.type(0)
        if run:  # contiguous columns: vector loads and stores
            dst = row[cols[0] :]
            if overwrite:
                for j in range(nq):
                    dst[j] = a[j] + bm
            else:
                for j in range(nq):
                    dst[j] += a[j] + bm
            continue
        for j in range(nq):
            v = a[j] + bm
            if first and bias_mode == 2:
                v += bias[n0 + j]
            if overwrite:
                row[cols[j]] = v
            else:
                row[cols[j]] += v


@njit(cache=True, inline="always")
def _store_part(acc, part, ci, M, N, m0, n0, mp, nq, NR, first):
    for i in range(mp):
        dst = part[(ci * M + m0 + i) * N + n0 :]
        a = acc[i * NR :]
        if first:
            for j in range(nq):
                dst[j] = a[j]
        else:
            for j in range(nq):
                dst[j] += a[j]


# C (+)= sum over chunks of part (ksplit, M, N), in chunk order, plus the bias
@njit(parallel=True, cache=True)
def _reduce_parts(part, ksplit, cf, crow, ccol, bias, bias_mode, accumulate):
    M, N = crow.shape[0], ccol.shape[0]
    for m in prange(M):
        row = cf[crow[m] :]
        for n in range(N):
            v = part[m * N + n]
            for ci in range(1, ksplit):
                v += part[(ci * M + m) * N + n]
            if bias_mode == 1:
                v += bias[m]
            elif bias_mode == 2:
                v += bias[n]
            if accumulate:
                row[ccol[n]] += v
            else:
                row[ccol[n]] = v


gemm_kernel_serial = serial_twin(gemm_kernel)

#: Read A where it lies when its rows are contiguous along K (else packed); tests set both.
A_IN_PLACE = True

#: Multiply-adds below which one thread runs the GEMM (a parallel region costs about 2 us
#: and, on a busy machine, waits for every worker).
SERIAL_FMA = 1 << 18


def gemm(
    af, arow, acol, a_k_inner: bool, bf, brow, bcol, b_k_inner: bool, cf, crow, ccol,
    bias=None, bias_mode: int = 0, accumulate: bool = False, b_in_place: bool | None = None,
) -> None:  # fmt: skip
    """C (+)= A @ B (+ bias) on index vectors (module docstring); af, bf, cf 1-D views.

    ``b_in_place``: the micro-kernel reads whole panels of contiguous B columns where they
    lie instead of packing them (None: when B's rows are not a multiple of 2 KiB apart; at
    such strides the rows of a panel share one or two of L1's 64 sets. One thread, ms in
    place / packed, dy (M, O) @ w (O, I): rows 16 KiB apart 3.35 / 2.56, 2 KiB 10.8 / 8.9,
    1 KiB 4.33 / 4.57, 2080 B 9.16 / 10.5, 1600 B 0.21 / 0.23)."""
    call = launch(af, arow, acol, a_k_inner, bf, brow, bcol, b_k_inner, cf, crow, ccol, bias,
                  bias_mode, accumulate, b_in_place)  # fmt: skip
    if call is not None:
        call[0](*call[1])


def launch(
    af, arow, acol, a_k_inner, bf, brow, bcol, b_k_inner, cf, crow, ccol, bias=None,
    bias_mode=0, accumulate=False, b_in_place=None, serial=False, tag="",
):  # fmt: skip
    """``gemm``'s kernel and its arguments, ``(kernel, args)``, or None when nothing is left
    to launch (C empty, or K == 0: C was given the bias here). ``serial``: the one-thread
    build whatever the size, on buffers of its own per ``tag`` (``_gemm_pair``)."""
    M, N, K = arow.shape[0], bcol.shape[0], acol.shape[0]
    if M == 0 or N == 0:
        return None
    dt = cf.dtype
    b = bias if bias is not None else _no_bias(dt)
    if bias is None:
        bias_mode = 0
    # one Numba thread: the serial build (the parallel one is never compiled; _threads)
    serial = serial or M * N * K < SERIAL_FMA or num_threads() == 1
    T = 1 if serial else _threads()
    if K == 0:  # no products: C = bias (or unchanged when accumulating)
        fill_bias(cf, crow, ccol, b, bias_mode, accumulate)
        return None
    # A read in place: rows contiguous along all of K (no packing at all)
    a_in_place = A_IN_PLACE and a_k_inner and acol.item(K - 1) - acol.item(0) == K - 1
    kc, mc, nc, ksplit, nslot, a_full, wa, wb, wc, part = _plan(dt, M, N, K, T, a_in_place, tag)
    if b_in_place is None:
        step = (brow.item(1) - brow.item(0)) * cf.itemsize if K > 1 else 1
        b_in_place = not b_k_inner and step % 2048 != 0
    b_in_place = bool(b_in_place) and not b_k_inner
    kern = gemm_kernel_serial if serial else gemm_kernel
    args = (af, arow, acol, a_k_inner, bf, brow, bcol, b_k_inner, b_in_place, cf, crow, ccol,
            b, bias_mode, accumulate, kc, mc, nc, ksplit, nslot, a_full, a_in_place, wa, wb,
            wc, part)  # fmt: skip
    return kern, args


def _threads() -> int:
    return num_threads()


_NO_BIAS: dict = {}


def _no_bias(dt: np.dtype) -> np.ndarray:
    """An empty bias array of dtype dt (one per dtype: allocating it cost 0.4 us a call).
    Writeable, like a real bias: a read-only one is another Numba type, and each kernel
    compiled again for it (some 40 s a GEMM build)."""
    a = _NO_BIAS.get(dt)
    if a is None:
        a = _NO_BIAS[dt] = np.empty(0, dt)
    return a


@njit(cache=True)
def fill_bias(cf, crow, ccol, bias, bias_mode, accumulate):
    for m in range(crow.shape[0]):
        for n in range(ccol.shape[0]):
            v = cf.dtype.type(0)
            if bias_mode == 1:
                v = bias[m]
            elif bias_mode == 2:
                v = bias[n]
            if accumulate:
                cf[crow[m] + ccol[n]] += v
            else:
                cf[crow[m] + ccol[n]] = v
