"""Shared-memory tree reductions and 32-bit grid-stride helpers for the CUDA kernels.

Every helper is an ``inline="always"`` device function: ``compile_ptx`` (and so
``ptx_report``) compiles kernels that call such helpers without a GPU, whereas out-of-line
device functions ask for a driver. No warp shuffles (the simulator lacks them).

A reduction works on ``width`` slots (a power of two) of a shared array, slot ``k`` at
``sm[base + k * stride]``: ``stride = 1`` for a group of consecutive threads, ``stride = R``
for a group whose lanes are ``R`` threads apart. The result lands in slot 0. Every thread of
the block must call the helper with the same ``width`` (it contains barriers); threads of
other groups reduce their own slots at the same time. Sums add in a fixed tree order: the
same bits on every run. ``lane`` is the thread's slot index within its group.

Index helpers return unsigned 32-bit values: with them a kernel's index math stays 32-bit
(numba widens mixed or signed integer arithmetic to 64 bits, and a 64-bit ``//`` or ``%``
becomes a CALL to a division routine in the SASS). Launchers keep arrays below ``MAX_32``
elements so the loops never wrap.
"""

from __future__ import annotations

from numba_cnn._cuda import cuda, types

uint32 = types.uint32

MAX_32 = 2**31 - 1  # element count limit of the 32-bit index kernels (i + gridsize < 2**32)

_inline = cuda.jit(device=True, inline="always")


@_inline
def tree_sum(sm, base, stride, lane, width):
    # sm: shared array; slots base + k*stride, k < width, summed into slot 0 (k = 0)
    h = width >> 1
    while h > 0:
        if lane < h:
            sm[base + lane * stride] += sm[base + (lane + h) * stride]
        cuda.syncthreads()  # this level written before the next one reads it
        h >>= 1


@_inline
def tree_sum2(sa, sb, base, stride, lane, width):
    # two shared arrays reduced side by side (one barrier per level for both)
    h = width >> 1
    while h > 0:
        if lane < h:
            sa[base + lane * stride] += sa[base + (lane + h) * stride]
            sb[base + lane * stride] += sb[base + (lane + h) * stride]
        cuda.syncthreads()  # this level written before the next one reads it
        h >>= 1


@_inline
def tree_max(sm, base, stride, lane, width):
    # as tree_sum with max; a NaN slot wins (so NaN propagates to slot 0)
    h = width >> 1
    while h > 0:
        if lane < h:
            v = sm[base + (lane + h) * stride]
            if v > sm[base + lane * stride] or v != v:
                sm[base + lane * stride] = v
        cuda.syncthreads()  # this level written before the next one reads it
        h >>= 1


@_inline
def group_sum(sm, base, stride, lane, width, v):
    # every lane of every group gives v; each gets its group's sum (fixed order); sm is free
    # again when this returns
    sm[base + lane * stride] = v
    cuda.syncthreads()  # all partials stored before the trees read them
    tree_sum(sm, base, stride, lane, width)
    s = sm[base]
    cuda.syncthreads()  # every lane read its group's result before sm is reused
    return s


@_inline
def group_max(sm, base, stride, lane, width, v):
    # as group_sum with max (NaN wins)
    sm[base + lane * stride] = v
    cuda.syncthreads()  # all partials stored before the trees read them
    tree_max(sm, base, stride, lane, width)
    m = sm[base]
    cuda.syncthreads()  # every lane read its group's result before sm is reused
    return m


@_inline
def block_sum(sm, v):
    # every thread of a 1-D block (blockDim.x a power of two <= sm.size) gives v; all get the
    # block's sum (fixed order). sm is free again when this returns.
    return group_sum(sm, 0, 1, cuda.threadIdx.x, cuda.blockDim.x, v)


@_inline
def grid_start():
    # this thread's first flat index of a 1-D grid-stride loop, unsigned 32-bit
    return uint32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)


@_inline
def grid_step():
    # the stride of a 1-D grid-stride loop (threads in the grid), unsigned 32-bit
    return uint32(cuda.gridDim.x * cuda.blockDim.x)


@_inline
def udivmod(a, b):
    # (a // b, a % b) of non-negative a, b < 2**32 in 32-bit unsigned arithmetic (no CALL)
    ua = uint32(a)
    ub = uint32(b)
    q = uint32(ua // ub)
    return q, uint32(ua - q * ub)
