"""Training end to end: the loss falls on the CPU; a step on device arrays (GPU or simulator)
matches the same step on the CPU, with everything kept on the device."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import _cuda, nn, optim
from numba_cnn.testing import assert_close, on


def tiny_net() -> nn.Sequential:
    # (N, 1, 6, 6) -> conv 3x3 pad 1 -> (N, 2, 6, 6) -> pool 2 -> (N, 2, 3, 3) -> 18 -> 3
    nc.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.0),
        nn.Linear(18, 3),
    )


def data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32) * 0.3
    for i, c in enumerate(y):  # class c lights up rows 2c..2c+1
        x[i, 0, 2 * c : 2 * c + 2, :] += 1.0
    return x, y


def train_step(model, crit, opt, x, y):
    loss = crit(model(x), y)
    opt.zero_grad()
    model.backward(crit.backward(), need_dx=False)
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    return loss


def test_loss_decreases_on_cpu():
    model, crit = tiny_net(), nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = data(12)
    losses = [float(train_step(model, crit, opt, x, y)) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    acc = (np.argmax(model(x), axis=1) == y).mean()
    assert acc > 0.9


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_device_step_matches_cpu_step(monkeypatch):
    x, y = data(2, seed=1)
    cpu, gpu = tiny_net(), tiny_net().to("cuda")
    crit = nn.CrossEntropyLoss()
    opt_c = optim.SGD(cpu.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt_g = optim.SGD(gpu.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    xd, yd = on("cuda", x, y)

    # no host round trip inside forward, backward or step: copying back to the host fails
    devtype = type(xd)
    original = devtype.copy_to_host

    def forbidden(*a, **k):
        raise AssertionError("copy_to_host during a device training step")

    losses = []
    for _ in range(2):
        lc = train_step(cpu, crit, opt_c, x, y)
        monkeypatch.setattr(devtype, "copy_to_host", forbidden)
        loss = crit(gpu(xd), yd)
        opt_g.zero_grad()
        gpu.backward(crit.backward(), need_dx=False)
        monkeypatch.setattr(devtype, "copy_to_host", original)
        nn.utils.clip_grad_norm_(gpu.parameters(), 5.0)  # returns a float: one sync, by design
        monkeypatch.setattr(devtype, "copy_to_host", forbidden)
        opt_g.step()
        monkeypatch.setattr(devtype, "copy_to_host", original)
        assert _cuda.is_device_array(loss) and loss.shape == ()
        losses.append((float(lc), float(nc.to_host(loss))))

    for p in gpu.parameters():
        assert _cuda.is_device_array(p.data) and _cuda.is_device_array(p.grad)
    for st in opt_g.state.values():
        assert _cuda.is_device_array(st["momentum_buffer"])
    for lc, lg in losses:
        assert abs(lc - lg) <= 1e-4 * max(1.0, abs(lc))
    sc, sg = cpu.state_dict(), gpu.state_dict()
    for k in sc:
        assert_close(sg[k], sc[k], name=k)
