"""One-shot check on a lent NVIDIA GPU: tests on hardware, validation, interop, timings.

    python benchmarks/gpu_check.py [--skip-tests] [--markdown FILE]   # on a real GPU, < 5 min
    python benchmarks/gpu_check.py --sim                              # tiny sizes, simulator

1. the test suite on the GPU (no simulator), 2. every op validated at the benchmark sizes of
``benchmarks/run.py`` against the CPU path, 3. CuPy arrays and PyTorch CUDA tensors in and
out without copies, 4. every op forward and backward timed with CUDA events (warm-up, median
of repeats, inputs rotated so caches stay cold) against PyTorch (cuDNN, TF32 off and on) and
CuPy (im2col + cuBLAS for conv), with ms, GFLOP/s or GB/s (and % of the HBM peak computed
from the device's memory clock and bus width) and ratios (peer time / ours), 5. whole
training steps (LeNet-5 and the small CIFAR net, batch 64 and 256) against PyTorch CUDA, with
the launches, syncs, copies, pool requests and new pool bytes of one steady-state step
(``gpu_step.py``), 6. ``compute-sanitizer`` memcheck and racecheck on every op at tiny sizes
(``gpu_sanitize.py``; a tool that is missing or refuses the device is "not run"). Everything
goes into one markdown file (``--markdown``) for ``docs/benchmarks.md``.
With ``--sim`` steps 2, 4 and 5 run on tiny sizes under the simulator so CI keeps them working.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root
if "--sim" in sys.argv:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402

import numba_cnn as nc  # noqa: E402
from numba_cnn import _cuda  # noqa: E402
from numba_cnn import functional as F  # noqa: E402
from numba_cnn.testing import assert_close  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gpu_cases import cases  # noqa: E402
from gpu_sanitize import sanitize  # noqa: E402
from gpu_step import HEADER as STEP_HEADER  # noqa: E402
from gpu_step import run_step  # noqa: E402


def _try(name: str):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None


def event_time(fn, inputs, reps: int, warmup: int = 3) -> float:
    """Median ms of ``fn(*inputs[i % len(inputs)])`` timed with CUDA events."""
    cuda = _cuda.cuda
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    times = []
    for i in range(reps):
        s, e = cuda.event(), cuda.event()
        t0 = time.perf_counter()
        s.record()
        fn(*inputs[i % len(inputs)])
        e.record()
        e.synchronize()
        ms = s.elapsed_time(e)
        times.append(ms if ms >= 0 else (time.perf_counter() - t0) * 1e3)  # simulator: -1
    return float(np.median(times))


def torch_time(torch, fn, inputs, reps: int, warmup: int = 3) -> float:
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    times = []
    for i in range(reps):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn(*inputs[i % len(inputs)])
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return float(np.median(times))


def run_tests(timeout: int) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", os.path.join(HERE, "..", "tests")]
    if _try("xdist") is not None:  # pytest-xdist may be missing on the GPU machine
        cmd[4:4] = ["-n", "8"]
    print("$", " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"tests: stopped after {timeout} s")
        return False
    return p.returncode == 0


def check_interop(cp, torch) -> list[str]:
    """Zero-copy in (pointer identity) and out (the peer wraps our result in place)."""
    out = []
    x = np.random.default_rng(0).standard_normal((4, 5), dtype=np.float32)
    if cp is not None:
        a = cp.asarray(x)
        d = _cuda.as_device_array(a)
        assert d.device_ctypes_pointer.value == a.data.ptr, "CuPy input was copied"
        y = F.relu(a)
        back = cp.asarray(y)  # zero-copy view of our device array
        assert back.data.ptr == y.device_ctypes_pointer.value
        assert_close(cp.asnumpy(back), np.maximum(x, 0), name="relu(cupy)")
        out.append("CuPy in/out zero-copy: ok")
    if torch is not None and torch.cuda.is_available():
        t = torch.from_numpy(x).cuda()
        d = _cuda.as_device_array(t)
        assert d.device_ctypes_pointer.value == t.data_ptr(), "torch input was copied"
        y = F.relu(t)
        tb = torch.as_tensor(y, device="cuda")
        assert tb.data_ptr() == y.device_ctypes_pointer.value
        assert_close(tb.cpu().numpy(), np.maximum(x, 0), name="relu(torch)")
        tnc = t.t()  # not contiguous: copied once
        assert_close(nc.to_host(F.relu(tnc)), np.maximum(x.T, 0), name="relu(torch.T)")
        out.append("PyTorch in/out zero-copy: ok; non-contiguous input copied once: ok")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", action="store_true", help="tiny sizes under the CUDA simulator")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--test-timeout", type=int, default=150)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--markdown", help="write the tables and notes to this file")
    ap.add_argument("--skip-sanitizer", action="store_true")
    ap.add_argument("--sanitizer-timeout", type=int, default=100, help="seconds per tool")
    args = ap.parse_args(argv)
    sim = args.sim
    if not nc.cuda_available():
        print("no CUDA GPU (and no simulator)")
        return 2
    cuda = _cuda.cuda
    if not sim:
        dev = cuda.get_current_device()
        print(f"device: {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}")
    ok = True
    if not sim and not args.skip_tests:
        ok &= run_tests(args.test_timeout)

    torch = None if sim else _try("torch")
    cp = None if sim else _try("cupy")
    reps = 1 if sim else args.reps

    # 2. validation against the CPU path, 4. timings
    rows = []
    errors = []  # cases whose op raised on the device: not timed
    for case in cases(sim):
        host_out = case.ours(*case.host_inputs)
        dev_in = [
            tuple(nc.to_device(a) if isinstance(a, np.ndarray) else a for a in case.host_inputs)
        ]
        try:
            got = case.ours(*dev_in[0])
            outs = got if isinstance(got, tuple) else (got,)
            exp = host_out if isinstance(host_out, tuple) else (host_out,)
            for i, (g, e) in enumerate(zip(outs, exp, strict=True)):
                if e is not None:
                    assert_close(nc.to_host(g), e, name=f"{case.name}[{i}]", **case.tol)
            status = "ok"
        except AssertionError as err:
            ok = False
            status = f"MISMATCH: {err}"
        except Exception as err:  # noqa: BLE001 - a GPU-only failure: report it, check the rest
            ok = False
            errors.append(f"{case.name}: ERROR: {type(err).__name__}: {err}")
            print(errors[-1], flush=True)
            continue
        # rotate through copies so the timed call does not find its inputs in L2
        n_rot = 1 if sim else max(1, min(8, int(2e8 // max(case.bytes_in, 1))))
        dev_in += [
            tuple(nc.to_device(a) if isinstance(a, np.ndarray) else a for a in case.host_inputs)
            for _ in range(n_rot - 1)
        ]
        # the simulator compiles nothing and has no caches to warm: the timing path runs once
        ours_ms = event_time(case.ours, dev_in, reps, warmup=0 if sim else 3)
        row = {"op": case.name, "status": status, "ours": ours_ms, "unit": case.unit}
        row["rate"] = case.work / (ours_ms * 1e-3) / 1e9
        if torch is not None and case.torch is not None:
            tin = [
                tuple(
                    torch.as_tensor(a, device="cuda")
                    if hasattr(a, "__cuda_array_interface__")
                    else a
                    for a in d
                )
                for d in dev_in
            ]
            for tf32 in (False, True):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                row[f"torch_tf32_{int(tf32)}"] = torch_time(torch, case.torch, tin, reps)
        if cp is not None and case.cupy is not None:
            cin = [
                tuple(cp.asarray(a) if hasattr(a, "__cuda_array_interface__") else a for a in d)
                for d in dev_in
            ]
            row["cupy"] = torch_time_cupy(cp, case.cupy, cin, reps)
        rows.append(row)
        print(_fmt(row), flush=True)

    notes = [f"CUDA front end: {nc.cuda_backend()}; memory pool: {nc.memory_stats()['pool']}"]
    if not sim:
        try:
            for line in check_interop(cp, torch):
                print(line)
                notes.append(line)
        except Exception as err:  # noqa: BLE001 - report it with the rest
            ok = False
            errors.append(f"interop: {type(err).__name__}: {err}")
            print(errors[-1], flush=True)

    # 5. whole training steps; what one steady-state step does
    steps = []
    plan = [("tiny", 2)] if sim else [(m, b) for m in ("lenet5", "cifar") for b in (64, 256)]
    for model, batch in plan:
        try:
            r = run_step(model, batch, 1 if sim else args.reps, torch=torch, sim=sim)
        except Exception as err:  # noqa: BLE001 - report it, check the rest
            ok = False
            errors.append(f"step {model} batch {batch}: {type(err).__name__}: {err}")
            print(errors[-1], flush=True)
            continue
        steps.append(r)
        print(r.row(), flush=True)
        if r.copies or r.syncs or (not sim and r.new_reserved_bytes):
            ok = False
            errors.append(f"step {model} batch {batch}: copies/syncs/new memory in a step")

    # 6. compute-sanitizer
    san = {"memcheck": "not run: simulator", "racecheck": "not run: simulator"}
    if not sim and not args.skip_sanitizer:
        san = sanitize(timeout=args.sanitizer_timeout)
    for tool, res in san.items():
        print(f"compute-sanitizer {tool}: {res}", flush=True)
        notes.append(f"compute-sanitizer {tool}: {res}")
        if res.endswith("errors") and not res.startswith("0 "):
            ok = False

    if args.markdown:
        peak = None if sim else hbm_peak_gbs(cuda.get_current_device())
        with open(args.markdown, "w") as fh:
            fh.write(_markdown(rows, peak) + "\n" + STEP_HEADER)
            fh.write("".join(r.row() + "\n" for r in steps))
            fh.write("".join(f"\n- {n}" for n in notes) + "".join(f"\n- {e}" for e in errors))
            fh.write("\n")
    print("gpu_check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def hbm_peak_gbs(dev) -> float | None:
    """DRAM peak GB/s from the memory clock (kHz) and bus width (bits): 2 transfers a clock."""
    try:
        clock_khz = dev.MEMORY_CLOCK_RATE
        bits = dev.GLOBAL_MEMORY_BUS_WIDTH
    except Exception:  # noqa: BLE001 - an attribute this driver does not report
        return None
    return 2.0 * clock_khz * 1e3 * bits / 8 / 1e9


def torch_time_cupy(cp, fn, inputs, reps: int) -> float:
    for i in range(3):
        fn(*inputs[i % len(inputs)])
    times = []
    for i in range(reps):
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record()
        fn(*inputs[i % len(inputs)])
        e.record()
        e.synchronize()
        times.append(cp.cuda.get_elapsed_time(s, e))
    return float(np.median(times))


def _fmt(r: dict) -> str:
    s = f"{r['op']:48s} ours {r['ours']:9.4f} ms {r['rate']:8.1f} {r['unit']:8s}"
    for k in ("torch_tf32_0", "torch_tf32_1", "cupy"):
        if k in r:
            s += f" {k} {r[k]:8.4f} ms ({r[k] / r['ours']:.2f}x)"
    return s + ("" if r["status"] == "ok" else "  " + r["status"][:200])


def _markdown(rows: list[dict], peak_gbs: float | None = None) -> str:
    head = (
        "| op | ours ms | ours rate | % HBM peak | torch ms (TF32 off) | ratio "
        "| torch ms (TF32 on) | ratio | CuPy ms | ratio | valid |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    f = lambda r, k: f"{r[k]:.4f} | {r[k] / r['ours']:.2f}x" if k in r else "- | -"
    pct = lambda r: (
        f"{100 * r['rate'] / peak_gbs:.0f}%" if peak_gbs and r["unit"] == "GB/s" else "-"
    )
    return head + "".join(
        f"| {r['op']} | {r['ours']:.4f} | {r['rate']:.1f} {r['unit']} | {pct(r)} | "
        f"{f(r, 'torch_tf32_0')} | {f(r, 'torch_tf32_1')} | {f(r, 'cupy')} | "
        f"{r['status'][:40]} |\n"
        for r in rows
    )


if __name__ == "__main__":
    sys.exit(main())
