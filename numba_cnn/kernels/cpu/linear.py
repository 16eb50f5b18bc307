"""CPU kernels for linear (dense) layers: the packed GEMM of ``_gemm``, and dot products for
the forward of a batch of up to ``DOTS_MAX_ROWS`` rows.

Layouts as PyTorch: x (M, I) rows of features, weight (O, I), bias (O,), y (M, O); the op
flattens leading dimensions into M. The three products as index-vector GEMMs:

    y  = x @ w.T + b    A = x (k along rows), B[k, o] = w[o, k] (k contiguous), bias per column
    dx = dy @ w         A = dy, B = w (o rows of I contiguous columns)
    dw = dy.T @ x       A[o, m] = dy[m, o] (read along o), B = x

On two threads the backward's two products, of the same size, run at once, one a thread
(``_gemm_pair``): a small one split over both threads pays twice for the split.

Why not BLAS (``np.dot`` in njit, tried first): OpenBLAS's threads keep spinning after a
call, and the next ``prange`` region (any other op of the network) then crawls (a (64, 400)
-> 120 forward followed by a batch norm took 8.2 ms against 0.1 ms for the two alone). The
GEMM shares Numba's thread pool instead and runs on one thread below ``_gemm.SERIAL_FMA``.

The forward of up to ``DOTS_MAX_ROWS`` rows of at least ``DOTS_MIN_IN`` features into at most
``DOTS_MAX_OUT`` outputs is no GEMM at all: y[m, o] = x[m] . w[o], both rows contiguous, so
``_dot_micro.dots`` reads them where they lie (3 x 4 dot products in registers) and nothing
is packed. Measured against the GEMM (AMD EPYC, two threads, ms dots / gemm, after the GEMM
learnt to read A in place): (64,400)->120 0.115 / 0.133, (256,400)->120 0.430 / 0.441,
(64,4096)->128 0.92 / 1.17, (256,4096)->128 3.69 / 4.49; the GEMM wins with many outputs,
(256,512)->1000 4.33 / 3.95, (128,512)->1000 2.13 / 2.02, or few features, (256,84)->10
0.047 / 0.037, (64,120)->84 0.049 / 0.045, and with more rows ((1024,1024)->1024 82 / 75,
(2048,256)->256 10.9 / 8.5, one thread).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._dot_micro import block, dots
from ._gemm import gemm, ramp
from ._gemm_pair import gemm_pair
from ._serial import serial_twin
from ._threads import use_parallel

#: Forward by dot products for at most this many rows of x, at least this many features and
#: at most this many outputs (else the GEMM); ``FORWARD`` forces "dots" or "gemm" (tests
#: cover both).
DOTS_MAX_ROWS = 256
DOTS_MIN_IN = 256
DOTS_MAX_OUT = 256
FORWARD: str | None = None


# x (M, I); w (O, I); b (O,) used when has_b; y (M, O); taps[o] = o*I. One prange iteration
# per block of TB outputs: its TB rows of w stay in L1 while the rows of x go by KB at a
# time; the last I % VL columns by scalar loops.
@njit(cache=True, parallel=True, _nrt=False)
def _dots_forward(x, w, b, has_b, y, taps):
    M, I = x.shape
    O = w.shape[0]
    KB, TB, VL = block(x)
    Iv = I // VL * VL
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    zero = x.dtype.type(0)
    for ob in prange((O + TB - 1) // TB):
        o0 = ob * TB
        tv = min(TB, O - o0)
        for m in range(M):
            for o in range(o0, o0 + tv):
                y[m, o] = b[o] if has_b else zero
        if Iv > 0:
            for m0 in range(0, M, KB):
                dots(xf, m0 * I, I, 0, wf, 0, 0, taps, o0, 1, Iv, yf, m0 * O + o0, O,
                     min(KB, M - m0), tv)  # fmt: skip
        if Iv < I:  # (skipped otherwise: LLVM keeps y += 0, since -0 + 0 is +0)
            for m in range(M):
                for o in range(o0, o0 + tv):
                    acc = zero
                    for k in range(Iv, I):
                        acc += x[m, k] * w[o, k]
                    y[m, o] += acc


_dots_forward_serial = serial_twin(_dots_forward)


# dy (M, O) -> db (O,) = dy summed over rows; prange over blocks of 64 columns
@njit(cache=True, parallel=True, fastmath={"reassoc"}, _nrt=False)
def _column_sum(dy, db):
    M, O = dy.shape
    for t in prange((O + 63) // 64):
        o0, o1 = t * 64, min(O, t * 64 + 64)
        for o in range(o0, o1):
            db[o] = 0
        for m in range(M):
            row = dy[m, o0:o1]
            acc = db[o0:o1]
            for j in range(o1 - o0):
                acc[j] += row[j]


_column_sum_serial = serial_twin(_column_sum)


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, y: np.ndarray) -> None:
    """y (M, O) = x (M, I) @ w (O, I).T + b (O,) (b None: no bias)."""
    M, I = x.shape
    O = w.shape[0]
    dots = M <= DOTS_MAX_ROWS and I >= DOTS_MIN_IN and O <= DOTS_MAX_OUT
    if FORWARD == "dots" or (FORWARD is None and dots):
        kern = _dots_forward if use_parallel(M * O * I) else _dots_forward_serial
        has_b = b is not None
        kern(x, w, b if has_b else np.empty(0, y.dtype), has_b, y, ramp(O, I))
        return
    gemm(
        x.reshape(-1), ramp(M, I), ramp(I, 1), True,
        w.reshape(-1), ramp(I, 1), ramp(O, I), True,
        y.reshape(-1), ramp(M, O), ramp(O, 1), b, 2,
    )  # fmt: skip


def linear_backward(dy, x, w, dx, dw, db) -> None:
    """dy (M, O); x (M, I); w (O, I) -> dx (M, I) = dy @ w, dw (O, I) = dy.T @ x, db (O,)."""
    M, O = dy.shape
    I = w.shape[1]
    dx_args = (dy.reshape(-1), ramp(M, O), ramp(O, 1), True, w.reshape(-1), ramp(O, I),
               ramp(I, 1), False, dx.reshape(-1), ramp(M, I), ramp(I, 1))  # fmt: skip
    gemm_pair(dx_args, _dw_args(dy, x, dw))
    _db(dy, db)


def linear_backward_nodx(dy, x, dw, db) -> None:
    """As ``linear_backward`` without dx."""
    gemm(*_dw_args(dy, x, dw))
    _db(dy, db)


def _dw_args(dy, x, dw) -> tuple:
    """``gemm``'s arguments for dw (O, I) = dy.T @ x."""
    M, O = dy.shape
    I = x.shape[1]
    return (dy.reshape(-1), ramp(O, 1), ramp(M, O), False, x.reshape(-1), ramp(M, I),
            ramp(I, 1), False, dw.reshape(-1), ramp(O, I), ramp(I, 1))  # fmt: skip


def _db(dy, db) -> None:
    M, O = dy.shape
    if M == 0:
        db[:] = 0
    elif use_parallel(M * O):
        _column_sum(dy, db)
    else:
        _column_sum_serial(dy, db)
