"""The Python side of the CPU GEMM (``_gemm``): blocking, per-thread packing buffers, index
ramps; each shape's plan remembered, since for a small product this side costs as much as the
arithmetic.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from ._gemm_micro import TILES, tile

_LOCAL = threading.local()

#: Bytes of one packed row of a K block (320 float32): K is cut into blocks of at most this.
KMAX = 1280

#: Rows of A in one M block (a packed 144 x 320 float32 block is 180 KiB, in L2); with A read
#: in place nothing of A is packed and larger blocks pack B fewer times (two threads, ms for
#: 144 / 1024 rows: x @ w.T (256,512)->1000 3.89 / 3.61, dy @ w 3.53 / 3.40)
MC_MAX = 144
MC_IN_PLACE = 1024

#: Bytes of packed A up to which each thread packs all of A once per call instead of block by
#: block in every job (the weights of a conv: 66 x 576 float32 is 152 KB).
A_FULL = 1 << 20


def workspace(name: str, size: int, dtype) -> np.ndarray:
    """A per-thread 1-D scratch array of ``size`` elements, reused across calls (grown when
    too small)."""
    cache = getattr(_LOCAL, "ws", None)
    if cache is None:
        cache = _LOCAL.ws = {}
    key = (name, np.dtype(dtype))
    buf = cache.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        cache[key] = buf
        _LOCAL.plans = {}  # views of the old buffer would keep it alive: forget them
    return buf[:size]


@lru_cache(maxsize=256)
def ramp(n: int, step: int, start: int = 0) -> np.ndarray:
    """start + step * arange(n) as int64, cached (read-only)."""
    r = start + step * np.arange(n, dtype=np.int64)
    r.flags.writeable = False
    return r


def blocking(
    dtype, M: int, N: int, K: int, threads: int, a_in_place: bool = False
) -> tuple[int, int, int, int, int]:
    """(kc, mc, nc, ksplit, nslot): kc x NR of B in L1 (K cut into equal blocks of at most
    320 float32), mc x kc of A in L2 (320 x 144 float32 is 180 KiB); N split so the jobs
    are a multiple of the threads; K split in `threads` chunks only when M and N give fewer
    blocks than threads and K is long."""
    MR, NR = tile(np.empty(0, dtype))
    kmax = KMAX // np.dtype(dtype).itemsize
    kc = -(-K // max(1, -(-K // kmax)))  # equal K blocks: no short last block
    mc = min(-(-M // MR) * MR, (MC_IN_PLACE if a_in_place else MC_MAX) // MR * MR)
    nmb = -(-M // mc)
    T = max(1, threads)
    nnb = -(-N // 256)
    if T > 1:
        nnb = -(-max(nnb, -(-T // nmb)) // T) * T if nmb < T else nnb
    per = -(-N // nnb)  # columns per block, rounded up to whole micro-panels
    nc = -(-per // NR) * NR
    nnb = -(-N // nc)
    ksplit = 1
    if T > 1 and nmb * nnb < T and K >= 4 * kmax:
        ksplit = T
    return kc, mc, nc, ksplit, T


def _plan(dt, M: int, N: int, K: int, T: int, a_in_place: bool = False, tag: str = ""):
    """Blocking and packing buffers of one product shape on this thread, remembered (the
    Python side of a small GEMM costs as much as its arithmetic). Plans of different ``tag``
    get different buffers (two products that run at once, ``_gemm_pair``)."""
    plans = getattr(_LOCAL, "plans", None)
    if plans is None:
        plans = _LOCAL.plans = {}
    key = (dt, M, N, K, T, a_in_place, tag)
    plan = plans.get(key)
    if plan is None:
        kc, mc, nc, ksplit, nslot = blocking(dt, M, N, K, T, a_in_place)
        MR, NR = TILES[dt]
        kc = max(1, min(kc, K))
        nmb, nnb, nkb = -(-M // mc), -(-N // nc), -(-K // kc)
        # A packed whole once per slot when its slots would otherwise repack it job by job
        a_full = (
            not a_in_place
            and ksplit == 1
            and nmb * nnb > nslot
            and nmb * nkb * mc * kc * dt.itemsize <= A_FULL
        )
        wa = workspace("gemm_a" + tag, nslot * mc * kc * (nmb * nkb if a_full else 1), dt)
        wb = workspace("gemm_b" + tag, nslot * (-(-nc // NR) * NR) * kc, dt)
        wc = workspace("gemm_c" + tag, nslot * MR * NR, dt)
        part = workspace("gemm_part" + tag, ksplit * M * N if ksplit > 1 else 0, dt)
        if len(plans) >= 64:
            plans.clear()
        plan = plans[key] = (kc, mc, nc, ksplit, nslot, a_full, wa, wb, wc, part)
    return plan
