"""The 512-bit decision of ``numba_cnn._cpu_target`` on faked CPUs, and the tiles it implies.

The project's machines differ (an AVX2 EPYC here, AVX-512 Xeons elsewhere), so the decision
is tested on feature strings, and the running process is checked for consistency: the
micro-kernel's tiles match the features numba compiles for.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from numba_cnn import _cpu_target as T
from numba_cnn.kernels.cpu import _gemm_micro

SPR = "+64bit,+avx,+avx2,+fma,+avx512f,+avx512bw,+avx512vl,-amx-fp8"
ZEN1 = "+64bit,+avx,+avx2,+fma,-avx512f,-avx512bw"


def test_decide_intel_avx512_turns_off_256_bit_preference():
    got = T.decide({}, "sapphirerapids", SPR)
    want = {"NUMBA_CPU_NAME": "sapphirerapids", "NUMBA_CPU_FEATURES": SPR + ",-prefer-256-bit"}
    assert got == want
    assert T.vector_bits(got["NUMBA_CPU_NAME"], got["NUMBA_CPU_FEATURES"]) == 512
    assert T.vector_bits("sapphirerapids", SPR) == 256  # LLVM's default tuning there


def test_decide_leaves_other_cpus_and_user_choices_alone():
    assert T.decide({}, "znver1", ZEN1) == {}  # no AVX-512
    assert T.decide({"NUMBA_CPU_NAME": "generic"}, "sapphirerapids", SPR) == {}
    assert T.decide({"NUMBA_CPU_FEATURES": SPR}, "sapphirerapids", SPR) == {}
    assert T.decide({T.OPT_OUT: "256"}, "sapphirerapids", SPR) == {}
    assert T.decide({}, "x", SPR + ",+prefer-256-bit") == {}  # an explicit tuning stays
    assert T.vector_bits("znver4", SPR) == 512  # AMD's AVX-512 is not tuned down
    assert T.vector_bits("znver1", ZEN1) == 256
    assert T.vector_bits("x86-64", "+sse2,-avx") == 128


def test_tiles_fit_the_register_file():
    for bits, nregs in [(128, 16), (256, 16), (256, 32), (512, 32)]:
        for dt in (np.float32, np.float64):
            mr, nr = _gemm_micro.tile_for(dt, bits, nregs)
            vecs = nr * np.dtype(dt).itemsize * 8 // bits  # registers per row of C
            assert mr * vecs + vecs + 1 <= nregs, (bits, nregs, dt, mr, nr)


def test_this_process_is_consistent():
    """The tiles in use follow the features numba compiles for; configure() set what decide()
    asks for on this host (nothing on a CPU without AVX-512)."""
    import llvmlite.binding as ll

    name, feats = T.target()
    bits, nregs = T.vector_shape()
    assert bits == T.vector_bits(name, feats)
    assert _gemm_micro.TILES[np.dtype(np.float32)] == _gemm_micro.tile_for(np.float32, bits, nregs)
    if "+avx512f" not in ll.get_host_cpu_features().flatten().split(","):
        assert T.APPLIED == {}


def test_user_setting_survives_import():
    """A user's NUMBA_CPU_FEATURES is never replaced (checked in a fresh process)."""
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CPU_FEATURES="")
    code = "import os, numba_cnn; print(repr(os.environ['NUMBA_CPU_FEATURES']))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "''"
