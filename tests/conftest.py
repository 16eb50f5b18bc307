"""Test set-up: faster simulator thread switching, poisoned outputs, a device fixture."""

from __future__ import annotations

import sys

import pytest

import numba_cnn._cuda as _cuda
from numba_cnn.ops import _common

sys.setswitchinterval(1e-4)  # the CUDA simulator runs each thread as a Python thread
_common.POISON = True  # every op output starts as NaN: unwritten elements fail the tests

SIMULATOR = _cuda.SIMULATOR
HAVE_CUDA = _cuda.available()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and no simulator")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Runs a test on the CPU path and on the CUDA kernels (GPU or simulator)."""
    return request.param
