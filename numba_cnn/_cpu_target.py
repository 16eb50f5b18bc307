"""Full-width vectors on Intel AVX-512 CPUs: the compile target numba builds for this library.

LLVM tunes Intel's AVX-512 server CPUs (skylake-avx512 .. graniterapids) to prefer 256-bit
vectors (the ``prefer-256-bit`` tuning feature), which halves the FMA width of every numba
loop there; the project measured the conv kernels 15-50% faster with it turned off
(``shared/PERF_NOTES.md``). ``configure()`` runs when this module is imported, first thing
on ``import numba_cnn``: on a CPU with ``avx512f``, and only when the user has set neither
``NUMBA_CPU_NAME`` nor ``NUMBA_CPU_FEATURES`` (nor ``NUMBA_CNN_VECTOR_BITS=256``), it sets
both to the host's name and features plus ``-prefer-256-bit``, before numba builds its
target machine (numba reads them from its config when it first compiles).

The on-disk cache stays consistent: numba keys every cached function on its codegen's
``magic_tuple()`` (triple, CPU name, feature string), so code built with and without the
change never mix. When numba's target machine already exists (numba code compiled before
``import numba_cnn``), nothing is changed, and ``vector_shape()`` reports what that machine
was built with, so the GEMM tiles always match the code generated.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: Set to 256 to keep LLVM's default 256-bit preference on AVX-512 CPUs.
OPT_OUT = "NUMBA_CNN_VECTOR_BITS"


def decide(environ: Mapping[str, str], cpu_name: str, features: str) -> dict[str, str]:
    """The environment variables to set (empty: leave numba's target as it is)."""
    if "NUMBA_CPU_NAME" in environ or "NUMBA_CPU_FEATURES" in environ:
        return {}  # the user chose the target
    if environ.get(OPT_OUT, "") == "256":
        return {}
    flags = features.split(",")
    if "+avx512f" not in flags or "+prefer-256-bit" in flags or "-prefer-256-bit" in flags:
        return {}
    return {"NUMBA_CPU_NAME": cpu_name, "NUMBA_CPU_FEATURES": features + ",-prefer-256-bit"}


def _codegen_built() -> bool:
    """Whether numba's CPU target machine exists already (its features are then fixed)."""
    reg = sys.modules.get("numba.core.registry")
    return reg is not None and "_toplevel_target_context" in vars(reg.cpu_target)


def configure() -> dict[str, str]:
    """Apply ``decide`` for this host (see the module docstring); returns what was set."""
    import llvmlite.binding as ll

    if _codegen_built():
        return {}
    todo = decide(os.environ, ll.get_host_cpu_name(), ll.get_host_cpu_features().flatten())
    if todo:
        os.environ.update(todo)
        cfg = sys.modules.get("numba.core.config")
        if cfg is not None:  # numba imported already: its config read the old environment
            cfg.CPU_NAME = todo["NUMBA_CPU_NAME"]
            cfg.CPU_FEATURES = todo["NUMBA_CPU_FEATURES"]
    return todo


def target() -> tuple[str, str]:
    """(CPU name, feature string) numba compiles for (its config, else the host's)."""
    import llvmlite.binding as ll
    from numba.core import config

    name = config.CPU_NAME or ll.get_host_cpu_name()
    feats = config.CPU_FEATURES
    if feats is None:
        feats = ll.get_host_cpu_features().flatten()
    return name, feats


def vector_bits(name: str, features: str) -> int:
    """Widest vector LLVM uses for this target: 512 on AVX-512 unless tuned to 256 (Intel's
    server CPUs by default; AMD's znver4/5 are not), 256 with AVX, else 128."""
    flags = features.split(",")
    if "+avx512f" in flags:
        if "-prefer-256-bit" in flags:
            return 512
        if "+prefer-256-bit" in flags or not name.startswith("znver"):
            return 256
        return 512
    if "+avx" in flags or "+avx2" in flags:
        return 256
    return 128


def vector_shape() -> tuple[int, int]:
    """(vector bits, vector registers) of the target numba compiles for."""
    name, feats = target()
    nregs = 32 if "+avx512f" in feats.split(",") else 16
    return vector_bits(name, feats), nregs


#: What ``import numba_cnn`` set (empty: numba's target left as it was).
APPLIED = configure()
