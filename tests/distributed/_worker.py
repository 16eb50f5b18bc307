"""What each rank runs in the MPI tests: ``mpiexec -n P python _worker.py MODE OUT``.

Modes: ``train`` (20 data-parallel steps with SGD-momentum and with Adam, saving losses and
weights), ``mismatch`` (rank 1 builds a wider layer), ``raise`` (rank 1 raises while rank 0
waits in a collective), ``device`` (gradients as simulator device arrays: the host-staging
path), ``bcast`` (broadcast_parameters of parameters and buffers).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import numba_cnn as nc
import numba_cnn.distributed as dist
from numba_cnn import nn, optim
from numba_cnn.data import DataLoader, load_digits
from numba_cnn.testing import assert_close

STEPS, GLOBAL_BATCH, SEED = 20, 16, 7


def small_net(hidden: int = 24) -> nn.Sequential:
    """A conv net without batch norm or dropout, so that P ranks repeat one process exactly."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def make_optimizer(name: str, model: nn.Module) -> optim.Optimizer:
    if name == "sgd":
        return optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return optim.Adam(model.parameters(), lr=3e-3)


def train(name: str, group: dist.Group | None) -> tuple[np.ndarray, dict]:
    """``STEPS`` steps of the global batch ``GLOBAL_BATCH``; one process when ``group`` is
    None. Returns the global mean loss of every step and the final state dict."""
    x, y, _, _ = load_digits()
    rank, size = (0, 1) if group is None else (group.rank, group.size)
    nc.manual_seed(SEED + rank)  # ranks start apart: broadcast_parameters must fix that
    model = small_net()
    if group is not None:
        dist.broadcast_parameters(model)
    opt, crit = make_optimizer(name, model), nn.CrossEntropyLoss()
    kw = {} if group is None else {"rank": rank, "world_size": size}
    loader = DataLoader(x, y, GLOBAL_BATCH // size, shuffle=True, seed=SEED, **kw)
    losses = []
    for step, (xb, yb) in enumerate(loader):
        if step == STEPS:
            break
        opt.zero_grad()
        loss = float(crit(model(xb), yb))
        model.backward(crit.backward(), need_dx=False)
        if group is not None:
            dist.allreduce_gradients(model)
            loss = float(group.sum([loss])[0]) / size  # equal slices: the global mean
        opt.step()
        losses.append(loss)
    return np.array(losses), model.state_dict()


def main(mode: str, out: Path) -> None:
    g = dist.init()
    if mode == "train":
        result = {}
        for name in ("sgd", "adam"):
            losses, state = train(name, g)
            result[f"{name}/losses"] = losses
            result.update({f"{name}/{k}": v for k, v in state.items()})
        gathered = g.allgather(result)
        if g.is_root:  # every rank must end with the same weights
            for r, other in enumerate(gathered[1:], 1):
                for k, v in result.items():
                    if not np.array_equal(v, other[k]):
                        raise AssertionError(f"rank {r} ended with a different {k}")
            np.savez(out / "result.npz", size=g.size, **result)
    elif mode == "mismatch":
        model = small_net(hidden=24 if g.rank == 0 else 25)
        try:
            dist.broadcast_parameters(model)
        except RuntimeError as e:
            (out / f"error{g.rank}.txt").write_text(str(e))
    elif mode == "raise":
        if g.rank == 1:
            time.sleep(0.5)
            (out / "raised_at").write_text(repr(time.time()))
            raise ValueError("rank 1 fails on purpose")
        g.barrier()  # rank 0 waits here for a rank that never comes
        (out / "rank0_passed_barrier").write_text("should never happen")
    elif mode in ("device", "host"):
        model = small_net(hidden=37)  # 37: sizes that are no multiple of a block
        rngs = [np.random.default_rng([SEED, r]) for r in range(g.size)]
        for _ in range(2):  # twice: the cached flat buffers are reused
            grads = [
                {
                    n: r.standard_normal(p.shape).astype(np.float32)
                    for n, p in model.named_parameters()
                }
                for r in rngs
            ]
            for name, p in model.named_parameters():
                p.grad = grads[g.rank][name].copy()
                if mode == "device":
                    p.grad = nc._cuda.to_device(p.grad)
            dist.allreduce_gradients(model)
            for name, p in model.named_parameters():
                want = np.mean([gr[name].astype(np.float64) for gr in grads], axis=0)
                got = np.asarray(nc._cuda.to_host(p.grad))
                assert nc._cuda.is_device_array(p.grad) == (mode == "device"), name
                assert_close(got, want, rtol=1e-6, atol=1e-6, name=name)
        if g.is_root:
            (out / f"{mode}_ok").write_text(dist._device.path() if mode == "device" else "host")
    elif mode == "bcast":
        nc.manual_seed(SEED + g.rank)
        model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
        model[1].running_mean[:] = g.rank + 1.5
        model[1].num_batches_tracked[...] = 10 + g.rank
        dist.broadcast_parameters(model)
        states = g.allgather(model.state_dict())
        if g.is_root:
            for k, v in states[0].items():
                assert all(np.array_equal(v, s[k]) for s in states[1:]), k
            assert float(states[1]["1.running_mean"][0]) == 1.5
            assert int(states[1]["1.num_batches_tracked"]) == 10
            (out / "bcast_ok").write_text("ok")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
