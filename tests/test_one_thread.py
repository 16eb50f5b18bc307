"""One-thread runs take the serial twins of the CPU kernels: same results, and the parallel
builds (2-3x the compile time) are never compiled, e.g. by ``numba-cnn train`` on 8x8 digits."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numba
import numpy as np
import pytest

from numba_cnn import functional as F
from numba_cnn.kernels.cpu import _threads, activation, batch_norm, pooling
from numba_cnn.kernels.cpu._serial import PARALLEL_MIN
from numba_cnn.testing import randn

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one CPU thread")


@contextlib.contextmanager
def threads(n: int):
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


@needs_two
def test_rule():
    with threads(2):
        assert _threads.use_parallel(PARALLEL_MIN)
        assert not _threads.use_parallel(PARALLEL_MIN - 1)
    with threads(1):
        assert not _threads.use_parallel(10 * PARALLEL_MIN)


def _step(x, w, b, labels):
    """max-pool, batch norm, relu, cross-entropy forward and backward: every output."""
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    dx_pool = F.max_pool2d_backward(randn(y.shape, seed=8), idx, x.shape, kernel_size=2)
    z, mean, invstd = F.batch_norm(y, None, None, w, b, training=True)
    dz = F.batch_norm_backward(z, y, w, mean, invstd, training=True)
    r = F.relu(z)
    logits = r.reshape(r.shape[0], -1)[:, :10]
    loss = F.cross_entropy(np.ascontiguousarray(logits), labels)
    return [y, idx, dx_pool, z, *dz, r, np.asarray(loss)]


@needs_two
def test_one_thread_matches_two_and_compiles_no_parallel_build():
    # (17, 24, 22, 18): above PARALLEL_MIN after pooling too, no dimension a power of two
    x = randn((17, 24, 22, 18), seed=4)
    w, b = randn((24,), seed=5), randn((24,), seed=6)
    labels = np.random.default_rng(7).integers(0, 10, 17)
    parallel = [pooling._max2x2_fwd, batch_norm._train_forward, activation._relu]
    assert x.size // 4 >= PARALLEL_MIN
    before = [len(k.signatures) for k in parallel]
    with threads(1):
        one = _step(x, w, b, labels)
    assert [len(k.signatures) for k in parallel] == before  # serial twins only
    with threads(2):
        two = _step(x, w, b, labels)
    assert all(len(k.signatures) >= 1 for k in parallel)  # the parallel builds ran this time
    for a, c in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, c)  # one thread per plane/channel: same order


def test_digits_training_run_compiles_no_parallel_build_of_these_kernels(tmp_path):
    """The README's ``numba-cnn train`` (8x8 digits: one thread) in a fresh process."""
    code = f"""
from numba_cnn import cli
from numba_cnn.kernels.cpu import activation, batch_norm, pooling, softmax
argv = ["train", "--limit", "40", "--batch-size", "16", "--epochs", "1", "--device", "cpu"]
assert cli.main([*argv, "--out", {str(tmp_path / "run")!r}]) == 0
kernels = [pooling._max2x2_fwd, pooling._max_fwd_idx, pooling._max_bwd, batch_norm._train_forward,
           batch_norm._eval_forward, batch_norm._backward, activation._relu,
           activation._relu_backward, softmax._cross_entropy, softmax._cross_entropy_backward]
print("PARALLEL", [k.py_func.__name__ for k in kernels if k.signatures])
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "PARALLEL []" in p.stdout, p.stdout[-2000:]
