"""gpu_check's sanitizer and training-step parts, as far as they run without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gpu_sanitize  # noqa: E402


def test_sanitizer_missing_is_not_run(monkeypatch):
    monkeypatch.setattr(gpu_sanitize.shutil, "which", lambda name: None)
    monkeypatch.setattr(gpu_sanitize.glob, "glob", lambda pattern: [])
    assert gpu_sanitize.sanitize() == {
        "memcheck": "not run: compute-sanitizer not found",
        "racecheck": "not run: compute-sanitizer not found",
    }


def test_sanitizer_reads_the_error_summary(monkeypatch, tmp_path):
    fake = tmp_path / "compute-sanitizer"  # prints what the real tool prints around the run
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = memcheck ]; then echo "workload done"; echo "ERROR SUMMARY: 0 errors"; '
        'else echo "workload done"; echo "ERROR SUMMARY: 3 errors"; fi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(gpu_sanitize.shutil, "which", lambda name: str(fake))
    assert gpu_sanitize.sanitize() == {"memcheck": "0 errors", "racecheck": "3 errors"}
    fake.write_text('#!/bin/sh\necho "Error: Device not supported"\n')
    res = gpu_sanitize.sanitize(("memcheck",))
    assert res == {"memcheck": "not run: Error: Device not supported"}


@pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"), reason="runs under the simulator"
)
def test_sanitizer_workload_runs_every_op_under_the_simulator(monkeypatch, capsys):
    from numba_cnn import _cuda

    if _cuda.SIMULATOR:  # in this process (no second interpreter to start and import)
        from numba_cnn.ops import _common

        monkeypatch.setattr(_common, "POISON", False)  # as the script runs
        monkeypatch.setattr(sys, "path", list(sys.path))  # the workload adds benchmarks/
        monkeypatch.setitem(sys.modules, "cupy", None)  # keep CuPy's allocator as it is
        gpu_sanitize.workload()
        out = capsys.readouterr().out
    else:
        p = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_sanitize.py"), "--run"],
            env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        out = p.stdout
    assert "workload done" in out
    for op in ("conv", "max-pool", "softmax", "cross-entropy", "batch-norm", "linear"):
        assert f"ran {op}" in out, op
