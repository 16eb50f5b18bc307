"""A blocking ``syncthreads`` for Numba's CUDA simulator (tests only).

The simulator runs each thread of a block as a Python thread. Its ``BlockManager.run`` finds
out that every live thread of the block waits in ``syncthreads()`` by polling them in a busy
loop that holds the GIL: the threads doing the work get the interpreter only between polls
(the suite used to shrink the switch interval to 0.1 ms for that, and the switching itself
then costs as much again). ``install()`` replaces the poll with a condition variable: a thread
that reaches ``syncthreads()`` counts itself in and sleeps; the last live thread to arrive (or
a thread whose exit leaves only waiting ones) wakes the block. The semantics are the
simulator's: the barrier releases when every thread of the block that has not returned waits
in it, the first exception in a thread is raised by the launch with the simulator's message,
and the other threads are aborted (``abort`` set, ``RuntimeError`` at their next barrier).
A simulator without the pieces this relies on is left as it is.
"""

from __future__ import annotations

import threading

import numpy as np


class _Barrier:
    __slots__ = ("cond", "alive", "waiting", "generation", "failed")

    def __init__(self, threads: int) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.alive = threads  # threads of the block that have not returned
        self.waiting = 0  # of those, waiting in syncthreads()
        self.generation = 0  # bumped on each release
        self.failed: list = []  # threads that raised

    def release_if_all_wait(self) -> None:  # with cond held
        if self.alive and self.waiting == self.alive:
            self.waiting = 0
            self.generation += 1
            self.cond.notify_all()


def install() -> bool:
    """Patch the simulator in this process; False (nothing patched) if its layout differs."""
    try:
        from numba.cuda.simulator import kernel as K
    except ImportError:
        return False
    BlockThread, BlockManager = getattr(K, "BlockThread", None), getattr(K, "BlockManager", None)
    if BlockThread is None or BlockManager is None or getattr(BlockManager, "_nc_barrier", False):
        return bool(BlockManager is not None and getattr(BlockManager, "_nc_barrier", False))
    needed = ("_f", "_block_dim", "_debug")
    probe = BlockManager(lambda: None, (1, 1, 1), (1, 1, 1), False)
    if not all(hasattr(probe, a) for a in needed) or not hasattr(BlockThread, "syncthreads"):
        return False

    thread_run = BlockThread.run

    def syncthreads(self) -> None:
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads call")
        bar = self._manager._nc_bar
        with bar.cond:
            gen = bar.generation
            bar.waiting += 1
            bar.release_if_all_wait()
            while bar.generation == gen and not self.abort:
                bar.cond.wait()
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads clear")

    def run_thread(self) -> None:
        try:
            thread_run(self)  # records an exception in self.exception, as the simulator does
        finally:
            bar = self._manager._nc_bar
            with bar.cond:
                bar.alive -= 1
                if self.exception is not None:
                    bar.failed.append(self)
                    bar.cond.notify_all()
                bar.release_if_all_wait()
                if not bar.alive:
                    bar.cond.notify_all()

    def run_block(self, grid_point, *args) -> None:
        def target():
            self._f(*args)

        points = list(np.ndindex(*self._block_dim))
        bar = self._nc_bar = _Barrier(len(points))
        threads = [BlockThread(target, self, grid_point, p, self._debug) for p in points]
        for t in threads:
            t.start()
        with bar.cond:
            while bar.alive and not bar.failed:
                bar.cond.wait()
            if bar.failed:
                for t in threads:  # as the simulator: abort the others, raise the first error
                    t.abort = True
                bar.cond.notify_all()
                exc, tb = bar.failed[0].exception
                raise exc.with_traceback(tb)

    BlockThread.syncthreads = syncthreads
    BlockThread.run = run_thread
    BlockManager.run = run_block
    BlockManager._nc_barrier = True
    return True
