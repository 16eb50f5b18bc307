"""The suite's blocking ``syncthreads`` for the CUDA simulator (``tests/sim_barrier.py``, installed
by ``conftest.py``) keeps the simulator's semantics: barriers order shared-memory writes and
reads, threads that returned do not hold the others, ``syncthreads_count`` counts, and an
exception in one thread fails the launch with the thread's coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn import _cuda
from numba_cnn._cuda import cuda  # a module global: the simulator swaps it in kernels

pytestmark = pytest.mark.skipif(not _cuda.SIMULATOR, reason="the CUDA simulator's barrier")


def test_installed():
    from numba.cuda.simulator import kernel as K

    assert getattr(K.BlockManager, "_nc_barrier", False)


def test_barriers_order_shared_memory_and_returned_threads_do_not_block():
    n = 48

    @cuda.jit
    def rotate(out, counts):
        sm = cuda.shared.array(48, dtype=np.int64)
        i = cuda.threadIdx.x
        b = cuda.blockIdx.x
        sm[i] = 1000 * b + i
        cuda.syncthreads()
        v = sm[(i + 1) % n]  # a neighbour's value: needs the barrier
        cuda.syncthreads()
        sm[i] = v * 2
        cuda.syncthreads()
        counts[b, i] = cuda.syncthreads_count(i % 3 == 0)
        if i >= n - 5:
            return  # these take no part in the barriers below
        for _ in range(3):
            cuda.syncthreads()
        out[b, i] = sm[(i + 2) % n]

    out = np.full((3, n), -1, dtype=np.int64)
    counts = np.zeros((3, n), dtype=np.int64)
    rotate[3, n](out, counts)
    idx = np.arange(n)
    for b in range(3):
        exp = 2 * (1000 * b + (idx + 3) % n)
        np.testing.assert_array_equal(out[b, : n - 5], exp[: n - 5])
        assert (out[b, n - 5 :] == -1).all()
        assert (counts[b] == (n + 2) // 3).all()


def test_an_exception_in_one_thread_fails_the_launch():

    @cuda.jit
    def bad(a):
        i = cuda.threadIdx.x
        cuda.syncthreads()
        if cuda.blockIdx.x == 1 and i == 5:
            a[1000] = 1.0  # out of bounds
        cuda.syncthreads()
        a[i] = 1.0

    with pytest.raises(IndexError, match=r"tid=\[5, 0, 0\] ctaid=\[1, 0, 0\]"):
        bad[2, 16](np.zeros(16))
