"""SPEC.md conformance, part 3: layers, containers, state dicts, init, optimizers, schedulers.

Public API only: ``import numba_cnn as nc`` and ``from numba_cnn import nn, optim``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import nn, optim
from numba_cnn.testing import assert_close

ROOT = Path(__file__).resolve().parents[1]


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )


def batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((3, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 3)


def test_sequential_container():
    net = small_net()
    assert len(net) == 6
    assert isinstance(net[0], nn.Conv2d) and isinstance(net[-1], nn.Linear)
    assert [type(m).__name__ for m in net] == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
    ]


def test_state_dict_keys_as_pytorch():
    net = small_net()
    sd = net.state_dict()
    assert list(sd) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "5.weight",
        "5.bias",
    ]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["0.weight"].shape == (4, 1, 3, 3) and sd["5.weight"].shape == (10, 64)
    assert (sd["1.weight"] == 1).all() and (sd["1.bias"] == 0).all()  # BatchNorm2d init
    assert (sd["1.running_mean"] == 0).all() and (sd["1.running_var"] == 1).all()
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"] == 0
    assert [n for n, _ in net.named_parameters()] == [
        k for k in sd if k.endswith(("weight", "bias"))
    ]
    # load_state_dict rejects missing, unexpected and wrongly shaped entries
    with pytest.raises((KeyError, ValueError), match="0.bias"):
        net.load_state_dict({k: v for k, v in sd.items() if k != "0.bias"})
    with pytest.raises((KeyError, ValueError), match="extra"):
        net.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="5.weight"):
        net.load_state_dict({**sd, "5.weight": np.zeros((10, 63), np.float32)})


def test_manual_seed_reproduces_init_and_pytorch_bounds():
    nc.manual_seed(7)
    a = small_net().state_dict()
    nc.manual_seed(7)
    b = small_net().state_dict()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    nc.manual_seed(8)
    assert not np.array_equal(small_net().state_dict()["0.weight"], a["0.weight"])
    # Kaiming-uniform with a = sqrt(5) -> bound 1/sqrt(fan_in); bias uniform(+-1/sqrt(fan_in))
    lin = nn.Linear(400, 30)
    w, bias = lin.state_dict()["weight"], lin.state_dict()["bias"]
    assert w.dtype == np.float32 and np.abs(w).max() <= 1 / math.sqrt(400)
    assert np.abs(w).max() > 0.9 / math.sqrt(400) and np.abs(bias).max() <= 1 / math.sqrt(400)
    conv = nn.Conv2d(8, 6, 3, groups=2).state_dict()  # fan_in = (8 // 2) * 3 * 3 = 36
    assert 0.9 / 6 < np.abs(conv["weight"]).max() <= 1 / 6 and np.abs(conv["bias"]).max() <= 1 / 6


def test_module_training_round():
    nc.manual_seed(0)
    net, crit = small_net(), nn.CrossEntropyLoss()
    x, labels = batch()
    assert net.train() is net and net.eval() is net
    net.train()
    loss = crit(net(x), labels)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float32
    dlogits = crit.backward()
    assert dlogits.shape == (3, 10)
    dx = net.backward(dlogits)
    assert dx.shape == x.shape
    params = list(net.parameters())
    assert all(p.grad is not None and p.grad.shape == p.data.shape for p in params)
    g = [p.grad.copy() for p in params]
    net.backward(dlogits)  # backward accumulates into .grad
    for p, gi in zip(params, g, strict=True):
        assert_close(p.grad, 2 * gi.astype(np.float64), name="accumulated grad")
    net.zero_grad()
    net.forward(x)
    crit(net(x), labels)
    assert net.backward(crit.backward(), need_dx=False) is None
    total = nn.utils.clip_grad_norm_(net.parameters(), 1e-3)
    expected = math.sqrt(sum(float((gi.astype(np.float64) ** 2).sum()) for gi in g))
    assert math.isclose(float(total), expected, rel_tol=1e-4)
    clipped = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in params))
    assert math.isclose(clipped, 1e-3, rel_tol=1e-3)


def test_module_to_device():
    if not nc.cuda_available():
        pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1")
    nc.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 3), nn.ReLU())
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    want = net(x)
    assert net.to("cuda") is net
    y = net(nc.to_device(x))
    assert not isinstance(y, np.ndarray)
    assert_close(nc.to_host(y), want, name="cuda forward")
    assert isinstance(net.to("cpu").state_dict()["0.weight"], np.ndarray)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_optimizer_round(name):
    nc.manual_seed(0)
    net, crit = small_net(), nn.CrossEntropyLoss()
    kw = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    opt = getattr(optim, name)(net.parameters(), **kw)
    x, labels = batch()
    before = net.state_dict()["5.weight"].copy()
    first = float(nc.to_host(crit(net(x), labels)))
    for _ in range(5):
        opt.zero_grad()
        crit(net(x), labels)
        net.backward(crit.backward())
        opt.step()
    assert not np.array_equal(net.state_dict()["5.weight"], before)
    assert float(nc.to_host(crit(net(x), labels))) < first
    sd = opt.state_dict()
    opt2 = getattr(optim, name)(net.parameters(), **kw)
    opt2.load_state_dict(sd)
    assert_same(opt2.state_dict(), sd)


def assert_same(a, b, where="state") -> None:
    assert type(a) is type(b) or isinstance(a, np.ndarray), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same(u, v, f"{where}[{i}]")
    else:
        assert np.array_equal(np.asarray(a), np.asarray(b)), where


LAYERS = [
    (lambda: nn.Conv2d(2, 3, (3, 2), stride=1, padding="same"), (2, 2, 5, 6), (2, 3, 5, 6)),
    (
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False),
        (2, 4, 7, 6),
        (2, 6, 4, 3),
    ),
    (lambda: nn.MaxPool2d(3, 2, 1), (2, 2, 7, 6), (2, 2, 4, 3)),
    (lambda: nn.AvgPool2d(2, ceil_mode=True), (2, 2, 5, 6), (2, 2, 3, 3)),
    (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4), (2, 3, 1, 1)),
    (lambda: nn.BatchNorm2d(3), (4, 3, 3, 2), (4, 3, 3, 2)),
    (lambda: nn.Flatten(), (2, 3, 2, 2), (2, 12)),
    (lambda: nn.Linear(5, 4), (3, 5), (3, 4)),
    (nn.ReLU, (3, 5), (3, 5)),
    (lambda: nn.LeakyReLU(0.2), (3, 5), (3, 5)),
    (nn.Sigmoid, (3, 5), (3, 5)),
    (nn.Tanh, (3, 5), (3, 5)),
    (lambda: nn.Softmax(dim=1), (3, 5), (3, 5)),
    (lambda: nn.Dropout(0.3), (3, 5), (3, 5)),
]


@pytest.mark.parametrize("make, shape, out", LAYERS, ids=lambda v: getattr(v, "__name__", ""))
def test_layer_forward_backward_shapes(make, shape, out):
    nc.manual_seed(0)
    layer = make().train()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = layer(x)
    assert y.shape == out and y.dtype == np.float32
    dx = layer.backward(np.random.default_rng(1).standard_normal(out).astype(np.float32))
    assert dx.shape == shape and dx.dtype == np.float32
    for p in layer.parameters():
        assert p.grad.shape == p.data.shape


def test_dropout_layer_seeded_and_identity_in_eval():
    x = np.random.default_rng(0).standard_normal((4, 30)).astype(np.float32)
    drop = nn.Dropout(0.5)
    nc.manual_seed(3)
    a = drop(x)
    nc.manual_seed(3)
    assert np.array_equal(drop(x), a) and (a == 0).any()
    assert np.array_equal(drop.eval()(x), x)


def test_batchnorm_layer_counts_batches():
    bn = nn.BatchNorm2d(3).train()
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    bn(x)
    bn(x)
    assert int(bn.state_dict()["num_batches_tracked"]) == 2
    assert_close(bn.state_dict()["running_mean"], 0.19 * x.astype(np.float64).mean((0, 2, 3)))


def test_schedulers():
    opt = optim.SGD([nn.Linear(2, 2).weight], lr=0.8)
    step = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        step.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert_close(np.array(lrs), np.array([0.8, 0.4, 0.4, 0.2, 0.2]), name="StepLR")
    opt = optim.SGD([nn.Linear(2, 2).weight], lr=0.8)
    cos = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for _ in range(4):
        cos.step()
        lrs.append(opt.param_groups[0]["lr"])
    want = [0.4 * (1 + math.cos(math.pi * t / 4)) for t in range(1, 5)]
    assert_close(np.array(lrs), np.array(want), name="CosineAnnealingLR")
