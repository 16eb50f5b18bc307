"""Whole training steps (forward + backward + SGD), numba_cnn against PyTorch CPU.

    python benchmarks/train_step.py [--nets lenet,cifar] [--batches 64,256] [--threads 2]
                                    [--rounds 5] [--steps 20] [--memory-steps 0] [--clock wall]

Nets: LeNet-5 on 1x28x28 (conv 1->6 k5 p2, pool, conv 6->16 k5, pool, 400->120->84->10)
and a small CIFAR net on 3x32x32 (conv 3->32 k3 p1, pool, conv 32->64 k3 p1, pool,
4096->128->10), ReLU after every hidden layer, max-pool 2x2, cross-entropy, SGD lr 0.01.
Each (net, batch) runs in fresh child processes, ours and PyTorch's alternating (the one going
first swaps every round), ``--threads`` threads each; a child warms up 3 steps and reports the
median of ``--steps`` timed steps. The table gives the median over rounds and the ratio of our
time to PyTorch's (below 1: we are faster). ``--memory-steps N`` also runs N more of our steps
and reports the resident memory before and after them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

NETS = {  # conv (in, out, kernel, padding) layers, each followed by ReLU + max-pool 2x2; fcs
    "lenet": dict(shape=(1, 28, 28), convs=[(1, 6, 5, 2), (6, 16, 5, 0)], fcs=[400, 120, 84, 10]),
    "cifar": dict(shape=(3, 32, 32), convs=[(3, 32, 3, 1), (32, 64, 3, 1)], fcs=[4096, 128, 10]),
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _data(net: str, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *NETS[net]["shape"]), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    return x, y


def _ours(net: str, batch: int):
    import numba_cnn as nc
    from numba_cnn import nn, optim

    nc.manual_seed(0)
    layers = []
    for cin, cout, k, p in NETS[net]["convs"]:
        layers += [nn.Conv2d(cin, cout, k, padding=p), nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Flatten())
    fcs = NETS[net]["fcs"]
    for i in range(len(fcs) - 1):
        layers.append(nn.Linear(fcs[i], fcs[i + 1]))
        if i < len(fcs) - 2:
            layers.append(nn.ReLU())
    model, crit = nn.Sequential(*layers), nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(net, batch)

    def step():
        crit(model(x), y)
        model.zero_grad()
        model.backward(crit.backward(), need_dx=False)
        opt.step()

    return step


def _torch(net: str, batch: int):
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    layers = []
    for cin, cout, k, p in NETS[net]["convs"]:
        layers += [nn.Conv2d(cin, cout, k, padding=p), nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Flatten())
    fcs = NETS[net]["fcs"]
    for i in range(len(fcs) - 1):
        layers.append(nn.Linear(fcs[i], fcs[i + 1]))
        if i < len(fcs) - 2:
            layers.append(nn.ReLU())
    model, crit = nn.Sequential(*layers), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = (torch.from_numpy(a) for a in _data(net, batch))

    def step():
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()

    return step


def child(side: str, net: str, batch: int, threads: int, steps: int, mem_steps: int,
          clock: str = "wall") -> dict:  # fmt: skip
    """Time one side in this process; returns the median step in ms (and memory)."""
    timer = time.process_time if clock == "cpu" else time.perf_counter
    if side == "torch":
        import torch

        torch.set_num_threads(threads)
        step = _torch(net, batch)
    else:
        import numba

        numba.set_num_threads(threads)
        step = _ours(net, batch)
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t0 = timer()
        step()
        times.append(timer() - t0)
    out = dict(ms=statistics.median(times) * 1e3)
    if mem_steps:
        before = _rss_mb()
        for _ in range(mem_steps):
            step()
        out.update(rss_before=before, rss_after=_rss_mb())
    return out


def _spawn(side, net, batch, threads, steps, mem_steps, clock) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", side, net, str(batch)]
    cmd += [str(threads), str(steps), str(mem_steps), clock]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"{side} child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        side, net, batch, threads, steps, mem = argv[1], argv[2], *map(int, argv[3:7])
        print(json.dumps(child(side, net, batch, threads, steps, mem, argv[7])))
        return 0
    ap = argparse.ArgumentParser(prog="train_step.py", description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="lenet,cifar")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--memory-steps", type=int, default=0)
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time per step (steadier on a loaded machine; with threads > 1 "
        "it also counts spinning worker threads)",
    )
    args = ap.parse_args(argv)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    jobs = [(n, int(b)) for n in args.nets.split(",") for b in args.batches.split(",")]
    total = len(jobs) * args.rounds * 2
    bar = tqdm(total=total, desc="child processes", file=sys.stderr) if tqdm else None
    rows = []
    for net, batch in jobs:
        res: dict[str, list[float]] = {"ours": [], "torch": []}
        mem = None
        for r in range(args.rounds):
            order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
            for side in order:
                ms = args.memory_steps if (side == "ours" and r == 0) else 0
                out = _spawn(side, net, batch, args.threads, args.steps, ms, args.clock)
                res[side].append(out["ms"])
                if "rss_before" in out:
                    mem = (out["rss_before"], out["rss_after"])
                if bar:
                    bar.update()
        ours, tch = statistics.median(res["ours"]), statistics.median(res["torch"])
        rows.append((net, batch, ours, tch, ours / tch, res, mem))
    if bar:
        bar.close()
    print(f"{args.threads} threads each side, {args.clock} clock; median over {args.rounds} "
          f"alternating rounds of the median of {args.steps} steps")  # fmt: skip
    print("| net | batch | ours ms/step | PyTorch ms/step | ours / PyTorch time |")
    print("|---|---|---|---|---|")
    for net, batch, ours, tch, ratio, _, _ in rows:
        print(f"| {net} | {batch} | {ours:.2f} | {tch:.2f} | {ratio:.2f}x |")
    for net, batch, _, _, _, res, mem in rows:
        o = ", ".join(f"{v:.1f}" for v in res["ours"])
        t = ", ".join(f"{v:.1f}" for v in res["torch"])
        print(f"rounds {net} {batch}: ours [{o}] torch [{t}]")
        if mem:
            print(f"memory {net} {batch}: RSS {mem[0]:.1f} MB before, {mem[1]:.1f} MB after "
                  f"{args.memory_steps} more steps")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
