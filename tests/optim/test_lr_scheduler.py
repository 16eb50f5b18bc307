"""StepLR and CosineAnnealingLR learning-rate sequences (closed forms; torch when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numba_cnn import nn, optim
from numba_cnn.optim.lr_scheduler import CosineAnnealingLR, StepLR


def make_opt(lr=0.5):
    return optim.SGD([nn.Parameter(np.zeros(2, np.float32))], lr=lr, momentum=0.9)


def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        assert sched.optimizer.param_groups[0]["lr"] == out[-1]
        sched.optimizer.step()
        sched.step()
    return out


@pytest.mark.parametrize("step_size, gamma", [(3, 0.1), (1, 0.5), (4, 0.7)])
def test_step_lr_sequence(step_size, gamma):
    got = lrs(StepLR(make_opt(0.5), step_size, gamma), 12)
    exp = [0.5 * gamma ** (e // step_size) for e in range(12)]
    np.testing.assert_allclose(got, exp, rtol=1e-12)


@pytest.mark.parametrize("T_max, eta_min", [(5, 0.0), (4, 0.01)])
def test_cosine_sequence(T_max, eta_min):
    got = lrs(CosineAnnealingLR(make_opt(0.5), T_max, eta_min=eta_min), 3 * T_max + 2)
    exp = [
        eta_min + (0.5 - eta_min) * (1 + math.cos(math.pi * e / T_max)) / 2
        for e in range(3 * T_max + 2)
    ]
    np.testing.assert_allclose(got, exp, rtol=1e-9, atol=1e-12)
    assert got[T_max] == pytest.approx(eta_min, abs=1e-12)


@pytest.mark.parametrize(
    "name, kw",
    [("StepLR", dict(step_size=2, gamma=0.3)), ("CosineAnnealingLR", dict(T_max=3, eta_min=0.001))],
)
def test_matches_torch_exactly(name, kw):
    torch = pytest.importorskip("torch")
    got = lrs(getattr(optim.lr_scheduler, name)(make_opt(0.5), **kw), 10)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5, momentum=0.9)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    exp = []
    for _ in range(10):
        exp.append(tsched.get_last_lr()[0])
        topt.step()
        tsched.step()
    assert got == exp


def test_state_dict_resumes_the_schedule():
    s1 = CosineAnnealingLR(make_opt(0.5), T_max=6)
    first = lrs(s1, 3)
    opt2 = make_opt(0.5)
    opt2.load_state_dict(s1.optimizer.state_dict())
    s2 = CosineAnnealingLR(opt2, T_max=6)
    s2.load_state_dict(s1.state_dict())
    assert "optimizer" not in s1.state_dict()
    assert lrs(s2, 4) == lrs(s1, 4)
    assert len(first) == 3


def test_initial_lr_and_bad_arguments():
    opt = make_opt(0.2)
    StepLR(opt, 2)
    assert opt.param_groups[0]["initial_lr"] == 0.2
    with pytest.raises(ValueError, match="step_size"):
        StepLR(make_opt(), 0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(make_opt(), 0)
    with pytest.raises(TypeError, match="not an Optimizer"):
        StepLR(object(), 2)
