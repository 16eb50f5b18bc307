"""The benchmark scripts keep working: gpu_check's validation and timing paths run under the
simulator on tiny sizes (the GPU run itself needs a lent machine)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from numba_cnn import _cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def _gpu_check_sim(monkeypatch, capsys) -> tuple[int, str]:
    """``gpu_check.py --sim``: in this process when it runs the simulator already (no second
    interpreter to start and import everything again), else in a subprocess."""
    if not _cuda.SIMULATOR:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        p = subprocess.run(
            [sys.executable, SCRIPT, "--sim"], env=env, capture_output=True, text=True, timeout=600
        )
        return p.returncode, p.stdout + p.stderr
    from numba_cnn.ops import _common

    monkeypatch.setattr(_common, "POISON", False)  # as the script runs: no NaN uploads to count
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds the repo and benchmarks/
    spec = importlib.util.spec_from_file_location("_gpu_check_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["--sim"])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_gpu_check_sim_validates_and_times_every_op(monkeypatch, capsys):
    rc, out = _gpu_check_sim(monkeypatch, capsys)
    assert rc == 0, out[-10000:]
    assert "gpu_check: PASS" in out
    for op in ("conv", "max-pool", "avg-pool", "relu", "softmax", "cross-entropy", "linear"):
        assert op in out, f"{op} was not checked"
    assert "| tiny | 2 |" in out, "the training step was not run"
