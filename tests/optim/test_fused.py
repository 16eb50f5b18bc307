"""The fused multi-tensor optimizer kernels (one launch per step for all parameters of one
dtype) against the per-parameter CPU path, and the device-side gradient helpers."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import _cuda, nn, optim
from numba_cnn.kernels.cuda import optim as KC
from numba_cnn.testing import assert_close, randn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
from step_counter import count_device_work  # noqa: E402

pytestmark = pytest.mark.skipif(not nc.cuda_available(), reason="needs a GPU or the simulator")

SHAPES = [(3, 7), (5,), (2, 3, 3, 3), (1,), (4, 6), (9,), (2, 2)]

OPTS = [
    (optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.SGD, dict(lr=0.1, weight_decay=0.5)),
    (optim.Adam, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (optim.AdamW, dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.3)),
]


def _params(device, dtype, seed=0):
    ps = [nn.Parameter(randn(s, dtype, seed + i)) for i, s in enumerate(SHAPES)]
    if device == "cuda":
        for p in ps:
            p.data = nc.to_device(p.data)
    return ps


def _train(cls, kw, device, dtype, steps=3):
    """Two parameter groups; parameter 1 gets its first gradient only at step 2 (its state
    starts a step late: a second launch for it in that step)."""
    ps = _params(device, dtype)
    groups = [{"params": ps[:4]}, {"params": ps[4:], "lr": kw["lr"] * 0.5}]
    opt = cls(groups, **kw)
    launches = []
    for t in range(steps):
        for i, (p, s) in enumerate(zip(ps, SHAPES, strict=True)):
            g = randn(s, dtype, 100 + 10 * t + i)
            p.grad = None if (i == 1 and t == 0) else (nc.to_device(g) if device == "cuda" else g)
        with count_device_work() as c:
            opt.step()
        launches.append(c.launches)
        assert c.copies == 0, dict(c.copy_kinds)
    return ps, opt, launches


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kw", OPTS)
def test_fused_update_matches_the_per_parameter_cpu_path(cls, kw, dtype):
    cpu, opt_c, _ = _train(cls, kw, "cpu", dtype)
    gpu, opt_g, launches = _train(cls, kw, "cuda", dtype)
    for i, (a, b) in enumerate(zip(gpu, cpu, strict=True)):
        assert _cuda.is_device_array(a.data)
        assert_close(a.data, b.data, name=f"param {i}")
        for k, v in opt_c.state[b].items():
            if hasattr(v, "shape"):
                assert_close(opt_g.state[a][k], v, name=f"{k} {i}")
            else:
                assert opt_g.state[a][k] == v
    # steady state: one launch per group; Adam launches once more for parameter 1, whose
    # step count stays one behind (its bias corrections differ)
    assert launches[-1] == (3 if issubclass(cls, optim.Adam) else 2), launches


def test_more_tensors_than_one_launch_takes(monkeypatch):
    monkeypatch.setattr(KC, "MAX_TENSORS", 3)
    kw = dict(lr=0.05, momentum=0.9)
    ps = _params("cuda", np.float32)
    ref = _params("cpu", np.float32)
    opt, opt_c = optim.SGD(ps, **kw), optim.SGD(ref, **kw)
    for t in range(2):
        for i, (p, q, s) in enumerate(zip(ps, ref, SHAPES, strict=True)):
            q.grad = randn(s, np.float32, 50 + 10 * t + i)
            p.grad = nc.to_device(q.grad)
        with count_device_work() as c:
            opt.step()
        opt_c.step()
        assert c.launches == math.ceil(len(SHAPES) / 3)
    for a, b in zip(ps, ref, strict=True):
        assert_close(a.data, b.data)


@pytest.fixture
def no_poison(monkeypatch):
    """Outputs as in production: tests poison them by uploading NaNs, which counts as a copy."""
    from numba_cnn.ops import _common

    monkeypatch.setattr(_common, "POISON", False)


def test_clip_grad_norm_stays_on_the_device(no_poison):
    gs = [randn(s, np.float32, 7 + i) for i, s in enumerate(SHAPES)]
    ps = [nn.Parameter(nc.to_device(np.zeros(s, np.float32))) for s in SHAPES]
    for p, g in zip(ps, gs, strict=True):
        p.grad = nc.to_device(g)
    nn.utils.clip_grad_norm_(ps, 1.0)  # warm: the workspace is allocated once
    for p, g in zip(ps, gs, strict=True):
        p.grad = nc.to_device(g)
    with count_device_work() as c:
        total = nn.utils.clip_grad_norm_(ps, 0.5)
    assert c.copies == 0 and c.syncs == 0, dict(c.copy_kinds)
    assert c.launches == 3 and c.allocs == 1  # partial sums, finish, scale; the 0-d result
    exp = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in gs))
    assert abs(float(nc.to_host(total)) - exp) <= 1e-5 * exp
    for p, g in zip(ps, gs, strict=True):
        assert_close(p.grad, g * (0.5 / (exp + 1e-6)))


def test_zeros_and_scale_do_not_upload(no_poison):
    from numba_cnn.nn import _grad
    from numba_cnn.ops._common import zeros

    with count_device_work() as c:
        z = zeros((3, 5, 7), np.float32, "cuda")
        zi = zeros((11,), np.int64, "cuda")
        a = nc.to_device(randn((13,), np.float64, 3))
    assert c.copies == 1 and c.launches == 2  # the one copy is the explicit to_device
    np.testing.assert_array_equal(nc.to_host(z), np.zeros((3, 5, 7), np.float32))
    np.testing.assert_array_equal(nc.to_host(zi), np.zeros(11, np.int64))
    with count_device_work() as c:
        _grad.scale_(a, 0.25)
    assert c.copies == 0 and c.launches == 1 and c.allocs == 0
    assert_close(a, randn((13,), np.float64, 3) * 0.25)
