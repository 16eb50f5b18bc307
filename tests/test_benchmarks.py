"""The benchmark scripts keep working: gpu_check's validation and timing paths run under the
simulator on tiny sizes (the GPU run itself needs a lent machine)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_sim_validates_and_times_every_op():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--sim"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-5000:]
    assert "gpu_check: PASS" in p.stdout
    for op in ("conv", "max-pool", "avg-pool", "relu", "softmax", "cross-entropy", "linear"):
        assert op in p.stdout, f"{op} was not checked"
