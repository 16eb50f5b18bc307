"""numba_cnn.distributed under ``mpiexec -n 2`` (skipped only without mpi4py or mpiexec), and
the world of one process without MPI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import numba_cnn.distributed as dist
from numba_cnn.distributed import _group
from numba_cnn.testing import assert_close

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_worker.py"


def find_mpiexec() -> str | None:
    """The ``mpiexec`` next to this Python (the venv's, from the ``mpich`` wheel), else PATH's."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.is_file() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and mpiexec (pip install 'numba-cnn[mpi]')",
)


def mpirun(n: int, args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """``mpiexec -n n python args...`` with one Numba thread per rank (2 cores here)."""
    full_env = {**os.environ, "NUMBA_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def load_worker():
    spec = importlib.util.spec_from_file_location("_dist_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fresh_world(monkeypatch):
    """Forget the cached world so that ``init()`` runs again (restored afterwards)."""
    monkeypatch.setattr(_group, "_WORLD", None)


def test_world_of_one_without_mpi4py(fresh_world, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    for var in _group._LAUNCHER_SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    g = dist.init()
    assert (g.rank, g.size, g.is_root) == (0, 1, True)
    assert dist.init() is g and dist.world() is g
    worker = load_worker()
    model = worker.small_net()
    model[0].weight.grad = np.random.default_rng(0).standard_normal(model[0].weight.shape)
    before = model[0].weight.grad.copy()
    dist.broadcast_parameters(model)
    dist.allreduce_gradients(model)
    dist.check_same_model(model)
    np.testing.assert_array_equal(model[0].weight.grad, before)
    assert g.bcast({"a": 1}) == {"a": 1} and g.allgather(3) == [3]
    np.testing.assert_array_equal(g.sum([1.5, 2.0]), [1.5, 2.0])


def test_launched_on_many_ranks_without_mpi4py_refuses(fresh_world, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setenv("PMI_SIZE", "4")
    with pytest.raises(RuntimeError, match="one of 4 MPI processes but mpi4py is not usable"):
        dist.init()


@needs_mpi
def test_two_ranks_repeat_the_one_process_run(tmp_path):
    r = mpirun(2, [str(WORKER), "train", str(tmp_path)], timeout=90)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "result.npz")
    assert int(got["size"]) == 2
    worker = load_worker()
    for name in ("sgd", "adam"):
        losses, state = worker.train(name, None)  # one process, the same global batch
        assert len(losses) == worker.STEPS == len(got[f"{name}/losses"])
        assert_close(got[f"{name}/losses"], losses, rtol=1e-5, atol=1e-5, name=f"{name} losses")
        assert losses[-1] < losses[0] - 0.02  # it trains: the weights moved
        for k, v in state.items():
            assert_close(got[f"{name}/{k}"], v, rtol=1e-5, atol=1e-5, name=f"{name} {k}")


@needs_mpi
def test_a_rank_with_a_different_model_fails_clearly(tmp_path):
    r = mpirun(2, [str(WORKER), "mismatch", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    want = (
        "check_same_model: rank 1 holds a different model: parameter '4.weight' has shape "
        "(24, 64) (float32) on rank 0 but (25, 64) (float32) on rank 1"
    )
    for rank in (0, 1):  # every rank raises the same error: none is left waiting
        assert (tmp_path / f"error{rank}.txt").read_text() == want


@needs_mpi
def test_a_rank_that_raises_stops_every_rank(tmp_path):
    t0 = time.perf_counter()
    r = mpirun(2, [str(WORKER), "raise", str(tmp_path)], timeout=45)  # a hang fails here
    seconds = time.perf_counter() - t0
    assert r.returncode != 0
    assert "[rank 1 of 2]" in r.stderr and "rank 1 fails on purpose" in r.stderr
    assert not (tmp_path / "rank0_passed_barrier").exists()
    assert seconds < 30, f"mpiexec took {seconds:.1f} s to stop"


@needs_mpi
def test_broadcast_parameters_and_buffers_and_host_allreduce(tmp_path):
    for mode in ("bcast", "host"):
        r = mpirun(2, [str(WORKER), mode, str(tmp_path)])
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "bcast_ok").exists() and (tmp_path / "host_ok").exists()


@needs_mpi
def test_device_gradients_staged_through_the_host_on_the_simulator(tmp_path):
    r = mpirun(2, [str(WORKER), "device", str(tmp_path)], NUMBA_ENABLE_CUDASIM="1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "device_ok").read_text() == "host"
