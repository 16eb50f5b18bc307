"""The CUDA runtime pieces: memory pool adapter, memory_stats, backend switch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import numba_cnn as nc
from numba_cnn import _cuda, _memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter without the simulator (unless ``env`` sets it)."""
    e = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    e.pop("NUMBA_CUDA_MEMORY_MANAGER", None)
    e.pop("NUMBA_CNN_CUDA_BACKEND", None)
    e.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=e,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


@pytest.mark.skipif(not _has("cupy"), reason="CuPy (the cu12/cu13 extra) is not installed")
def test_memory_stats_names_cupy_pool_without_simulator():
    p = _run(
        "import numba_cnn as nc; s = nc.memory_stats(); "
        "print(s['pool'], type(s['bytes_in_use']).__name__, type(s['bytes_reserved']).__name__)"
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["cupy", "int", "int"]


def test_memory_stats_respects_a_users_manager():
    p = _run(
        "import numba_cnn as nc; print(nc.memory_stats()['pool'])",
        NUMBA_CUDA_MEMORY_MANAGER="rmm.allocators.numba",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "rmm.allocators.numba"


def test_memory_stats_under_the_simulator_is_zero():
    p = _run(
        "import numba_cnn as nc; s = nc.memory_stats(); "
        "print(s['pool'], s['bytes_in_use'], s['bytes_reserved'])",
        NUMBA_ENABLE_CUDASIM="1",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["simulator", "0", "0"]


def test_configure_registers_only_when_allowed(monkeypatch):
    registered = []

    class FakeCuda:
        def set_memory_manager(self, cls):
            registered.append(cls)

    import importlib.util

    saved = _memory._POOL
    real_find_spec = importlib.util.find_spec
    try:
        monkeypatch.delenv("NUMBA_CUDA_MEMORY_MANAGER", raising=False)
        assert _memory.configure(FakeCuda(), simulator=True) == "simulator"
        assert not registered
        monkeypatch.setenv("NUMBA_CUDA_MEMORY_MANAGER", "my.manager")
        assert _memory.configure(FakeCuda(), simulator=False) == "my.manager"
        assert not registered
        monkeypatch.delenv("NUMBA_CUDA_MEMORY_MANAGER")
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n: None if n == "cupy" else real_find_spec(n)
        )
        assert _memory.configure(FakeCuda(), simulator=False) == "numba"
        assert not registered
    finally:
        _memory._POOL = saved


def test_cupy_adapter_with_a_fake_pool():
    # the real numba.cuda EMM classes are not importable under the simulator: a subprocess
    code = """
    import gc, weakref
    from numba import cuda
    from numba_cnn import _memory

    class Block:
        def __init__(self, ptr, size):
            self.ptr, self.size = ptr, size

    class FakePool:
        def __init__(self):
            self.live = weakref.WeakValueDictionary()
            self.next = 0x7F0000001000
        def malloc(self, size):
            b = Block(self.next, size)
            self.next += 512 * ((size + 511) // 512)
            self.live[b.ptr] = b
            return b

    pool = FakePool()
    cls = _memory.make_manager(cuda, lambda device_id: pool)
    cuda.set_memory_manager(cls)  # accepted: interface version 1
    mgr = cls(context=None)
    mgr.initialize()
    before = dict(_memory._COUNTS)
    a, b = mgr.memalloc(1000), mgr.memalloc(24)
    assert int(a.device_pointer) == 0x7F0000001000, a.device_pointer
    assert int(b.device_pointer) == 0x7F0000001000 + 1024
    assert (a.size, b.size) == (1000, 24)
    assert len(pool.live) == 2
    del a
    gc.collect()
    assert sorted(pool.live) == [0x7F0000001000 + 1024], sorted(pool.live)
    assert _memory._COUNTS["allocs"] - before["allocs"] == 2
    assert _memory._COUNTS["frees"] - before["frees"] == 1
    assert mgr.interface_version == 1

    class Ctx:  # the pool is asked for the Numba context's device (MPI: select_device(rank))
        class device:
            id = 3

    seen = []
    m2 = _memory.make_manager(cuda, lambda d: seen.append(d) or pool)(context=Ctx())
    m2.initialize()
    assert seen == [3], seen
    print("ok")
    """
    p = _run(code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"


def test_backend_switch_and_unknown_value():
    assert nc.cuda_backend() == _cuda.BACKEND == "numba-cuda"
    p = _run("import numba_cnn", NUMBA_CNN_CUDA_BACKEND="cupy-jit")
    assert p.returncode != 0
    assert "NUMBA_CNN_CUDA_BACKEND='cupy-jit' is not a CUDA front end" in p.stderr
    if not _has("numba_cuda_mlir"):
        p = _run("import numba_cnn", NUMBA_CNN_CUDA_BACKEND="mlir")
        assert p.returncode != 0 and "pip install 'numba-cnn[mlir]'" in p.stderr


@pytest.mark.skipif(not _has("numba_cuda_mlir"), reason="numba-cuda-mlir is not installed")
def test_mlir_backend_imports_its_own_cuda():
    p = _run(
        "import numba_cnn as nc; from numba_cnn import _cuda; "
        "t = type(_cuda.from_dtype('float32')); "
        "print(nc.cuda_backend(), _cuda.cuda.__name__, t.__module__)",
        NUMBA_CNN_CUDA_BACKEND="mlir",
    )
    assert p.returncode == 0, p.stderr
    backend, mod, tmod = p.stdout.split()
    assert (
        backend == "mlir"
        and mod.startswith("numba_cuda_mlir")
        and tmod.startswith("numba_cuda_mlir")
    )


def test_from_dtype_maps_to_the_active_front_ends_types():
    import numpy as np

    assert _cuda.from_dtype(np.float32) is _cuda.types.float32
    assert _cuda.from_dtype("int64") is _cuda.types.int64
    assert _cuda.from_dtype(np.bool_) is _cuda.types.boolean


# -- one training step of a small conv net: launches and copies ----------------------------------
def _small_convnet():
    from numba_cnn import nn

    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5),
    )


@pytest.mark.skipif(not _cuda.available(), reason="needs a GPU or the simulator")
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_step_launches_and_copies(opt_name, monkeypatch):
    """Issue 8's step: conv-relu-pool x2 + linear (6 parameters), cross-entropy, SGD with
    momentum or Adam. Measured 31 launches before issue 8 (6 of them optimizer updates, 3 per
    max-pool backward), 22 with the fused optimizer and the one-launch max-pool backward."""
    import numpy as np

    from numba_cnn import nn, optim
    from numba_cnn.ops import _common

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from step_counter import count_device_work

    monkeypatch.setattr(_common, "POISON", False)  # poisoning uploads NaNs: not production
    nc.manual_seed(0)
    model = _small_convnet().to("cuda")
    params = model.parameters()
    opt = optim.SGD(params, lr=0.1, momentum=0.9) if opt_name == "sgd" else optim.Adam(params)
    crit = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = nc.to_device(rng.standard_normal((3, 1, 8, 8)).astype(np.float32))
    y = nc.to_device(rng.integers(0, 5, 3))

    def step():
        opt.zero_grad()
        loss = crit(model(x), y)
        model.backward(crit.backward(), need_dx=False)
        opt.step()
        return loss

    step()  # steady state from here on: optimizer state exists (the second step counts the
    # same launches, allocations, zero copies and zero syncs as the third, measured 2026-11-30)
    with count_device_work() as c:
        loss = step()
    print(f"{opt_name}: {c.launches} launches {dict(c.names)}; {c.allocs} allocations")
    assert c.copies == 0, dict(c.copy_kinds)
    assert c.syncs == 0
    assert c.names["sgd_update_multi" if opt_name == "sgd" else "adam_update_multi"] == 1
    assert c.launches <= 27, dict(c.names)
    assert np.isfinite(float(nc.to_host(loss)))
