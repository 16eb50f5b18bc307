"""SGD / Adam / AdamW against hand-written PyTorch formulas (and torch.optim when installed),
state dicts, param groups, clip_grad_norm_; on the CPU and on device arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import nn, optim
from numba_cnn.testing import assert_close, on, randn

SHAPES = [(3, 7), (5,)]


def make_params(device, dtype=np.float32, seed=0):
    return [nn.Parameter(on(device, randn(s, dtype, seed + i))) for i, s in enumerate(SHAPES)]


def grad_seq(dtype=np.float32, steps=3):
    return [[randn(s, dtype, 100 + 10 * t + i) for i, s in enumerate(SHAPES)] for t in range(steps)]


def run(opt_cls, device, dtype=np.float32, steps=3, **kw):
    ps = make_params(device, dtype)
    opt = opt_cls(ps, **kw)
    for gs in grad_seq(dtype, steps):
        for p, g in zip(ps, gs, strict=True):
            p.grad = on(device, g)
        opt.step()
    return ps, opt


# -- the formulas, written out in float64 as torch.optim documents them -----------------------
def sgd_ref(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf = p.astype(np.float64), None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p, buf


def adam_ref(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, adamw=False):
    p = p.astype(np.float64)
    m = v = np.zeros_like(p)
    b1, b2 = betas
    for t, g in enumerate(grads, start=1):
        if adamw:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
    dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=0.1, weight_decay=0.5),
]
ADAM_CASES = [
    (optim.Adam, dict(lr=0.01), False),
    (optim.Adam, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), False),
    (optim.AdamW, dict(lr=0.01), True),
    (optim.AdamW, dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.3), True),
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_formula(kw, device):
    dtype = np.float64 if kw.get("weight_decay") == 0.5 else np.float32
    ps, opt = run(optim.SGD, device, dtype, **kw)
    grads = grad_seq(dtype)
    for i, p in enumerate(ps):
        exp, buf = sgd_ref(make_params("cpu", dtype)[i].data, [g[i] for g in grads], **kw)
        assert nc.to_host(p.data).dtype == dtype
        assert_close(p.data, exp, name=f"param {i}")
        if kw.get("momentum"):
            assert_close(opt.state[p]["momentum_buffer"], buf, name=f"buffer {i}")
        else:
            assert "momentum_buffer" not in opt.state.get(p, {})


@pytest.mark.parametrize("cls, kw, adamw", ADAM_CASES)
def test_adam_matches_formula(cls, kw, adamw, device):
    dtype = np.float64 if kw.get("eps") == 1e-6 else np.float32
    ps, opt = run(cls, device, dtype, **kw)
    grads = grad_seq(dtype)
    for i, p in enumerate(ps):
        ref_kw = {"weight_decay": 1e-2 if adamw else 0.0, **kw}  # AdamW's default decay
        exp, m, v = adam_ref(
            make_params("cpu", dtype)[i].data, [g[i] for g in grads], adamw=adamw, **ref_kw
        )
        assert_close(p.data, exp, name=f"param {i}")
        st = opt.state[p]
        assert st["step"] == 3
        assert_close(st["exp_avg"], m, name="exp_avg")
        assert_close(st["exp_avg_sq"], v, name="exp_avg_sq")


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_large_parameter_takes_the_parallel_path(cls):
    from numba_cnn.kernels.cpu import optim as K

    shape = (K.PARALLEL_MIN // 64 + 3, 64)  # above the threshold, not a multiple of a chunk
    p0, gs = randn(shape, seed=1), [randn(shape, seed=2 + t) for t in range(2)]
    p = nn.Parameter(p0.copy())
    kw = dict(lr=0.01, momentum=0.9, weight_decay=0.1) if cls is optim.SGD else dict(lr=0.01)
    opt = cls([p], **kw)
    for g in gs:
        p.grad = g
        opt.step()
    exp = sgd_ref(p0, gs, **kw)[0] if cls is optim.SGD else adam_ref(p0, gs, **kw)[0]
    assert_close(p.data, exp)


def test_adamw_default_weight_decay_and_adam_differs():
    assert optim.AdamW(make_params("cpu")).defaults["weight_decay"] == 1e-2
    a, _ = run(optim.Adam, "cpu", lr=0.1, weight_decay=0.5)
    w, _ = run(optim.AdamW, "cpu", lr=0.1, weight_decay=0.5)
    assert not np.allclose(a[0].data, w[0].data)


@pytest.mark.parametrize(
    "cls, kw",
    [(optim.SGD, c) for c in SGD_CASES[1:4]] + [(c, k) for c, k, _ in ADAM_CASES],
)
def test_matches_torch_optim(cls, kw):
    torch = pytest.importorskip("torch")
    ps, _ = run(cls, "cpu", steps=4, **kw)
    tps = [torch.nn.Parameter(torch.from_numpy(p.data)) for p in make_params("cpu")]
    topt = getattr(torch.optim, cls.__name__)(tps, **kw, foreach=False)
    for gs in grad_seq(steps=4):
        for tp, g in zip(tps, gs, strict=True):
            tp.grad = torch.from_numpy(g)
        topt.step()
    for p, tp in zip(ps, tps, strict=True):
        assert_close(p.data, tp.detach().numpy(), rtol=2e-6, atol=1e-7)


def test_params_without_grad_are_skipped_and_zero_grad():
    ps = make_params("cpu")
    before = ps[1].data.copy()
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    ps[0].grad = randn(SHAPES[0], seed=9)
    opt.step()
    assert np.array_equal(ps[1].data, before) and ps[1] not in opt.state
    opt.zero_grad()
    assert ps[0].grad is None
    ps[0].grad = randn(SHAPES[0], seed=9)
    opt.zero_grad(set_to_none=False)
    assert np.array_equal(ps[0].grad, np.zeros(SHAPES[0], np.float32))


def test_param_groups_use_their_own_options():
    ps = make_params("cpu")
    opt = optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["momentum"] == 0.9
    gs = grad_seq()[0]
    for p, g in zip(ps, gs, strict=True):
        p.grad = g
    opt.step()
    init = make_params("cpu")
    assert_close(ps[0].data, init[0].data - 0.1 * gs[0])
    assert_close(ps[1].data, init[1].data - 0.5 * gs[1])


@pytest.mark.parametrize(
    "cls, kw", [(optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)), (optim.AdamW, {})]
)
def test_state_dict_round_trip_continues_identically(cls, kw, tmp_path):
    ps, opt = run(cls, "cpu", steps=2, **kw)
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert sd["param_groups"][0]["params"] == [0, 1] and sorted(sd["state"]) == [0, 1]
    assert all(isinstance(v, np.ndarray) for s in sd["state"].values() for v in s.values())
    if cls is optim.AdamW:
        assert sd["state"][0]["step"].dtype == np.float32 and float(sd["state"][0]["step"]) == 2
        assert sorted(sd["state"][1]) == ["exp_avg", "exp_avg_sq", "step"]
    else:
        assert sorted(sd["state"][1]) == ["momentum_buffer"]
    nc.save({"opt": sd, "params": [p.data for p in ps]}, tmp_path / "o.npz")
    ck = nc.load(tmp_path / "o.npz")
    ps2 = [nn.Parameter(a.copy()) for a in ck["params"]]
    opt2 = cls(ps2, lr=123.0)  # hyperparameters come from the state dict
    opt2.load_state_dict(ck["opt"])
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    g3 = grad_seq()[2]
    for a, b, g in zip(ps, ps2, g3, strict=True):
        a.grad, b.grad = g, g.copy()
    opt.step()
    opt2.step()
    for a, b in zip(ps, ps2, strict=True):
        assert np.array_equal(a.data, b.data)


def test_load_state_dict_rejects_mismatches():
    _, opt = run(optim.Adam, "cpu", steps=1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="has 2 parameters, this optimizer has 1"):
        optim.Adam([nn.Parameter(randn((3, 7)))]).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameter groups"):
        ps = make_params("cpu")
        optim.Adam([{"params": [ps[0]]}, {"params": [ps[1]]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        bad = [nn.Parameter(randn((7, 3))), nn.Parameter(randn((5,)))]
        optim.Adam(bad).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state'"):
        opt.load_state_dict({"params": []})


def test_bad_arguments():
    ps = make_params("cpu")
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(ps, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD(ps, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(ps, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([ps[0], ps[0]], lr=0.1)
    with pytest.raises(TypeError, match="Parameters"):
        optim.SGD([np.zeros(3)], lr=0.1)
    p = nn.Parameter(randn((2,)))
    p.grad = randn((2,), np.float64)
    with pytest.raises(TypeError, match="gradient is float64"):
        optim.SGD([p], lr=0.1).step()


# -- clip_grad_norm_ ---------------------------------------------------------------------------
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm(device, max_norm):
    sizes = [(30, 50), (7,)] if nc._cuda.SIMULATOR and device == "cuda" else [(300, 250), (7,)]
    gs = [randn(s, seed=20 + i) for i, s in enumerate(sizes)]
    ps = [nn.Parameter(on(device, np.zeros(s, np.float32))) for s in sizes]
    for p, g in zip(ps, gs, strict=True):
        p.grad = on(device, g.copy())
    none = nn.Parameter(np.zeros(3, np.float32))  # no grad: ignored
    total = nn.utils.clip_grad_norm_(ps + [none], max_norm)
    exp_total = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in gs))
    if device == "cuda":  # as PyTorch: a 0-d array on the device, read only when asked
        assert nc._cuda.is_device_array(total) and total.shape == ()
        total = float(nc.to_host(total))
    assert isinstance(total, float)
    assert abs(total - exp_total) <= 1e-5 * exp_total
    coef = min(max_norm / (exp_total + 1e-6), 1.0)
    for p, g in zip(ps, gs, strict=True):
        assert nc._cuda.is_device_array(p.grad) == (device == "cuda")
        assert_close(p.grad, g * coef)
    clipped = math.sqrt(sum(float((nc.to_host(p.grad).astype(np.float64) ** 2).sum()) for p in ps))
    assert clipped <= max_norm * (1 + 1e-5)
