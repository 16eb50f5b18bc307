"""Data-parallel measurements behind ``docs/scaling.md``.

``python -m numba_cnn.distributed.bench [--rounds 3] [--out DIR]`` runs, alternating so that a
busy machine hurts every configuration alike,

- ``mpiexec -n 1`` with 2 threads and ``mpiexec -n 2`` with 1 thread each: training steps of
  the CIFAR net (``vgg_small``, 3x32x32, global batch 64) on random images, each step timed in
  two parts: forward + backward + optimizer step, and ``allreduce_gradients``;
- ``mpiexec -n 2``: ``MPI_Allreduce`` of float32 host buffers of 0.25 to 64 MB (loopback);

then fits the ring model ``t = 2 (P-1) alpha + 2 (P-1)/P * bytes / bandwidth`` to the 1 MB and
64 MB allreduces, predicts the CIFAR net's gradient allreduce with it and writes
``scaling.json`` (every median) and ``scaling.png``. The workers are
``python -m numba_cnn.distributed.bench step|allreduce`` under ``mpiexec``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._model import MB, fit_ring, ring_time

__all__ = ["main", "summarize", "MB", "fit_ring", "ring_time"]

SIZES_MB = (0.25, 1.0, 4.0, 16.0, 64.0)


def _step_worker(a: argparse.Namespace) -> dict:
    from .. import nn, optim
    from ..models import build_model
    from ..train import cpu_threads
    from . import allreduce_gradients, broadcast_parameters, init

    g = init()
    local = a.batch // g.size
    rng = np.random.default_rng([1, g.rank])
    x = rng.random((local, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, local)
    model = build_model("vgg", 3, 32, 10)
    broadcast_parameters(model)
    opt, crit = optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()
    compute, wait, exchange, mpi_only = [], [], [], []
    raw = np.zeros(sum(p.numel() for p in model.parameters()), np.float32)
    with cpu_threads(a.threads, 32):
        for i in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            crit(model(x), y)
            model.backward(crit.backward(), need_dx=False)
            t1 = time.perf_counter()
            g.barrier()  # waiting for the slower rank, timed apart from the exchange itself
            t2 = time.perf_counter()
            allreduce_gradients(model)
            t3 = time.perf_counter()
            opt.step()
            t4 = time.perf_counter()
            bare = _bare_allreduce(g, raw) if g.size > 1 else 0.0  # MPI alone, same bytes
            if i >= a.warmup:
                compute.append((t1 - t0) + (t4 - t3))
                wait.append(t2 - t1)
                exchange.append(t3 - t2)
                mpi_only.append(bare)
    grad_bytes = sum(p.grad.nbytes for p in model.parameters())
    return {
        "ranks": g.size,
        "threads": a.threads,
        "batch": a.batch,
        "grad_bytes": grad_bytes,
        "compute_s": compute,
        "wait_s": wait,
        "allreduce_s": exchange,
        "mpi_only_s": mpi_only,
    }


def _bare_allreduce(g, buf: np.ndarray) -> float:
    """Seconds of one in-place ``MPI_Allreduce`` of ``buf`` right after a barrier."""
    from mpi4py import MPI

    g.barrier()
    t0 = time.perf_counter()
    g.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    return time.perf_counter() - t0


def _allreduce_worker(a: argparse.Namespace) -> dict:
    from mpi4py import MPI

    from . import init

    g = init()
    out = {"ranks": g.size, "sizes_mb": list(SIZES_MB), "seconds": []}
    for mb in SIZES_MB:
        buf = np.random.default_rng(0).random(int(mb * MB) // 4, dtype=np.float32)
        times = []
        for _ in range(a.warmup + a.repeat):
            g.barrier()
            t0 = time.perf_counter()
            g.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        times = times[a.warmup :]
        out["seconds"].append(times if g.is_root else [])
    return out


def _run(n: int, threads: int, args: list[str]) -> dict:
    """One ``mpiexec -n n python -m numba_cnn.distributed.bench ...``; rank 0's JSON."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        module = ["-m", "numba_cnn.distributed.bench", *args, "--json", str(out)]
        cmd = [str(mpiexec), "-n", str(n), sys.executable, *module]
        subprocess.run(cmd, check=True, env=env, timeout=1800)
        return json.loads(out.read_text())


def _driver(a: argparse.Namespace) -> None:
    from tqdm import tqdm

    runs: dict[str, list] = {"1x2": [], "2x1": [], "allreduce": []}
    steps = ["step", "--steps", str(a.steps), "--batch", "64"]
    plan = [
        ("1x2", 1, 2, [*steps, "--threads", "2"]),
        ("2x1", 2, 1, [*steps, "--threads", "1"]),
        ("allreduce", 2, 1, ["allreduce"]),
    ]
    for _ in tqdm(range(a.rounds), desc="rounds", unit="round"):
        for key, n, threads, args in plan:
            runs[key].append(_run(n, threads, args))
    summary = summarize(runs)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scaling.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    plot(summary, a.out / "scaling.png")
    print(json.dumps(summary, indent=1))


