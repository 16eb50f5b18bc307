"""Two independent GEMMs at once, one per thread: a backward pass's two products.

A layer's backward makes two products of the same size (linear: ``dx = dy @ w`` and
``dw = dy.T @ x``, both M x I x O multiply-adds). Split over two threads each, a small one
pays twice for what a split costs: a wake-up of the pool, per-thread packing of the same
operand, the wait for the slower half. On two threads, ``gemm_pair`` runs each product whole
on one thread (the serial build, with buffers of its own) in one parallel region.

The rule, measured on the project's AMD EPYC (2 vCPUs, two Numba threads; ms for the linear
backward's two products one after the other / as a pair, three runs of 200, 2026-12-01):
(64,400)->120 0.222-0.223 / 0.206-0.208, (256,512)->1000 7.85-8.02 / 7.75-7.98. With more
threads each product keeps them all (untested: this machine has two), and below half
``_gemm.SERIAL_FMA`` multiply-adds a product runs on one thread anyway. The pair kernel adds
about 9 s of compile to the first backward (cached on disk after).
"""

from __future__ import annotations

from numba import njit, prange

from . import _gemm
from ._gemm import gemm, gemm_kernel_serial, launch
from ._threads import num_threads


# p, q: the argument tuples of two gemm_kernel_serial calls on separate buffers
@njit(parallel=True, cache=True, _nrt=False)
def pair_kernel(p, q):
    for j in prange(2):
        if j == 0:
            gemm_kernel_serial(*p)
        else:
            gemm_kernel_serial(*q)


def gemm_pair(first: tuple, second: tuple) -> None:
    """``gemm(*first); gemm(*second)`` for two products that share no output, at once when
    there are two threads and work enough for both (see the module docstring)."""
    # M * N * K of each: arow (1), bcol (6) and acol (2) of gemm's arguments
    size = [f[1].shape[0] * f[6].shape[0] * f[2].shape[0] for f in (first, second)]
    if num_threads() != 2 or min(size) < _gemm.SERIAL_FMA // 2:
        gemm(*first)
        gemm(*second)
        return
    p = launch(*first, serial=True, tag="")
    q = launch(*second, serial=True, tag="_pair")
    if p is None or q is None:  # one was empty or K == 0 (done by launch): the other alone
        for c in (p, q):
            if c is not None:
                c[0](*c[1])
        return
    pair_kernel(p[1], q[1])
