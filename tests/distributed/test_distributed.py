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

import numba_cnn as nc
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


def mpirun(
    n: int, args: list[str], timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """``mpiexec -n n python args...`` with one Numba thread per rank (2 cores here). Each run
    takes 5-30 s on a quiet 2-core machine; the timeout is generous because Numba compiles
    (first run after a kernel changes) and a machine shared with other jobs can take minutes,
    and a hang shows up as ``TimeoutExpired`` either way."""
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
    r = mpirun(2, [str(WORKER), "train", str(tmp_path)])
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
    r = mpirun(2, [str(WORKER), "raise", str(tmp_path)])  # a hang fails here (TimeoutExpired)
    seconds = time.time() - float((tmp_path / "raised_at").read_text())
    assert r.returncode != 0
    assert "[rank 1 of 2]" in r.stderr and "rank 1 fails on purpose" in r.stderr
    assert not (tmp_path / "rank0_passed_barrier").exists()
    assert seconds < 15, f"mpiexec took {seconds:.1f} s to stop after the error"


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


@needs_mpi
def test_cli_two_ranks_rank0_alone_prints_and_writes_and_resumes(tmp_path):
    spy, log, run = str(HERE / "_cli_spy.py"), tmp_path / "writes.txt", tmp_path / "run"
    args = ["train", "--limit", "96", "--batch-size", "16", "--seed", "3", "--device", "cpu"]
    r = mpirun(2, [spy, str(log), *args, "--epochs", "1", "--out", str(run)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum(line.startswith("training lenet on digits") for line in lines) == 1, r.stdout
    assert sum(line.startswith("epoch   1/1  train loss") for line in lines) == 1, r.stdout
    assert sum(line.startswith("done in") for line in lines) == 1, r.stdout
    assert "[rank" not in r.stderr
    assert sorted(log.read_text().split("\n")[:-1]) == ["checkpoint 0", "metrics 0", "plots 0"]
    files = sorted(p.name for p in run.iterdir())
    assert files[:2] == ["checkpoint.npz", "curves.png"] and "metrics.csv" in files
    assert not [f for f in files if f.startswith(".")]  # no temporary file left behind
    ckpt = nc.load(run / "checkpoint.npz")
    assert int(ckpt["epoch"]) == 1 and int(ckpt["settings"]["batch_size"]) == 16
    assert int(ckpt["partial"][1]) == 0 and len(ckpt["history"]["epoch"]) == 1

    log.unlink()  # --resume: rank 0 reads the checkpoint, every rank continues from it
    resume = ["train", "--resume", str(run / "checkpoint.npz"), "--epochs", "2"]
    r = mpirun(2, [spy, str(log), *resume])
    assert r.returncode == 0, r.stderr
    assert sum(line.startswith("epoch   2/2  train loss") for line in r.stdout.splitlines()) == 1
    assert sorted(log.read_text().split("\n")[:-1]) == ["checkpoint 0", "metrics 0", "plots 0"]
    again = nc.load(run / "checkpoint.npz")
    assert int(again["epoch"]) == 2
    np.testing.assert_array_equal(again["history"]["train_loss"][:1], ckpt["history"]["train_loss"])
    assert np.isfinite(again["history"]["train_loss"][1])


@needs_mpi
def test_cli_batch_that_does_not_divide_by_the_ranks_fails_clearly(tmp_path):
    args = ["-m", "numba_cnn.cli", "train", "--limit", "40", "--batch-size", "15"]
    r = mpirun(2, [*args, "--out", str(tmp_path / "run")])
    assert r.returncode != 0
    assert "--batch-size 15 is the global batch and must divide by the number of ranks, 2" in (
        r.stderr
    )
    assert not (tmp_path / "run").exists()


@needs_mpi
def test_cli_ctrl_c_on_one_rank_stops_every_rank_after_the_same_batch(tmp_path):
    spy, log, run = str(HERE / "_cli_spy.py"), tmp_path / "writes.txt", tmp_path / "run"
    args = ["train", "--limit", "96", "--batch-size", "16", "--device", "cpu", "--epochs", "2"]
    r = mpirun(2, [spy, str(log), *args, "--out", str(run)], SPY_SIGINT_AT="3")
    assert r.returncode == 130, r.stderr
    assert r.stdout.count("interrupted in epoch 1 after 3 batches") == 1, r.stdout
    assert log.read_text().split("\n")[:-1] == ["checkpoint 0", "metrics 0"]
    ckpt = nc.load(run / "checkpoint.npz")
    assert (int(ckpt["epoch"]), int(ckpt["batch"])) == (0, 3)
    assert int(ckpt["partial"][1]) == 3 * 16  # both ranks' samples of the 3 batches
