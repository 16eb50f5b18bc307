"""CPU kernels for parameter updates and gradient bookkeeping (all arrays flat, C-contiguous).

Scalars arrive already cast to the arrays' dtype (the launchers in ``numba_cnn.optim`` and
``numba_cnn.nn`` do it), so float32 math stays float32 as in PyTorch.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 4096  # elements per partial sum in sq_norm


# p, g, buf (n,); buf is the momentum buffer (ignored when momentum == 0)
@njit(cache=True, parallel=True)
def sgd_update(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, first):
    for i in prange(p.size):
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


# p, g, m (exp_avg), v (exp_avg_sq) (n,); torch's single-tensor, non-amsgrad Adam/AdamW
@njit(cache=True, parallel=True)
def adam_update(
    p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
):
    for i in prange(p.size):
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


# a (n,) -> sum(a * a), accumulated in a's dtype in chunks of _CHUNK (then over chunks)
@njit(cache=True, parallel=True)
def sq_norm(a):
    n = a.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nchunks, dtype=a.dtype)
    for c in prange(nchunks):
        s = a.dtype.type(0)
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            s += a[i] * a[i]
        part[c] = s
    total = a.dtype.type(0)
    for c in range(nchunks):
        total += part[c]
    return total
