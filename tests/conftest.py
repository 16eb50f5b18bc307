"""Test set-up: a faster CUDA simulator, poisoned outputs, a device fixture, long tests first."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import numba_cnn._cuda as _cuda
from numba_cnn.ops import _common

_common.POISON = True  # every op output starts as NaN: unwritten elements fail the tests

SIMULATOR = _cuda.SIMULATOR
if SIMULATOR:
    # the simulator runs each thread of a block as a Python thread: a blocking syncthreads
    # instead of its busy poll of the threads (sim_barrier.py), and Python's default 5 ms time
    # slices (the poll needed 0.1 ms ones to let the working threads run; switching that often
    # cost as much again)
    _spec = importlib.util.spec_from_file_location(
        "_nc_sim_barrier", Path(__file__).with_name("sim_barrier.py")
    )
    _sim_barrier = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_sim_barrier)
    if not _sim_barrier.install():
        sys.setswitchinterval(1e-4)
HAVE_CUDA = _cuda.available()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and no simulator")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Runs a test on the CPU path and on the CUDA kernels (GPU or simulator)."""
    return request.param


#: Tests that run for minutes (kernel compiles for real GPUs, the gpu_check script, long
#: simulator gradchecks), longest first: started first, so that with ``pytest -n 2`` they
#: overlap the rest of the suite instead of running alone at its end. The first two share the
#: session's one compile of every kernel (``tests/kernels/cuda/conftest.py``): the worker that
#: takes the first also takes the second (see ``pytest_configure``).
LONG_FIRST = (
    "test_ptx_report.py::test_ptx_report_compiles_every_kernel",
    "test_sass_report.py::test_gemm_kernels",
    "test_benchmarks.py::",
    "test_training_step_launches_and_copies",
    "test_conv2d_every_tile_variant",
    "test_train_on_cuda_device_arrays",
    "test_batch_norm_gradcheck_cuda_split",
    "test_sanitizer_workload_runs_every_op",
    "test_gemm_shapes_transposes",
)


def pytest_configure(config) -> None:
    # pytest-xdist's default (load) scheduler hands each worker a quarter of its share of the
    # tests at the start, in collection order: every LONG_FIRST test would land on the first
    # worker, one after the other. One test at a time (each worker holds the test it runs and
    # the next) spreads them, longest first, over the workers; --maxschedchunk overrides it.
    if getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items) -> None:
    rank = {
        id(it): next((i for i, key in enumerate(LONG_FIRST) if key in it.nodeid), len(LONG_FIRST))
        for it in items
    }
    items.sort(key=lambda it: rank[id(it)])  # stable: the rest keep their order


@pytest.fixture
def wrap_step(monkeypatch):
    """``wrap_step(when, action)``: the optimizer ``numba_cnn.train`` builds calls ``action()``
    on its ``when``-th step (1-based)."""
    import numba_cnn.train as T

    def wrap(when: int, action) -> None:
        make = T.make_optimizer

        def patched(*args, **kw):
            opt = make(*args, **kw)
            step, count = opt.step, [0]

            def counted_step(*a, **k):
                count[0] += 1
                if count[0] == when:
                    action()
                return step(*a, **k)

            opt.step = counted_step
            return opt

        monkeypatch.setattr(T, "make_optimizer", patched)

    return wrap
