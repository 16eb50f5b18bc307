"""``compute-sanitizer`` memcheck and racecheck over a kernel subset, for ``gpu_check.py``.

    python benchmarks/gpu_sanitize.py --run     # the workload (what the sanitizer wraps)

The workload runs every op of ``gpu_cases.cases(sim=True)`` (tiny shapes that are not
multiples of the tile sizes) forward and backward once on the device, plus an optimizer step
and ``clip_grad_norm_``, with CuPy's pool switched off (``cupy.cuda.set_allocator(None)``) so
memcheck sees each allocation's true bounds. ``sanitize()`` runs it under each tool and reads
the error summary; a missing tool, or one that refuses the device, is "not run".
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) error")


def workload() -> None:
    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    try:
        import cupy

        cupy.cuda.set_allocator(None)  # every device array its own cudaMalloc
    except ImportError:
        pass
    import numpy as np
    from gpu_cases import cases

    import numba_cnn as nc
    from numba_cnn import nn, optim

    for case in cases(True):
        args = tuple(nc.to_device(a) if isinstance(a, np.ndarray) else a for a in case.host_inputs)
        case.ours(*args)
        print("ran", case.name, flush=True)
    ps = [nn.Parameter(nc.to_device(np.ones(s, np.float32))) for s in [(3, 5), (7,), (2, 3, 3)]]
    for opt in (optim.SGD(ps, lr=0.1, momentum=0.9), optim.AdamW(ps, lr=0.1)):
        for p in ps:
            p.grad = nc.to_device(np.full(p.shape, 0.5, np.float32))
        nn.utils.clip_grad_norm_(ps, 0.1)
        opt.step()
    nc.synchronize()
    print("workload done", flush=True)


def sanitize(tools: tuple[str, ...] = ("memcheck", "racecheck"), timeout: int = 90) -> dict:
    """``{tool: "0 errors" | "N errors" | "not run: why"}``."""
    exe = shutil.which("compute-sanitizer")
    if exe is None:  # the CUDA toolkit's usual places
        found = sorted(glob.glob("/usr/local/cuda*/bin/compute-sanitizer"))
        found += sorted(glob.glob("/usr/local/cuda*/compute-sanitizer/compute-sanitizer"))
        exe = found[-1] if found else None
    out = {}
    for tool in tools:
        if exe is None:
            out[tool] = "not run: compute-sanitizer not found"
            continue
        cmd = [exe, "--tool", tool, sys.executable, os.path.abspath(__file__), "--run"]
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            out[tool] = f"not run: over {timeout} s"
            continue
        text = p.stdout + p.stderr
        m = _SUMMARY.search(text)
        if m is None or "workload done" not in text:
            last = (text.strip().splitlines() or ["no output"])[-1][:160]
            out[tool] = f"not run: {last}"
        else:
            n = int(m.group(1))
            out[tool] = f"{n} errors" if n else "0 errors"
            if n:
                print(text[-4000:], flush=True)
    return out


if __name__ == "__main__":
    if "--run" in sys.argv:
        workload()
    else:
        for k, v in sanitize().items():
            print(f"{k}: {v}")
