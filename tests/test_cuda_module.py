"""numba_cnn._cuda: the one CUDA import point, device-array helpers, the simulator fix."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import _cuda
from numba_cnn.ops._common import dtype_of


@pytest.mark.skipif(not _cuda.SIMULATOR, reason="a fix for the CUDA simulator")
def test_simulator_gives_every_thread_of_a_block_the_same_shared_array():
    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for _ in range(20):
            shared = FakeCUDAShared(0)
            start = threading.Barrier(32)
            got = []

            def thread(shared=shared, start=start, got=got):
                start.wait()
                got.append(shared.array((8,), np.float32))  # one call site for all

            ts = [threading.Thread(target=thread) for _ in range(32)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert len({id(a) for a in got}) == 1
    finally:
        sys.setswitchinterval(old)


@pytest.mark.skipif(not _cuda.available(), reason="needs a GPU or the simulator")
def test_to_device_to_host_round_trip_and_identity_on_host():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    d = nc.to_device(x)
    assert _cuda.is_device_array(d)
    assert nc.to_device(d) is d  # already on the device: not copied
    np.testing.assert_array_equal(nc.to_host(d), x)
    assert nc.to_host(x) is x


@pytest.mark.skipif(not _cuda.available(), reason="needs a GPU or the simulator")
def test_non_contiguous_device_array_is_copied_once_into_contiguous_storage():
    x = np.arange(24, dtype=np.float32).reshape(3, 8)
    # a strided slice is a view on a GPU too (a real DeviceNDArray's ``.T`` launches a
    # transpose kernel and returns a contiguous copy, so it would not reach the copy path)
    d = nc.to_device(x)[:, 1::3]
    assert not _cuda._is_c_contiguous(d)
    c = _cuda.as_device_array(d)
    assert _cuda._is_c_contiguous(c)
    np.testing.assert_array_equal(c.copy_to_host(), x[:, 1::3])


def test_dtype_of_reads_a_torch_like_dtype_from_the_array_interface():
    class TorchLike:  # torch.Tensor.dtype is torch.float32, which np.dtype() rejects
        dtype = object()
        __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False)}

    assert dtype_of(TorchLike()) == np.float32
    assert dtype_of(np.zeros(2, np.int32)) == np.int32
    with pytest.raises(TypeError):
        dtype_of(type("NoInterface", (), {"dtype": object()})())
