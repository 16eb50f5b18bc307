"""Row primitives for the softmax family on the CPU: a vectorisable exp, max and sums.

Without Intel SVML, ``math.exp`` is a scalar libm call (about 3 ns); ``vexp`` on float32 is a
Cody-Waite range reduction, a degree-5 polynomial and ``2^n`` built from its bits, which LLVM
vectorises (about 14x faster, <= 1.5 ulp). Meant for ``x <= 0`` (softmax after the max shift):
below -87.3 it returns 0 (not a denormal), above 88 inf, NaN stays NaN. float64 keeps
``math.exp``.

Sums are compiled with ``fastmath={"reassoc"}`` in their own functions so only the accumulating
adds may be reordered (vectorised); the exp polynomial keeps strict IEEE semantics.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

_LO = np.float32(-87.33654)  # below: exp underflows float32 normals, return 0
_HI = np.float32(88.0)  # above: return inf (2^n must stay a normal float32)
_INF = np.float32(np.inf)
_LOG2E = np.float32(1.4426950408889634)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_C1 = np.float32(0.693359375)  # ln 2 = C1 - C2, C1 exact in 9 bits
_C2 = np.float32(-2.12194440e-4)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)


@intrinsic
def _bits_to_float32(typingctx, bits):
    """Reinterpret an int32 as a float32 (an LLVM bitcast)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


@njit(cache=True, fastmath={"contract"})  # FMAs in the polynomial
def _exp32(v):
    xc = v if v > _LO else _LO  # also maps NaN to _LO, keeping the int conversion defined
    xc = xc if xc < _HI else _HI
    n = math.floor(xc * _LOG2E + _HALF)
    fn = np.float32(n)
    r = xc - fn * _C1
    r = r - fn * _C2
    p = _P0 * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    p = p * (r * r) + r + _ONE
    e = p * _bits_to_float32(np.int32((n + 127) << 23))
    e = e if v >= _LO else _ZERO
    e = e if v <= _HI else _INF
    return e if v == v else v


def vexp(v):
    """exp(v) for v <= 0 (see the module docstring)."""
    return math.exp(v)


@overload(vexp, jit_options=dict(cache=True))
def _vexp_overload(v):
    if v == types.float32:
        return lambda v: _exp32(v)
    if v == types.float64:
        return lambda v: math.exp(v)
    return None


# x (R, D): max of row r, 8 independent lanes (a single compare-select chain does not vectorise)
@njit(cache=True)
def row_max(x, r):
    D = x.shape[1]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = x.dtype.type(-np.inf)
    d = 0
    while d + 8 <= D:
        v0, v1, v2, v3 = x[r, d], x[r, d + 1], x[r, d + 2], x[r, d + 3]
        v4, v5, v6, v7 = x[r, d + 4], x[r, d + 5], x[r, d + 6], x[r, d + 7]
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        m4 = v4 if v4 > m4 else m4
        m5 = v5 if v5 > m5 else m5
        m6 = v6 if v6 > m6 else m6
        m7 = v7 if v7 > m7 else m7
        d += 8
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    while d < D:
        v = x[r, d]
        m = v if v > m else m
        d += 1
    return m  # NaNs are skipped here; the sums below turn the row NaN


# x (R, D): sum of row r
@njit(cache=True, fastmath={"reassoc"})
def row_sum(x, r):
    s = x.dtype.type(0)
    for d in range(x.shape[1]):
        s += x[r, d]
    return s


# x, y (R, D): sum of row r of x * y
@njit(cache=True, fastmath={"reassoc"})
def row_dot(x, y, r):
    s = x.dtype.type(0)
    for d in range(x.shape[1]):
        s += x[r, d] * y[r, d]
    return s


# x (R, D): sum of exp(x[r] - m)
@njit(cache=True, fastmath={"reassoc"})
def row_sum_exp(x, r, m):
    s = x.dtype.type(0)
    for d in range(x.shape[1]):
        s += vexp(x[r, d] - m)
    return s


# x, y (R, D): y[r] = exp(x[r] - m); returns its sum
@njit(cache=True, fastmath={"reassoc"})
def row_exp(x, y, r, m):
    s = x.dtype.type(0)
    for d in range(x.shape[1]):
        e = vexp(x[r, d] - m)
        y[r, d] = e
        s += e
    return s
