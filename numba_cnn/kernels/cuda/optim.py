"""CUDA kernels for parameter updates and gradient bookkeeping, so a model on the GPU keeps
parameters, gradients and optimizer state there.

All arrays are flat (n,) and C-contiguous; scalars arrive cast to the arrays' dtype.
Elementwise kernels use grid-stride loops; ``sq_norm_partial``/``sq_norm_finish`` form a
deterministic two-pass reduction (per-block partial sums, then one block over the partials).
"""

from __future__ import annotations

import functools
import math

import numba

from numba_cnn._cuda import SIMULATOR, cuda

# threads per block (the reductions' shared arrays have this size); the simulator runs every
# thread as a Python thread, so it gets small blocks and few of them
TPB = 32 if SIMULATOR else 128
_MAX_BLOCKS = 4 if SIMULATOR else 1024
_FLOATS = {"float32": numba.float32, "float64": numba.float64}


def _ft(dtype) -> numba.types.Float:
    return _FLOATS[str(dtype)]


def _grid(n: int) -> tuple[int, int]:
    return max(1, min(_MAX_BLOCKS, (n + TPB - 1) // TPB)), TPB


@functools.cache
def _sgd_kernel(ft):
    # p, g, buf (n,); buf is the momentum buffer (unused when momentum == 0); grid-stride
    @cuda.jit
    def sgd_update(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, first):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, p.size, stride):
            d = g[i]
            if weight_decay != ft(0):
                d = d + weight_decay * p[i]
            if momentum != ft(0):
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

    return sgd_update


@functools.cache
def _adam_kernel(ft):
    # p, g, m (exp_avg), v (exp_avg_sq) (n,); torch's single-tensor non-amsgrad Adam/AdamW
    @cuda.jit
    def adam_update(
        p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
    ):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, p.size, stride):
            gi = g[i]
            if decay != one:
                p[i] = p[i] * decay  # AdamW: param.mul_(1 - lr * weight_decay)
            if wd != ft(0):
                gi = gi + wd * p[i]  # Adam: grad.add(param, alpha=weight_decay)
            mi = m[i]
            if w1 < ft(0.5):  # exp_avg.lerp_(grad, 1 - beta1), torch's two-branch lerp
                mi = mi + w1 * (gi - mi)
            else:
                mi = gi - (gi - mi) * (one - w1)
            m[i] = mi
            vi = v[i] * beta2 + one_minus_beta2 * gi * gi
            v[i] = vi
            denom = math.sqrt(vi) / bc2_sqrt + eps
            p[i] = p[i] + neg_step_size * mi / denom

    return adam_update


@functools.cache
def _add_kernel(ft):
    # a, b (n,): a += b; grid-stride
    @cuda.jit
    def add_(a, b):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = a[i] + b[i]

    return add_


@functools.cache
def _scale_kernel(ft):
    # a (n,): a *= s[k] (the factor lives on the device: no host round trip); grid-stride
    @cuda.jit
    def scale_(a, s, k):
        f = s[k]
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = a[i] * f

    return scale_


@functools.cache
def _fill_kernel(ft):
    # a (n,): a = value; grid-stride
    @cuda.jit
    def fill_(a, value):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = value

    return fill_


@functools.cache
def _sq_norm_partial_kernel(ft):
    # a (n,); part (P,): part[slot + b] = sum(a[j]^2) over block b's chunk
    # [b * chunk, min(n, (b + 1) * chunk)); one block of TPB threads per chunk
    @cuda.jit
    def sq_norm_partial(a, chunk, part, slot):
        buf = cuda.shared.array(TPB, dtype=ft)
        t = cuda.threadIdx.x
        lo = cuda.blockIdx.x * chunk
        hi = min(a.size, lo + chunk)
        s = ft(0)
        for i in range(lo + t, hi, TPB):
            s += a[i] * a[i]
        buf[t] = s
        cuda.syncthreads()  # every thread's partial is in buf before the tree reads it
        h = TPB // 2
        while h > 0:
            if t < h:
                buf[t] += buf[t + h]
            cuda.syncthreads()  # this level's sums are written before the next level reads
            h //= 2
        if t == 0:
            part[slot + cuda.blockIdx.x] = buf[0]

    return sq_norm_partial


