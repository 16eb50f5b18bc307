"""One compile of every CUDA kernel for real GPUs per test session, shared by the PTX and the
SASS tests (``test_ptx_report.py``, ``test_sass_report.py``).

``sass_report --json --cc 80,90 --sass gemm`` compiles each specialisation of every kernel
module's ``ptx_specs()`` with ``compile_ptx`` once, assembles it with ``ptxas -v`` for sm_80 and
sm_90 and disassembles the GEMM-like ones: the rows hold what ``ptx_report`` checks (compile
errors, registers, spills) and what the SASS gate checks (instruction mix). Compiling takes
minutes (about 120 specialisations, 6 min on one core), so it runs once: the first test that
asks for it runs it and writes the result under the session's temporary folder; under
``pytest -n 2`` the other worker waits on a lock file and reads the same result instead of
compiling everything again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class KernelReport:
    returncode: int
    stdout: str
    stderr: str

    @property
    def rows(self) -> list[dict]:
        return json.loads(self.stdout)


def _shared_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # an xdist worker's base is <session root>/popen-gwN: the root is shared by the workers
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _run_report() -> KernelReport:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    # one process: under ``pytest -n 2`` the other worker keeps the second core
    cmd = [sys.executable, "-m", "numba_cnn.kernels.cuda.sass_report", "--json", "--cc", "80,90"]
    # the SASS gate reads the GEMM-like kernels' SASS only; nvdisasm takes about 0.5 s a call
    # whatever the kernel, so the others (some 200 rows) keep ptxas's figures alone
    cmd += ["--jobs", "1", "--sass", "gemm"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    return KernelReport(p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def kernel_report(tmp_path_factory) -> KernelReport:
    """``sass_report --json --cc 80,90 --sass gemm`` over every kernel, run once per session."""
    d = _shared_dir(tmp_path_factory)
    out = d / "kernel_report.json"
    try:
        import fcntl
    except ImportError:  # no flock (Windows): each process compiles for itself
        return _run_report()
    with open(d / "kernel_report.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if out.is_file():
            return KernelReport(**json.loads(out.read_text()))
        rep = _run_report()
        tmp = out.with_suffix(".part")
        tmp.write_text(json.dumps(rep.__dict__))
        tmp.replace(out)
        return rep
