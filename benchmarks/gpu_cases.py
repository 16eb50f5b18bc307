"""Cases for ``gpu_check.py``: the sizes of ``run.py`` (tiny ones under the simulator), with
our op, the PyTorch and CuPy peers, and the work each call does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cases import CONV_SHAPES  # benchmarks/ is on sys.path

from numba_cnn import functional as F

CONV = CONV_SHAPES  # the sizes of run.py
CONV_SIM = [((2, 3, 9, 7), 5, 3, 1)]


@dataclass
class GpuCase:
    name: str
    unit: str
    work: float
    host_inputs: tuple
    ours: Callable[..., Any]
    torch: Callable[..., Any] | None = None
    cupy: Callable[..., Any] | None = None
    tol: dict = field(default_factory=dict)

    @property
    def bytes_in(self) -> int:
        return sum(a.nbytes for a in self.host_inputs if isinstance(a, np.ndarray))


def _r(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _tF():
    import torch

    return torch


def _cupy_conv(pad):
    def run(x, w):
        import cupy as cp

        N, C, H, W = x.shape
        K, _, R, S = w.shape
        xp = cp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        P, Q = H + 2 * pad - R + 1, W + 2 * pad - S + 1
        cols = cp.empty((N, P, Q, C, R, S), dtype=x.dtype)
        for r in range(R):
            for s in range(S):
                cols[..., r, s] = xp[:, :, r : r + P, s : s + Q].transpose(0, 2, 3, 1)
        y = cols.reshape(N * P * Q, -1) @ w.reshape(K, -1).T
        return y.reshape(N, P, Q, K).transpose(0, 3, 1, 2)

    return run


def conv_cases(sim: bool) -> list[GpuCase]:
    out = []
    for i, (shape, K, k, pad) in enumerate(CONV_SIM if sim else CONV):
        C = shape[1]
        x = _r(shape, 10 + i)
        w = _r((K, C, k, k), 20 + i, 1 / np.sqrt(C * k * k))
        b = _r((K,), 30 + i)
        P = shape[2] + 2 * pad - k + 1
        Q = shape[3] + 2 * pad - k + 1
        dy = _r((shape[0], K, P, Q), 40 + i)
        flops = 2.0 * shape[0] * K * P * Q * C * k * k
        name = f"conv {shape}->{K} k{k} p{pad}"
        out.append(
            GpuCase(
                name + " fwd",
                "GFLOP/s",
                flops,
                (x, w, b),
                lambda x, w, b, p=pad: F.conv2d(x, w, b, padding=p),
                lambda x, w, b, p=pad: _tF().nn.functional.conv2d(x, w, b, padding=p),
                lambda x, w, b, p=pad: _cupy_conv(p)(x, w),
                tol=dict(rtol=1e-3, atol=1e-3),
            )
        )
        out.append(
            GpuCase(
                name + " bwd",
                "GFLOP/s",
                2 * flops,
                (dy, x, w),
                lambda dy, x, w, p=pad: F.conv2d_backward(dy, x, w, padding=p),
                lambda dy, x, w, p=pad, K=K: _tF().ops.aten.convolution_backward(
                    dy, x, w, [K], [1, 1], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
                ),
                tol=dict(rtol=1e-3, atol=2e-3),
            )
        )
    return out


def other_cases(sim: bool) -> list[GpuCase]:
    shape = (2, 3, 9, 7) if sim else (64, 32, 32, 32)
    x = _r(shape, 1)
    n = x.size
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    dyp = _r(y.shape, 2)
    dy = _r(shape, 3)
    xs = (8, 10) if sim else (256, 1000)
    lg = _r(xs, 4, 3.0)
    lab = np.random.default_rng(5).integers(0, xs[1], xs[0]).astype(np.int64)
    lin = ((5, 7), 3) if sim else ((64, 400), 120)
    lx = _r(lin[0], 6)
    lw = _r((lin[1], lin[0][1]), 7, 0.05)
    lb = _r((lin[1],), 8)
    ldy = _r((lin[0][0], lin[1]), 9)
    C = shape[1]
    rm, rv = _r((C,), 11), np.abs(_r((C,), 12)) + 0.5
    gamma, beta = _r((C,), 13), _r((C,), 14)
    _, sm, si = F.batch_norm(x, rm.copy(), rv.copy(), gamma, beta, training=True)
    t = _tF
    return [
        GpuCase(
            f"max-pool 2x2 {shape} fwd",
            "GB/s",
            4.0 * n + 12.0 * y.size,
            (x,),
            lambda x: F.max_pool2d(x, 2, return_indices=True),
            lambda x: t().nn.functional.max_pool2d(x, 2, return_indices=True),
        ),
        GpuCase(
            f"max-pool 2x2 {shape} bwd",
            "GB/s",
            12.0 * y.size + 4.0 * n,
            (dyp, idx),
            lambda d, i: F.max_pool2d_backward(d, i, shape),
        ),
        GpuCase(
            f"avg-pool 2x2 {shape} fwd",
            "GB/s",
            4.0 * n + 4.0 * y.size,
            (x,),
            lambda x: F.avg_pool2d(x, 2),
            lambda x: t().nn.functional.avg_pool2d(x, 2),
        ),
        GpuCase(
            f"avg-pool 2x2 {shape} bwd",
            "GB/s",
            4.0 * n + 4.0 * y.size,
            (dyp,),
            lambda d: F.avg_pool2d_backward(d, shape, 2),
        ),
        GpuCase(f"relu {shape} fwd", "GB/s", 8.0 * n, (x,), F.relu, lambda x: t().relu(x)),
        GpuCase(
            f"relu {shape} bwd",
            "GB/s",
            12.0 * n,
            (dy, x),
            F.relu_backward,
            lambda d, x: t().ops.aten.threshold_backward(d, x, 0),
        ),
        GpuCase(
            f"softmax {xs} fwd",
            "GB/s",
            8.0 * lg.size,
            (lg,),
            F.softmax,
            lambda v: t().softmax(v, -1),
        ),
        GpuCase(
            f"cross-entropy {xs} fwd",
            "GB/s",
            4.0 * lg.size,
            (lg, lab),
            F.cross_entropy,
            lambda v, l: t().nn.functional.cross_entropy(v, l),
        ),
        GpuCase(
            f"cross-entropy {xs} bwd", "GB/s", 8.0 * lg.size, (lg, lab), F.cross_entropy_backward
        ),
        GpuCase(
            f"linear {lin} fwd",
            "GFLOP/s",
            2.0 * lx.size * lin[1],
            (lx, lw, lb),
            F.linear,
            lambda a, w, b: t().nn.functional.linear(a, w, b),
        ),
        GpuCase(
            f"linear {lin} bwd",
            "GFLOP/s",
            4.0 * lx.size * lin[1],
            (ldy, lx, lw),
            F.linear_backward,
            tol=dict(rtol=1e-3, atol=1e-3),
        ),
        GpuCase(
            f"batch-norm eval {shape} fwd",
            "GB/s",
            8.0 * n,
            (x, rm, rv, gamma, beta),
            lambda x, m, v, g, b: F.batch_norm(x, m, v, g, b, training=False)[0],
            lambda x, m, v, g, b: t().nn.functional.batch_norm(x, m, v, g, b, False),
        ),
        GpuCase(
            f"batch-norm {shape} bwd",
            "GB/s",
            12.0 * n,
            (dy, x, gamma, sm, si),
            F.batch_norm_backward,
            tol=dict(rtol=1e-3, atol=1e-3),
        ),
    ]


def cases(sim: bool) -> list[GpuCase]:
    return conv_cases(sim) + other_cases(sim)