@functools.cache
def _sq_norm_finish_kernel(ft):
    # part (P,) -> out[0] = sum(part) (squared norm), out[1] = min(max_norm / (sqrt + 1e-6), 1)
    # (the clip_grad_norm_ factor); one block of TPB threads
    @cuda.jit
    def sq_norm_finish(part, out, max_norm):
        buf = cuda.shared.array(TPB, dtype=ft)
        t = cuda.threadIdx.x
        s = ft(0)
        for i in range(t, part.size, TPB):
            s += part[i]
        buf[t] = s
        cuda.syncthreads()  # every thread's partial is in buf before the tree reads it
        h = TPB // 2
        while h > 0:
            if t < h:
                buf[t] += buf[t + h]
            cuda.syncthreads()  # this level's sums are written before the next level reads
            h //= 2
        if t == 0:
            total = buf[0]
            out[0] = total
            c = max_norm / (math.sqrt(total) + ft(1e-6))
            out[1] = min(c, ft(1))

    return sq_norm_finish


# -- launchers (arrays flat, scalars already of the arrays' dtype) ------------------------------
def sgd_update(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, first):
    k = _sgd_kernel(_ft(p.dtype))
    k[_grid(p.size)](
        p, g, buf, lr, momentum, one_minus_dampening, weight_decay, bool(nesterov), bool(first)
    )


def adam_update(
    p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
):
    k = _adam_kernel(_ft(p.dtype))
    k[_grid(p.size)](
        p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
    )


def add_(a, b):
    _add_kernel(_ft(a.dtype))[_grid(a.size)](a, b)


def fill_(a, value):
    _fill_kernel(_ft(a.dtype))[_grid(a.size)](a, value)


def scale_(a, s, k):
    """``a *= s[k]`` with ``s`` a device array."""
    _scale_kernel(_ft(a.dtype))[_grid(a.size)](a, s, k)


def sq_norm_blocks(n: int) -> tuple[int, int]:
    """(blocks, chunk) for ``sq_norm_partial`` over ``n`` elements."""
    blocks = max(1, min(_MAX_BLOCKS, (n + 4 * TPB - 1) // (4 * TPB)))
    return blocks, (n + blocks - 1) // blocks


def sq_norm_partial(a, part, slot: int) -> None:
    blocks, chunk = sq_norm_blocks(a.size)
    _sq_norm_partial_kernel(_ft(a.dtype))[blocks, TPB](a, chunk, part, slot)


def sq_norm_finish(part, out, max_norm) -> None:
    _sq_norm_finish_kernel(_ft(part.dtype))[1, TPB](part, out, max_norm)


def ptx_specs() -> list[tuple[str, object, str]]:
    specs = []
    for name in ("float32", "float64"):
        ft = _FLOATS[name]
        a = f"{name}[::1]"
        specs += [
            (
                "sgd_update",
                _sgd_kernel(ft).py_func,
                f"void({a}, {a}, {a}, {name}, {name}, {name}, {name}, boolean, boolean)",
            ),
            (
                "adam_update",
                _adam_kernel(ft).py_func,
                f"void({a}, {a}, {a}, {a}, " + ", ".join([name] * 9) + ")",
            ),
            ("add_", _add_kernel(ft).py_func, f"void({a}, {a})"),
            ("scale_", _scale_kernel(ft).py_func, f"void({a}, {a}, int64)"),
            ("fill_", _fill_kernel(ft).py_func, f"void({a}, {name})"),
            (
                "sq_norm_partial",
                _sq_norm_partial_kernel(ft).py_func,
                f"void({a}, int64, {a}, int64)",
            ),
            ("sq_norm_finish", _sq_norm_finish_kernel(ft).py_func, f"void({a}, {a}, {name})"),
        ]
    return specs
