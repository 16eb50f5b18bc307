"""The one GEMM core of the CUDA kernels: tile shapes, register tiles, the double-buffered loop.

Every GEMM-like kernel (conv forward, conv data and weight gradients, the dense layer's
``nn``/``nt``/``tn`` products) computes ``C[m, n] = sum_k A[m, k] * B[k, n]`` for one output
tile of ``BM x BN`` per block, in reduction slices of ``BK``. They differ only in how a slice
of A and of B is gathered from global memory and how the finished tile is stored, so a kernel
is this core plus two *gathers* (inline device functions) and its own epilogue.

- **Threads.** A 1-D block of ``(BM/TM) * (BN/TN)`` threads; thread ``t`` has ``tx = t % (BM/TM)``
  and ``ty = t // (BM/TM)`` and owns ``TM x TN`` outputs in registers: rows
  ``(i // 4) * 4*(BM/TM) + 4*tx + i % 4`` and likewise columns, i.e. runs of 4 contiguous rows
  (columns) spaced a quarter (half) tile apart, so each run is one 128-bit shared load.
- **Shared memory.** ``As[2, BK, BM + pad]`` and ``Bs[2, BK, BN + pad]``, reduction-major, two
  buffers. A slice is gathered into registers (``LA = BM*BK/threads`` values of A, ``LB`` of
  B per thread) and stored either *m-fast* (consecutive threads take consecutive rows: for
  operands contiguous along m) or *k-fast* (consecutive threads take consecutive k: for
  operands contiguous along k; those rows are padded by 4 so the column-wise stores spread
  over all banks while each run of 4 stays 16-byte aligned).
- **Loop.** Slice 0 is gathered and stored before the loop; step ``s`` issues the global
  loads of slice ``s + 1`` into registers, multiplies slice ``s`` from buffer ``s & 1`` (the
  ``BK`` steps unrolled at compile time, ``TM*TN`` FMAs each), stores the prefetched slice into
  the other buffer and waits at one barrier. Every index is an unsigned 32-bit value, so no
  negative-index wraparound code is emitted.
- **Gathers.** ``gather(ctx, s, regs, t)`` fills ``regs`` with the values of slice ``s`` at the
  positions :func:`positions` gives (0 outside the matrix: both ends of every index guarded);
  ``ctx`` is a tuple of the kernel's arrays and per-thread constants, computed once per tile.

Kernels must be compiled with every helper inline (``inline="always"``): ``compile_ptx`` then
needs no GPU and the SASS has no ``CALL``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numba_cnn._cuda import SIMULATOR, cuda, types

uint32 = types.uint32  # the active front end's types (numba-cuda or numba-cuda-mlir)

#: byte alignment of the shared tiles (16: 128-bit loads); the simulator takes no alignment
ALIGN = None if SIMULATOR else 16
PAD = 4  # extra elements per k-fast shared row: conflict-free stores, rows stay 16-byte aligned


#: registers a thread may use: 128 = 512 threads (16 warps) per SM, as register-blocked SGEMMs run
MAX_REGS = 128


def inline(fn):
    """A device function inlined into its caller (compiles without a GPU, no CALL)."""
    return cuda.jit(device=True, inline="always")(fn)


@inline
def guarded_load(arr, idx, ok, zero):
    """``arr[idx]`` where ``ok``, else ``zero``, without a branch: the load reads ``arr[0]``
    when not ``ok`` (a select, so the gathers carry no divergent branches)."""
    v = arr[idx if ok else uint32(0)]
    return v if ok else zero


def jit_options(tile: Tile) -> dict:
    """``compile_ptx``/``cuda.jit`` options of a kernel on ``tile``: launch bounds that cap
    the registers at MAX_REGS (ptxas: 65536 / (threads * min blocks per SM))."""
    return {"launch_bounds": (tile.threads, 65536 // (tile.threads * MAX_REGS))}


def kernel(fn, tile: Tile):
    """``cuda.jit`` of a kernel on ``tile`` (the simulator takes no launch bounds)."""
    return cuda.jit(fn) if SIMULATOR else cuda.jit(fn, **jit_options(tile))


@dataclass(frozen=True)
class Tile:
    """A block tile ``bm x bn`` reduced in slices of ``bk``; ``tm x tn`` outputs per thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def name(self) -> str:
        return f"{self.bm}x{self.bn}"

    @property
    def mt(self) -> int:  # threads along m
        return self.bm // self.tm

    @property
    def threads(self) -> int:
        return self.mt * (self.bn // self.tn)

    def loads(self, rows: int) -> int:
        """Values of an operand with ``rows`` tile rows each thread gathers per slice."""
        return rows * self.bk // self.threads


#: Tile variants per dtype, largest first; the launchers pick one (``pick_tile``).
TILES: dict[str, tuple[Tile, ...]] = {
    "float32": (Tile(128, 128, 8, 8, 8), Tile(128, 64, 8, 8, 8), Tile(64, 32, 8, 8, 4)),
    "float64": (Tile(64, 64, 8, 4, 4), Tile(32, 32, 8, 4, 4)),
}
for _tiles in TILES.values():
    for _t in _tiles:  # the gathers rely on each thread keeping one row of an m-fast slice
        assert _t.threads % _t.bm == 0 and _t.threads % _t.bn == 0 and _t.tm % 4 == 0
        assert _t.tn % 4 == 0 and _t.bm * _t.bk % _t.threads == 0

#: Tests set this to a tile name ("128x64") to force that variant on every launch.
FORCE: str | None = None
#: Enough blocks to fill a large GPU (132 SMs) about once: below it, a smaller tile.
FILL_BLOCKS = 132


def tile_by_name(dtype: np.dtype | str, name: str) -> Tile:
    for t in TILES[np.dtype(dtype).name]:
        if t.name == name:
            return t
    raise KeyError(f"no {name} tile for {np.dtype(dtype).name}")


def pick_tile(dtype: np.dtype | str, M: int, N: int, batches: int = 1) -> Tile:
    """The largest tile that leaves at most a quarter of it idle in the n direction and still
    makes ``FILL_BLOCKS`` blocks (``batches`` independent GEMMs share the grid); else the
    smallest."""
    if FORCE is not None:
        return tile_by_name(dtype, FORCE)
    tiles = TILES[np.dtype(dtype).name]
    for t in tiles[:-1]:
        waste_n = -(-N // t.bn) * t.bn - N
        blocks = -(-M // t.bm) * -(-N // t.bn) * batches
        if 4 * waste_n <= t.bn and blocks >= FILL_BLOCKS:
            return t
    return tiles[-1]


def positions(tile: Tile, kfast: bool, rows: int):
    """``pos(t, i) -> (kk, row)``: where value ``i`` a thread gathers lands in the slice of an
    operand with ``rows`` tile rows. m-fast: ``row = t % rows`` is fixed per thread and ``kk``
    steps by ``threads // rows``; k-fast: ``kk = t % BK`` is fixed, ``row`` steps by
    ``threads // BK``."""
    BK, NT = tile.bk, tile.threads
    if kfast:

        @inline
        def pos(t, i):
            e = uint32(t + uint32(NT * i))
            return uint32(e % uint32(BK)), uint32(e // uint32(BK))

    else:

        @inline
        def pos(t, i):
            e = uint32(t + uint32(NT * i))
            return uint32(e // uint32(rows)), uint32(e % uint32(rows))

    return pos


# The one main loop. A kernel is this text with the consumer's parameter list; everything
# consumer-specific happens in its inline prologue, gathers and epilogue.
_MAIN = """
def {name}({params}):
    As = cuda.shared.array(SA, ft, ALIGN)  # [buffer, k, m]: two slices of A
    Bs = cuda.shared.array(SB, ft, ALIGN)  # [buffer, k, n]: two slices of B
    acc = cuda.local.array((TM, TN), ft)
    ra = cuda.local.array(LA, ft)
    rb = cuda.local.array(LB, ft)
    t = uint32(cuda.threadIdx.x)
    nk, ctx_a, ctx_b, ctx_e = prologue({params}, t)
    arow = uint32(uint32(4) * uint32(t % uint32(MT)))
    bcol = uint32(uint32(4) * uint32(t // uint32(MT)))
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = ft(0)
    if nk > 0:
        gather_a(ctx_a, uint32(0), ra, t)
        gather_b(ctx_b, uint32(0), rb, t)
        stash_a(As, uint32(0), ra, t)
        stash_b(Bs, uint32(0), rb, t)
    cuda.syncthreads()  # slice 0 is in buffer 0 before anyone multiplies it
    for s in range(nk):
        buf = uint32(uint32(s) & uint32(1))
        nxt = uint32(uint32(s) + uint32(1))
        more = nxt < nk
        if more:  # the next slice's global loads are in flight during the FMAs
            gather_a(ctx_a, nxt, ra, t)
            gather_b(ctx_b, nxt, rb, t)
        # the BK steps of the slice, unrolled: one call per step with a literal kk
{steps}
        if more:
            stash_a(As, uint32(buf ^ uint32(1)), ra, t)
            stash_b(Bs, uint32(buf ^ uint32(1)), rb, t)
        cuda.syncthreads()  # slice s+1 is stored, and buffer s&1 is free to overwrite
    epilogue(acc, t, ctx_e)
"""


def make_kernel(
    name: str,
    params: str,
    tile: Tile,
    ft,
    prologue,
    gather_a,
    a_kfast: bool,
    gather_b,
    b_kfast: bool,
    epilogue,
):
    """A GEMM kernel ``name(params)`` on ``tile``, jitted (``kernel``).

    ``prologue(*params, t) -> (nk, ctx_a, ctx_b, ctx_e)``: slice count and the contexts
    (tuples of arrays and per-thread constants, computed once per tile) handed to
    ``gather_a/b(ctx, s, regs, t)`` and ``epilogue(acc, t, ctx_e)``. The main loop is
    ``_MAIN``: written once, instantiated per parameter list (Numba kernels take no ``*args``;
    inlining the loop as a device function instead made each compile 2-3x slower)."""
    BK, TM, TN = tile.bk, tile.tm, tile.tn
    MT = tile.mt
    LA, LB = tile.loads(tile.bm), tile.loads(tile.bn)
    a_pos = positions(tile, a_kfast, tile.bm)
    b_pos = positions(tile, b_kfast, tile.bn)

    @inline
    def stash_a(As, buf, ra, t):
        for i in range(LA):
            kk, r = a_pos(t, i)
            As[buf, kk, r] = ra[i]

    @inline
    def stash_b(Bs, buf, rb, t):
        for i in range(LB):
            kk, r = b_pos(t, i)
            Bs[buf, kk, r] = rb[i]

    SA, SB = shared_shapes(tile, a_kfast, b_kfast)
    ns = dict(
        cuda=cuda,
        uint32=uint32,
        ft=ft,
        ALIGN=ALIGN,
        SA=SA,
        SB=SB,
        TM=TM,
        TN=TN,
        LA=LA,
        LB=LB,
        MT=MT,
        prologue=prologue,
        gather_a=gather_a,
        gather_b=gather_b,
        stash_a=stash_a,
        stash_b=stash_b,
        epilogue=epilogue,
        step=_step(tile, ft),
    )
    steps = "\n".join(f"        step(As, Bs, buf, {kk}, acc, arow, bcol)" for kk in range(BK))
    src = _MAIN.format(name=name, params=params, steps=steps)
    exec(compile(src, f"<gemm core: {name}>", "exec"), ns)  # noqa: S102 - our template only
    return kernel(ns[name], tile)


def _step(tile: Tile, ft):
    """``step(As, Bs, buf, kk, acc, arow, bcol)``: step ``kk`` of a slice: load the thread's
    ``TM`` values of A (runs of 4 at ``arow + AG*g``: one 128-bit load each) and ``TN`` of B,
    then ``TM*TN`` FMAs. ``_MAIN`` calls it once per kk with a literal kk (Numba does not
    unroll loops, and LLVM leaves an 8-step loop of 64 FMAs rolled)."""
    TM, TN, MT = tile.tm, tile.tn, tile.mt
    AG = 4 * MT  # distance between a thread's runs of 4 rows
    BG = 4 * (tile.threads // MT)  # ... and of 4 columns

    @inline
    def step(As, Bs, buf, kk, acc, arow, bcol):
        fa = cuda.local.array(TM, ft)
        fb = cuda.local.array(TN, ft)
        for g in range(TM // 4):
            for c in range(4):
                fa[4 * g + c] = As[buf, kk, arow + (AG * g + c)]
        for g in range(TN // 4):
            for c in range(4):
                fb[4 * g + c] = Bs[buf, kk, bcol + (BG * g + c)]
        for i in range(TM):
            for j in range(TN):
                acc[i, j] += fa[i] * fb[j]

    return step


def shared_shapes(tile: Tile, a_kfast: bool, b_kfast: bool) -> tuple[tuple, tuple]:
    """Shapes of ``As`` and ``Bs``: two buffers, reduction-major, k-fast rows padded."""
    return (
        (2, tile.bk, tile.bm + (PAD if a_kfast else 0)),
        (2, tile.bk, tile.bn + (PAD if b_kfast else 0)),
    )


def out_index(tile: Tile):
    """``rc(t, i, j) -> (row, col)`` of a thread's output ``acc[i, j]`` within the tile."""
    MT, NTN = tile.mt, tile.threads // tile.mt

    @inline
    def rc(t, i, j):
        tx = uint32(t % uint32(MT))
        ty = uint32(t // uint32(MT))
        row = uint32(uint32((i // 4) * 4 * MT + i % 4) + uint32(uint32(4) * tx))
        col = uint32(uint32((j // 4) * 4 * NTN + j % 4) + uint32(uint32(4) * ty))
        return row, col

    return rc
