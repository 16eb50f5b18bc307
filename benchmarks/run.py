"""One benchmark runner for the CPU path: numba_cnn vs a NumPy baseline vs PyTorch CPU.

    python benchmarks/run.py [--only conv,pool,relu,xent,linear] [--threads 2] [--markdown FILE]
                             [--clock wall|cpu] [--no-first-call]

Each op is timed forward and backward (warm-up, then the median of repeats) in one process,
numba_cnn, NumPy (im2col + np.matmul for conv) and, when installed, PyTorch with the same
thread count; ratios are the peer's time over ours (> 1: we are faster). A "-" is a peer
that was not run: NumPy has no baseline for that pass, or PyTorch is not installed (the
header line says so). The header names the CPU (``lscpu``), the threads and the library
versions. A second process then times each op's first call, which the on-disk compile cache
should keep under 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


#: The clock of ``timeit``: wall time, or process CPU time (``--clock cpu``: steadier on a
#: machine shared with other work; with threads > 1 it also counts spinning workers).
CLOCK = time.perf_counter


def timeit(fn: Callable[[], Any], min_time: float = 0.3, min_reps: int = 5) -> float:
    """Median milliseconds per call after two warm-up calls."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < 200):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times) * 1e3


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` reports it (else the platform's processor string)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def header(threads: int) -> str:
    """One line naming the machine, the threads and the library versions of a run."""
    import llvmlite
    import numba
    import numpy as np

    from numba_cnn import _cpu_target

    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = "not installed (its columns show -)"
    name, _ = _cpu_target.target()
    bits, _ = _cpu_target.vector_shape()
    return (
        f"CPU {cpu_model()} ({os.cpu_count()} CPUs, LLVM target {name}, {bits}-bit vectors); "
        f"{threads} threads each side; Python {platform.python_version()}, numba "
        f"{numba.__version__}, llvmlite {llvmlite.__version__}, NumPy {np.__version__}, "
        f"PyTorch {tv}; {time.strftime('%Y-%m-%d %H:%M')}; clock: "
        f"{'process CPU time' if CLOCK is time.process_time else 'wall'}"
    )


def _rate(work: float, ms: float | None, unit: str) -> str:
    if ms is None:
        return "-"
    return f"{work / (ms * 1e-3) / 1e9:.1f}"


def _ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None:
        return "-"
    return f"{peer / ours:.2f}x"


def run(only: str | None, threads: int) -> list[dict]:
    import numba
    from cases import all_cases

    numba.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass

    rows = []
    for make in all_cases(only):
        case = make()
        err = case.check() if case.check else float("nan")
        for phase in ("fwd", "bwd"):
            if phase not in case.ours:
                continue
            ours = timeit(case.ours[phase])
            npy = timeit(case.numpy[phase]) if phase in case.numpy else None
            tch = timeit(case.torch[phase]) if phase in case.torch else None
            work = case.work_fwd if phase == "fwd" else case.work_bwd
            row = dict(
                op=case.name,
                phase=phase,
                unit=case.unit,
                ours_ms=ours,
                numpy_ms=npy,
                torch_ms=tch,
                ours_rate=_rate(work, ours, case.unit),
                torch_rate=_rate(work, tch, case.unit),
                vs_numpy=_ratio(npy, ours),
                vs_torch=_ratio(tch, ours),
                err=err,
            )
            rows.append(row)
            f = lambda v: "-" if v is None else f"{v:.3f}"
            print(
                f"{case.name:44s} {phase}  ours {f(ours):>8s} ms {row['ours_rate']:>7s} "
                f"{case.unit:8s} numpy {f(npy):>8s} ms ({row['vs_numpy']:>6s})  "
                f"torch {f(tch):>8s} ms ({row['vs_torch']:>6s})  max|err| {err:.1e}",
                flush=True,
            )
    return rows


_FIRST_CALL_CHILD = r"""
import time, numpy as np
t0 = time.perf_counter()
import numba_cnn as nc
from numba_cnn import functional as F
print(f"import {time.perf_counter() - t0:.3f}")
r = np.random.default_rng(0)
x = r.standard_normal((2, 3, 8, 8), dtype=np.float32)
w = r.standard_normal((4, 3, 3, 3), dtype=np.float32)
b = r.standard_normal(4).astype(np.float32)
y = r.standard_normal((2, 4, 8, 8), dtype=np.float32)  # a dy for conv2d_backward
lg = r.standard_normal((4, 10), dtype=np.float32); lab = np.arange(4) % 10
rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
calls = [
    ("conv2d", lambda: F.conv2d(x, w, b, padding=1)),
    ("conv2d_backward", lambda: F.conv2d_backward(y, x, w, padding=1)),
    ("max_pool2d", lambda: F.max_pool2d(x, 2, return_indices=True)),
    ("max_pool2d_backward",
     lambda: F.max_pool2d_backward(*F.max_pool2d(x, 2, return_indices=True), x.shape)),
    ("avg_pool2d", lambda: F.avg_pool2d(x, 2)),
    ("avg_pool2d_backward", lambda: F.avg_pool2d_backward(F.avg_pool2d(x, 2), x.shape, 2)),
    ("relu", lambda: F.relu(x)),
    ("relu_backward", lambda: F.relu_backward(x, x)),
    ("softmax", lambda: F.softmax(lg)),
    ("log_softmax", lambda: F.log_softmax(lg)),
    ("cross_entropy", lambda: F.cross_entropy(lg, lab)),
    ("cross_entropy_backward", lambda: F.cross_entropy_backward(lg, lab)),
    ("linear", lambda: F.linear(lg, lg[:3].copy())),
    ("linear_backward", lambda: F.linear_backward(lg[:, :3].copy(), lg, lg[:3].copy())),
    ("batch_norm", lambda: F.batch_norm(x, rm.copy(), rv.copy(), training=True)),
    ("dropout", lambda: F.dropout(x, 0.5)),
]
for name, fn in calls:
    t0 = time.perf_counter(); fn(); print(f"{name} {time.perf_counter() - t0:.3f}", flush=True)
"""


def first_calls() -> list[tuple[str, float]]:
    """Each op's first call in a fresh process (compile cache warm from this one)."""
    with contextlib.redirect_stdout(io.StringIO()):  # fill the cache here first
        exec(compile(_FIRST_CALL_CHILD, "<warm>", "exec"), {})
    p = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL_CHILD], capture_output=True, text=True, timeout=600
    )
    if p.returncode != 0:
        print(p.stderr[-3000:])
        raise SystemExit("first-call child failed")
    out = []
    for line in p.stdout.splitlines():
        name, t = line.rsplit(" ", 1)
        out.append((name, float(t)))
    return out


def markdown(rows: list[dict], firsts: list[tuple[str, float]], threads: int) -> str:
    head = (
        f"{header(threads)}.\n\n"
        "| op | pass | ours ms | ours rate | NumPy ms | vs NumPy | PyTorch ms | PyTorch rate "
        "| vs PyTorch |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    f = lambda v: "-" if v is None else f"{v:.3f}"
    body = "".join(
        f"| {r['op']} | {r['phase']} | {f(r['ours_ms'])} | {r['ours_rate']} {r['unit']} | "
        f"{f(r['numpy_ms'])} | {r['vs_numpy']} | {f(r['torch_ms'])} | {r['torch_rate']} | "
        f"{r['vs_torch']} |\n"
        for r in rows
    )
    fc = "\n| first call in a new process | s |\n|---|---|\n" + "".join(
        f"| {n} | {t:.3f} |\n" for n, t in firsts
    )
    return head + body + fc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma list of: conv,pool,relu,xent,linear")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown", help="write the table to this file")
    ap.add_argument("--no-first-call", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    print(header(args.threads), flush=True)
    rows = run(args.only, args.threads)
    firsts = [] if args.no_first_call else first_calls()
    for n, t in firsts:
        print(f"first call {n:28s} {t:.3f} s{'  (> 1 s)' if t > 1 else ''}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(markdown(rows, firsts, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
