"""Whole training steps for ``gpu_check.py``: ours against PyTorch CUDA on the same model and
data, and what one steady-state step of ours does (launches, syncs, copies, pool requests,
new driver memory).

A step is ``zero_grad``, forward, cross-entropy, backward, SGD with momentum. The models:
LeNet-5 (``numba_cnn.models.lenet``: conv-bn-relu-pool x2, dense 120-84-10, 1x28x28) and the
small CIFAR net (conv32-relu-pool-conv64-relu-pool-fc128-fc10, 3x32x32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import numba_cnn as nc
from numba_cnn import nn, optim
from numba_cnn.models import lenet


def cifar_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def tiny_net() -> nn.Sequential:
    """Issue 8's small conv net (6 parameters), for ``--sim``."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 10),
    )


MODELS = {
    "lenet5": (lambda: lenet(1, 28, 10), (1, 28, 28)),
    "cifar": (cifar_net, (3, 32, 32)),
    "tiny": (tiny_net, (1, 8, 8)),
}


@dataclass
class StepResult:
    model: str
    batch: int
    ours_ms: float
    torch_ms: float | None
    launches: int
    syncs: int
    copies: int
    pool_requests: int
    new_reserved_bytes: int
    loss_diff: float | None  # |our first loss - torch's|

    def row(self) -> str:
        t = "-" if self.torch_ms is None else f"{self.torch_ms:.3f}"
        r = "-" if self.torch_ms is None else f"{self.torch_ms / self.ours_ms:.2f}x"
        d = "-" if self.loss_diff is None else f"{self.loss_diff:.1e}"
        return (
            f"| {self.model} | {self.batch} | {self.ours_ms:.3f} | {t} | {r} | {self.launches} | "
            f"{self.syncs} | {self.copies} | {self.pool_requests} | {self.new_reserved_bytes} "
            f"| {d} |"
        )


HEADER = (
    "| model | batch | ours ms/step | torch ms/step | ratio (torch/ours) | launches | syncs "
    "| copies | pool requests | new pool bytes | first-loss diff |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _torch_model(torch, ours: nn.Sequential):
    """The same architecture in torch.nn with our initial weights (state_dict keys match)."""
    tnn = torch.nn
    layers = []
    for m in ours:
        name = type(m).__name__
        if name == "Conv2d":
            layers.append(
                tnn.Conv2d(
                    m.in_channels,
                    m.out_channels,
                    m.kernel_size,
                    m.stride,
                    m.padding,
                    bias=m.bias is not None,
                )
            )
        elif name == "Linear":
            layers.append(tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None))
        elif name == "BatchNorm2d":
            layers.append(tnn.BatchNorm2d(m.num_features))
        elif name == "MaxPool2d":
            layers.append(tnn.MaxPool2d(m.kernel_size))
        else:
            layers.append(getattr(tnn, name)())
    tm = tnn.Sequential(*layers).cuda()
    sd = {k: torch.as_tensor(np.asarray(v)).cuda() for k, v in ours.state_dict().items()}
    tm.load_state_dict(sd)
    return tm


def _events_ms(event, fn, reps: int) -> float:
    """Median ms of ``fn()`` between two events made by ``event()`` (Numba's or torch's; the
    simulator's events time nothing: wall clock there)."""
    import time

    times = []
    for _ in range(reps):
        s, e = event(), event()
        t0 = time.perf_counter()
        s.record()
        fn()
        e.record()
        e.synchronize()
        ms = s.elapsed_time(e)
        times.append(ms if ms >= 0 else (time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def run_step(name: str, batch: int, reps: int, torch=None, sim: bool = False) -> StepResult:
    from step_counter import count_device_work

    from numba_cnn import _cuda

    build, shape = MODELS[name]
    nc.manual_seed(0)
    model = build()
    tmodel = _torch_model(torch, model) if torch is not None else None
    model.to("cuda")
    rng = np.random.default_rng(0)
    xh = rng.standard_normal((batch, *shape)).astype(np.float32)
    yh = rng.integers(0, 10, batch)
    x, y = nc.to_device(xh), nc.to_device(yh)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = crit(model(x), y)
        model.backward(crit.backward(), need_dx=False)
        opt.step()
        return loss

    first = float(nc.to_host(step()))  # optimizer state exists from here on: steady state
    if not sim:
        step()  # and the memory pool holds what a step asks for (the simulator has no pool)
    nc.synchronize()
    before = nc.memory_stats()
    with count_device_work() as c:
        step()
    nc.synchronize()
    after = nc.memory_stats()
    ours = _events_ms(_cuda.cuda.event, step, reps)

    torch_ms = loss_diff = None
    if tmodel is not None:
        torch.backends.cudnn.allow_tf32 = False  # fp32 against fp32
        torch.backends.cuda.matmul.allow_tf32 = False
        tx, ty = torch.as_tensor(xh).cuda(), torch.as_tensor(yh).cuda()
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
        tcrit = torch.nn.CrossEntropyLoss()

        def tstep():
            topt.zero_grad()
            loss = tcrit(tmodel(tx), ty)
            loss.backward()
            topt.step()
            return loss

        loss_diff = abs(float(tstep()) - first)
        for _ in range(3):
            tstep()
        torch_ms = _events_ms(lambda: torch.cuda.Event(enable_timing=True), tstep, reps)
    return StepResult(
        name,
        batch,
        ours,
        torch_ms,
        c.launches,
        c.syncs,
        c.copies,
        after["allocs"] - before["allocs"],
        after["bytes_reserved"] - before["bytes_reserved"],
        loss_diff,
    )
