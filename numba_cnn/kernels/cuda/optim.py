"""CUDA kernels for parameter updates and gradient bookkeeping, so a model on the GPU keeps
parameters, gradients and optimizer state there.

All arrays are flat (n,) and C-contiguous; scalars arrive cast to the arrays' dtype.
Elementwise kernels use grid-stride loops. The ``*_multi`` kernels take tuples of arrays (one
per parameter) and update them all in one launch, as PyTorch's fused/foreach optimizers;
``sq_norm_multi``/``sq_norm_finish`` form a deterministic two-pass reduction (per-block partial
sums, then one block over the partials) for ``clip_grad_norm_``.
"""

from __future__ import annotations

import functools
import math

from numba_cnn._cuda import SIMULATOR, as_device_array, cuda, types

# threads per block (the reductions' shared arrays have this size); the simulator runs every
# thread as a Python thread, so it gets small blocks and few of them
TPB = 32 if SIMULATOR else 128
_MAX_BLOCKS = 4 if SIMULATOR else 1024
_FLOATS = {"float32": types.float32, "float64": types.float64}


def _ft(dtype):
    return _FLOATS[str(dtype)]


def _grid(n: int) -> tuple[int, int]:
    return max(1, min(_MAX_BLOCKS, (n + TPB - 1) // TPB)), TPB


@functools.cache
def _sgd_multi_kernel(ft):
    # ps, gs, bufs: tuples of n flat arrays (one parameter each; bufs = gs without momentum);
    # every tensor is spread over the whole grid by its own grid-stride loop: one launch
    @cuda.jit
    def sgd_update_multi(
        ps, gs, bufs, lr, momentum, one_minus_dampening, weight_decay, nesterov, first
    ):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for j in range(len(ps)):
            p = ps[j]
            g = gs[j]
            buf = bufs[j]
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

    return sgd_update_multi


@functools.cache
def _adam_multi_kernel(ft):
    # ps, gs, ms (exp_avg), vs (exp_avg_sq): tuples of n flat arrays; one launch, each tensor
    # spread over the whole grid; torch's single-tensor non-amsgrad Adam/AdamW rule
    @cuda.jit
    def adam_update_multi(
        ps, gs, ms, vs, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
    ):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for j in range(len(ps)):
            p = ps[j]
            g = gs[j]
            m = ms[j]
            v = vs[j]
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

    return adam_update_multi


@functools.cache
def _add_kernel(ft):
    # a, b (n,): a += b; grid-stride
    @cuda.jit
    def add_(a, b):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = a[i] + b[i]

    return add_


@functools.cache
def _mul_kernel(ft):
    # a (n,): a *= s, s a scalar argument (passed with the launch: no upload); grid-stride
    @cuda.jit
    def mul_(a, s):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = a[i] * s

    return mul_


@cuda.jit
def _axpy(y, x, a):
    # y, x (n,): y += a * x (y may be wider than x: float64 sums of float32 losses)
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = y[i] + a * x[i]


@functools.cache
def _scale_multi_kernel(ft):
    # gs: tuple of flat arrays; every one *= s[k] (a factor on the device); one launch
    @cuda.jit
    def scale_multi(gs, s, k):
        f = s[k]
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for j in range(len(gs)):
            a = gs[j]
            for i in range(start, a.size, stride):
                a[i] = a[i] * f

    return scale_multi


@functools.cache
def _sq_norm_multi_kernel(ft):
    # gs: tuple of flat arrays; part (P,): part[b] = sum over tensors j of sum(a_j[i]^2) over
    # block b's chunk [b * chunk_j, (b + 1) * chunk_j) of each a_j, chunk_j = ceil(n_j / P);
    # P blocks of TPB threads (deterministic: fixed order, no atomics)
    @cuda.jit
    def sq_norm_multi(gs, part):
        buf = cuda.shared.array(TPB, dtype=ft)
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        nb = cuda.gridDim.x
        s = ft(0)
        for j in range(len(gs)):
            a = gs[j]
            chunk = (a.size + nb - 1) // nb
            lo = b * chunk
            hi = min(a.size, lo + chunk)
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
            part[b] = buf[0]

    return sq_norm_multi


@functools.cache
def _fill_kernel(ft):
    # a (n,): a = value; grid-stride
    @cuda.jit
    def fill_(a, value):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = value

    return fill_


@functools.cache
def _sq_norm_finish_kernel(ft):
    # part (P,) -> out[0] = sum(part) (squared norm), out[1] = min(max_norm / (sqrt + 1e-6), 1)
    # (the clip_grad_norm_ factor), norm[0] = sqrt(sum(part)); one block of TPB threads
    @cuda.jit
    def sq_norm_finish(part, out, norm, max_norm):
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
            norm[0] = math.sqrt(total)
            c = max_norm / (math.sqrt(total) + ft(1e-6))
            out[1] = min(c, ft(1))

    return sq_norm_finish


# -- launchers (arrays flat, scalars already of the arrays' dtype) ------------------------------
MAX_TENSORS = 16


def _tup(arrays) -> tuple:
    """Numba device arrays of one type (a CuPy or PyTorch gradient would make the tuple
    heterogeneous, which a run-time index cannot address)."""
    return tuple(as_device_array(a) for a in arrays)


def _chunks(n: int):
    return [slice(i, min(n, i + MAX_TENSORS)) for i in range(0, n, MAX_TENSORS)]


def _multi_grid(sizes) -> tuple[int, int]:
    return _grid(max(sizes))


def sgd_update_multi(
    ps, gs, bufs, lr, momentum, one_minus_dampening, weight_decay, nesterov, first
):
    """Per element of every (p, g, buf), PyTorch's SGD rule (see ``optim.SGD``); one launch
    per ``MAX_TENSORS`` tensors; ``bufs`` may be ``gs`` when ``momentum == 0``."""
    k = _sgd_multi_kernel(_ft(ps[0].dtype))
    for c in _chunks(len(ps)):
        p, g, b = _tup(ps[c]), _tup(gs[c]), _tup(bufs[c])
        k[_multi_grid([a.size for a in p])](
            p, g, b, lr, momentum, one_minus_dampening, weight_decay, bool(nesterov), bool(first)
        )


def adam_update_multi(
    ps, gs, ms, vs, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
):
    """Per element of every (p, g, m, v), PyTorch's Adam/AdamW rule (see ``optim.Adam``); one
    launch per ``MAX_TENSORS`` tensors."""
    k = _adam_multi_kernel(_ft(ps[0].dtype))
    for c in _chunks(len(ps)):
        p, g, m, v = _tup(ps[c]), _tup(gs[c]), _tup(ms[c]), _tup(vs[c])
        k[_multi_grid([a.size for a in p])](
            p, g, m, v, w1, one, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay
        )


def add_(a, b):
    _add_kernel(_ft(a.dtype))[_grid(a.size)](a, b)


def fill_(a, value):
    """``a[:] = value`` for a flat array of any dtype (zeros: the memset of ``ops.zeros``)."""
    _fill_kernel(str(a.dtype))[_grid(a.size)](a, value)


def mul_(a, s) -> None:
    """``a *= s`` with ``s`` a host scalar of ``a``'s dtype (a launch argument)."""
    _mul_kernel(_ft(a.dtype))[_grid(a.size)](a, s)


def axpy_(y, x, a: float) -> None:
    """``y += a * x`` (``a`` a host float, a launch argument)."""
    _axpy[_grid(y.size)](y, x, a)


def sq_norm_parts(sizes) -> int:
    """How many partial sums ``sq_norm_multi`` writes for tensors of these sizes."""
    blocks = max(1, min(_MAX_BLOCKS, (sum(sizes) + 4 * TPB - 1) // (4 * TPB)))
    return blocks * len(_chunks(len(sizes)))


def sq_norm_multi(gs, part) -> None:
    """``part`` (``sq_norm_parts`` long) = per-block shares of the squared norm of all of
    ``gs``: one launch per ``MAX_TENSORS`` tensors, each filling its own slice of ``part``."""
    k = _sq_norm_multi_kernel(_ft(gs[0].dtype))
    chunks = _chunks(len(gs))
    blocks = part.size // len(chunks)
    for i, c in enumerate(chunks):
        k[blocks, TPB](_tup(gs[c]), part[i * blocks : (i + 1) * blocks])


def scale_multi(gs, s, k: int) -> None:
    """Every array of ``gs`` ``*= s[k]`` (``s`` a device array)."""
    kern = _scale_multi_kernel(_ft(gs[0].dtype))
    for c in _chunks(len(gs)):
        g = _tup(gs[c])
        kern[_multi_grid([a.size for a in g])](g, s, k)


def sq_norm_finish(part, out, norm, max_norm) -> None:
    _sq_norm_finish_kernel(_ft(part.dtype))[1, TPB](part, out, norm, max_norm)


def ptx_specs() -> list[tuple[str, object, str]]:
    """(name, kernel function, signature) of every kernel above, float32 and float64; the
    multi-tensor kernels for a tuple of 6 tensors (one specialisation per tuple length)."""
    specs = []
    for name in ("float32", "float64"):
        ft = _FLOATS[name]
        a = f"{name}[::1]"
        tup = f"UniTuple({a}, 6)"
        specs += [
            (
                "sgd_update_multi",
                _sgd_multi_kernel(ft).py_func,
                f"void({tup}, {tup}, {tup}, " + ", ".join([name] * 4) + ", boolean, boolean)",
            ),
            (
                "adam_update_multi",
                _adam_multi_kernel(ft).py_func,
                f"void({tup}, {tup}, {tup}, {tup}, " + ", ".join([name] * 9) + ")",
            ),
            ("add_", _add_kernel(ft).py_func, f"void({a}, {a})"),
            ("mul_", _mul_kernel(ft).py_func, f"void({a}, {name})"),
            ("axpy_", _axpy.py_func, f"void(float64[::1], {a}, float64)"),
            ("fill_", _fill_kernel(name).py_func, f"void({a}, {name})"),
            ("scale_multi", _scale_multi_kernel(ft).py_func, f"void({tup}, {a}, int64)"),
            ("sq_norm_multi", _sq_norm_multi_kernel(ft).py_func, f"void({tup}, {a})"),
            ("sq_norm_finish", _sq_norm_finish_kernel(ft).py_func, f"void({a}, {a}, {a}, {name})"),
        ]
    return specs
