"""CPU kernels for parameter updates and gradient norms (all arrays flat, C-contiguous).

Scalars arrive already cast to the arrays' dtype (the launchers in ``numba_cnn.optim`` and
``numba_cnn.nn`` do it), so float32 math stays float32 as in PyTorch. Each update is written
once over an index range ``[lo, hi)``; arrays below ``PARALLEL_MIN`` elements (most CNN
parameters) run it serially, larger ones split it into ``_CHUNK``-sized pieces across threads,
because a parallel region costs more than updating a few thousand floats.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 16384  # elements per parallel piece / per partial sum
PARALLEL_MIN = 4 * _CHUNK


# p, g, buf (n,) over [lo, hi); buf is the momentum buffer (ignored when momentum == 0)
@njit(cache=True, inline="always")
def _sgd_range(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, first, lo, hi):
    for i in range(lo, hi):
        d = g[i]
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        if momentum != 0:
            if first:
                b = d  # torch: buf = grad.clone() on the first step
            else:
                b = buf[i] * momentum + one_minus_dampening * d
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        p[i] = p[i] - lr * d


@njit(cache=True)
def _sgd_serial(p, g, buf, lr, momentum, omd, wd, nesterov, first):
    _sgd_range(p, g, buf, lr, momentum, omd, wd, nesterov, first, 0, p.size)


@njit(cache=True, parallel=True)
def _sgd_parallel(p, g, buf, lr, momentum, omd, wd, nesterov, first):
    n = p.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _sgd_range(
            p, g, buf, lr, momentum, omd, wd, nesterov, first, c * _CHUNK, min(n, (c + 1) * _CHUNK)
        )


# p, g, m (exp_avg), v (exp_avg_sq) (n,) over [lo, hi); torch's single-tensor non-amsgrad rule
@njit(cache=True, inline="always")
def _adam_range(
    p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay, lo, hi
):
    for i in range(lo, hi):
        gi = g[i]
        if decay != one:
            p[i] = p[i] * decay  # AdamW: param.mul_(1 - lr * weight_decay)
        if wd != 0:
            gi = gi + wd * p[i]  # Adam: grad.add(param, alpha=weight_decay)
        mi = m[i]
        if w1 < 0.5:  # exp_avg.lerp_(grad, 1 - beta1), torch's two-branch lerp
            mi = mi + w1 * (gi - mi)
        else:
            mi = gi - (gi - mi) * (one - w1)
        m[i] = mi
        vi = v[i] * beta2 + one_minus_beta2 * gi * gi
        v[i] = vi
        denom = np.sqrt(vi) / bc2_sqrt + eps
        p[i] = p[i] + neg_step_size * mi / denom


@njit(cache=True)
def _adam_serial(p, g, m, v, w1, one, b2, omb2, nss, bc2s, eps, wd, decay):
    _adam_range(p, g, m, v, w1, one, b2, omb2, nss, bc2s, eps, wd, decay, 0, p.size)


@njit(cache=True, parallel=True)
def _adam_parallel(p, g, m, v, w1, one, b2, omb2, nss, bc2s, eps, wd, decay):
    n = p.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _adam_range(
            p,
            g,
            m,
            v,
            w1,
            one,
            b2,
            omb2,
            nss,
            bc2s,
            eps,
            wd,
            decay,
            c * _CHUNK,
            min(n, (c + 1) * _CHUNK),
        )


# a (n,) -> sum(a * a), accumulated in a's dtype per _CHUNK piece, then over the pieces
@njit(cache=True)
def _sq_norm_range(a, lo, hi):
    s = a.dtype.type(0)
    for i in range(lo, hi):
        s += a[i] * a[i]
    return s


@njit(cache=True, parallel=True)
def _sq_norm_parallel(a):
    n = a.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nchunks, dtype=a.dtype)
    for c in prange(nchunks):
        part[c] = _sq_norm_range(a, c * _CHUNK, min(n, (c + 1) * _CHUNK))
    total = a.dtype.type(0)
    for c in range(nchunks):
        total += part[c]
    return total


@njit(cache=True)
def _sq_norm_serial(a):
    n = a.size
    total = a.dtype.type(0)
    for c in range((n + _CHUNK - 1) // _CHUNK):
        total += _sq_norm_range(a, c * _CHUNK, min(n, (c + 1) * _CHUNK))
    return total


# -- launchers -----------------------------------------------------------------------------------
def sgd_update(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, first):
    k = _sgd_parallel if p.size >= PARALLEL_MIN else _sgd_serial
    k(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, bool(nesterov), bool(first))


def adam_update(
    p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
):
    k = _adam_parallel if p.size >= PARALLEL_MIN else _adam_serial
    k(p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay)


def sq_norm(a):
    """sum(a * a) of a flat array, as a Python float."""
    return float(_sq_norm_parallel(a) if a.size >= PARALLEL_MIN else _sq_norm_serial(a))


def sgd_update_multi(
    ps, gs, bufs, lr, momentum, one_minus_dampening, weight_decay, nesterov, first
):
    """``sgd_update`` of every (p, g, buf) in turn (the CUDA module fuses them into one launch;
    on the CPU a call costs about a microsecond)."""
    for p, g, b in zip(ps, gs, bufs, strict=True):
        sgd_update(p, g, b, lr, momentum, one_minus_dampening, weight_decay, nesterov, first)


def adam_update_multi(
    ps, gs, ms, vs, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
):
    """``adam_update`` of every (p, g, m, v) in turn."""
    for p, g, m, v in zip(ps, gs, ms, vs, strict=True):
        adam_update(
            p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
        )
