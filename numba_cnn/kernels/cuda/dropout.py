"""CUDA inverted dropout with a counter-based device RNG.

Element ``i`` is kept when ``splitmix64(key, i) >> 11 >= threshold``: each thread hashes the
element index with the call's 64-bit key (drawn once per call from the library's seeded
generator), so there are no generator states to create or copy and the mask does not depend
on the grid. It is the same function as the CPU kernel's, so both devices draw the same mask
for the same key. (numba.cuda.random's xoroshiro128p states are initialised on the host, one
per thread, and copied over on every seeding: per-element host work this avoids.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda, from_dtype, types

from ..cpu.dropout import _GOLDEN, _MIX1, _MIX2, _S11, _S27, _S30, _S31
from ._reduce import MAX_32, grid_start, grid_step

uint32 = types.uint32
THREADS = 32 if SIMULATOR else 256
MAX_BLOCKS = 4 if SIMULATOR else 2048  # grid-stride loops cover the rest

# SplitMix64's constants and shifts, one definition for both devices (the CPU kernel's), the
# constants as 32-bit halves: numba-cuda-mlir 0.6 cannot take a uint64 global >= 2**63
# (std::bad_cast), so the kernel joins them ((hi << 32) | lo, folded by the compiler)
_S32, _LOW = np.uint64(32), np.uint64(0xFFFFFFFF)
_GOLDEN_HI, _GOLDEN_LO = _GOLDEN >> _S32, _GOLDEN & _LOW
_MIX1_HI, _MIX1_LO = _MIX1 >> _S32, _MIX1 & _LOW
_MIX2_HI, _MIX2_LO = _MIX2 >> _S32, _MIX2 & _LOW


@functools.cache
def _kernels(ft) -> dict[str, Any]:
    """The dropout kernels for one numba float type ``ft``."""
    zero = ft(0)

    @cuda.jit
    def dropout_fwd(x, y, mask, key, threshold, scale):
        # x, y, mask (n,): mask = bits(key, i) >= threshold; y = x * (mask ? scale : 0)
        n = uint32(x.shape[0])
        golden = (_GOLDEN_HI << _S32) | _GOLDEN_LO
        mix1 = (_MIX1_HI << _S32) | _MIX1_LO
        mix2 = (_MIX2_HI << _S32) | _MIX2_LO
        i = grid_start()
        while i < n:
            # counter-based SplitMix64 of (key, i); its top 53 bits against the threshold
            z = key + types.uint64(i + 1) * golden
            z = (z ^ (z >> _S30)) * mix1
            z = (z ^ (z >> _S27)) * mix2
            z = z ^ (z >> _S31)
            keep = (z >> _S11) >= threshold
            mask[i] = keep
            y[i] = x[i] * (scale if keep else zero)
            i = uint32(i + grid_step())

    @cuda.jit
    def dropout_bwd(dy, mask, dx, scale):
        # dy, mask, dx (n,): dx = dy * (mask ? scale : 0)
        n = uint32(dy.shape[0])
        i = grid_start()
        while i < n:
            dx[i] = dy[i] * (scale if mask[i] else zero)
            i = uint32(i + grid_step())

    return {"dropout_fwd": dropout_fwd, "dropout_bwd": dropout_bwd}


def _grid(n: int) -> int:
    if n > MAX_32:
        raise ValueError(f"dropout: {n} elements exceed the CUDA kernels' {MAX_32}")
    return min(-(-n // THREADS), MAX_BLOCKS)


def dropout(x: Any, y: Any, mask: Any, key: int, threshold: int, scale: float) -> None:
    """x, y (any shape, float), mask (same shape, bool) device arrays: draw and apply."""
    n = x.size
    if n == 0:
        return
    dtype = np.dtype(x.dtype)
    k = _kernels(from_dtype(dtype))["dropout_fwd"]
    k[_grid(n), THREADS](
        x.reshape(n),
        y.reshape(n),
        mask.reshape(n),
        np.uint64(key),
        np.uint64(threshold),
        dtype.type(scale),
    )


def dropout_backward(dy: Any, mask: Any, dx: Any, scale: float) -> None:
    """dy, dx (any shape, float), mask (same shape, bool): dx = dy * mask * scale."""
    n = dy.size
    if n == 0:
        return
    dtype = np.dtype(dy.dtype)
    k = _kernels(from_dtype(dtype))["dropout_bwd"]
    k[_grid(n), THREADS](dy.reshape(n), mask.reshape(n), dx.reshape(n), dtype.type(scale))


def ptx_specs() -> list[tuple[str, Callable, str]]:
    """Every kernel specialisation the launchers above use, for ``ptx_report``."""
    specs = []
    for name in ("float32", "float64"):
        ks = _kernels(getattr(types, name))
        a = f"{name}[::1]"
        specs += [
            (
                f"dropout_fwd_{name}",
                ks["dropout_fwd"].py_func,
                f"void({a}, {a}, b1[::1], uint64, uint64, {name})",
            ),
            (f"dropout_bwd_{name}", ks["dropout_bwd"].py_func, f"void({a}, b1[::1], {a}, {name})"),
        ]
    return specs