def summarize(runs: dict[str, list]) -> dict:
    """Medians over every measured step (or allreduce) of every round; the model's fit."""
    out: dict = {}
    for key in ("1x2", "2x1"):
        compute = np.median([t for r in runs[key] for t in r["compute_s"]])
        exchange = np.median([t for r in runs[key] for t in r["allreduce_s"]])
        wait = np.median([t for r in runs[key] for t in r["wait_s"]])
        mpi_only = np.median([t for r in runs[key] for t in r.get("mpi_only_s", [np.nan])])
        step = compute + wait + exchange
        out[key] = {
            "compute_s": compute,
            "allreduce_s": exchange,
            "wait_s": wait,
            "mpi_only_s": mpi_only,
            "step_s": step,
            "images_per_s": runs[key][0]["batch"] / step,
            "allreduce_share": exchange / step,
        }
    sizes = runs["allreduce"][0]["sizes_mb"]
    med = [
        float(np.median([t for r in runs["allreduce"] for t in r["seconds"][i]]))
        for i in range(len(sizes))
    ]
    out["allreduce"] = {
        "sizes_mb": sizes,
        "seconds": med,
        "gb_per_s": [s * MB / t / 1e9 for s, t in zip(sizes, med, strict=True)],
    }
    i1, i64 = sizes.index(1.0), sizes.index(64.0)
    alpha, bw = fit_ring([MB, 64 * MB], [med[i1], med[i64]], 2)
    grad = runs["2x1"][0]["grad_bytes"]
    predicted = ring_time(grad, 2, alpha, bw)
    measured = out["2x1"]["allreduce_s"]
    out["model"] = {
        "alpha_s": alpha,
        "bandwidth_gb_per_s": bw / 1e9,
        "grad_bytes": grad,
        "predicted_allreduce_s": predicted,
        "measured_allreduce_s": measured,
        "error": predicted / measured - 1,
        "predicted_share": predicted / (out["2x1"]["compute_s"] + predicted),
    }
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, ar = summary["model"], summary["allreduce"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    sizes = np.array(ar["sizes_mb"]) * MB
    grid = np.geomspace(64e3, 128 * MB)
    ax[0].loglog(sizes / MB, np.array(ar["seconds"]) * 1e3, "o", label="measured, 2 ranks")
    model = [ring_time(s, 2, m["alpha_s"], m["bandwidth_gb_per_s"] * 1e9) * 1e3 for s in grid]
    ax[0].loglog(grid / MB, model, "-", label="ring model fitted at 1 and 64 MB")
    ax[0].loglog(
        [m["grad_bytes"] / MB],
        [m["measured_allreduce_s"] * 1e3],
        "s",
        label="CIFAR net gradients, inside a step",
    )
    ax[0].set(xlabel="message (MB)", ylabel="allreduce (ms)", title="Loopback MPI_Allreduce")
    ax[0].legend(fontsize=8)
    keys = ["1x2", "2x1"]
    comp = [summary[k]["compute_s"] * 1e3 for k in keys]
    exch = [summary[k]["allreduce_s"] * 1e3 for k in keys]
    ax[1].bar(keys, comp, label="forward + backward + step")
    wait = [summary[k]["wait_s"] * 1e3 for k in keys]
    ax[1].bar(keys, wait, bottom=comp, label="waiting for the slower rank")
    top = [c + w for c, w in zip(comp, wait, strict=True)]
    ax[1].bar(keys, exch, bottom=top, label="allreduce_gradients")
    for i, k in enumerate(keys):
        share = f"{summary[k]['allreduce_share']:.1%} allreduce"
        text = f"{summary[k]['images_per_s']:.1f} img/s\n{share}"
        ax[1].text(i, top[i] + exch[i], text, ha="center", va="bottom", fontsize=9)
    ax[1].set_ylim(0, 1.25 * max(t + e for t, e in zip(top, exch, strict=True)))
    ax[1].set(ylabel="ms per global batch of 64", title="CIFAR net: ranks x threads")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(flops_per_s: float, batch: int) -> str:
    """The worked cluster example of ``docs/scaling.md`` as a Markdown table."""
    from ._model import scaling_table

    lines = [
        "| model | gradients | network | 1-rank step | allreduce P=8 | efficiency P=2 / 8 / 64 "
        "| fastest P |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in scaling_table(flops_per_s, batch):
        lines.append(
            f"| {r['model']} | {r['grad_mb']:.2f} MiB | {r['network']} "
            f"| {r['step_1'] * 1e3:.2f} ms "
            f"| {r['allreduce_8'] * 1e3:.2f} ms | {r['eff_2']:.0%} / {r['eff_8']:.0%} / "
            f"{r['eff_64']:.0%} | {r['break_even']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m numba_cnn.distributed.bench")
    modes = ["driver", "step", "allreduce", "model"]
    p.add_argument("mode", nargs="?", default="driver", choices=modes)
    p.add_argument("--flops", type=float, default=20e12, help="model: FLOP/s of one rank")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/scaling"))
    a = p.parse_args(argv)
    if a.mode == "driver":
        return _driver(a)
    if a.mode == "model":
        return print(markdown_table(a.flops, 256))
    result = (_step_worker if a.mode == "step" else _allreduce_worker)(a)
    from . import init

    if init().is_root and a.json is not None:  # rank 0's measurements
        a.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
