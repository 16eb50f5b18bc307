"""Count what a piece of host code does to the GPU: kernel launches, device allocations,
host<->device copies and synchronisations (a test and benchmark utility, not library code).

    with count_device_work() as c:
        train_step()
    c.launches, c.allocs, c.copies, c.syncs, c.names

Under the CUDA simulator it wraps the simulator's kernel dispatch and device-array class
(element writes and scalar reads of device arrays from the host count as copies); on a GPU it
wraps numba-cuda's dispatcher and ``DeviceNDArray`` (``copy_to_host``, ``copy_to_device``,
host element access) and ``cuda.synchronize``. ``allocs`` counts device arrays created
(``cuda.device_array``, ``device_array_like``, ``to_device``); whether they reach the driver
is the pool's business (``nc.memory_stats()``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from numba_cnn import _cuda


@dataclass
class DeviceWork:
    launches: int = 0
    allocs: int = 0
    copies: int = 0
    syncs: int = 0
    names: Counter = field(default_factory=Counter)  # launches per kernel name
    copy_kinds: Counter = field(default_factory=Counter)


def _patch(stack: contextlib.ExitStack, owner: object, name: str, wrap) -> None:
    original = getattr(owner, name)
    setattr(owner, name, wrap(original))
    stack.callback(setattr, owner, name, original)


@contextlib.contextmanager
def count_device_work() -> Iterator[DeviceWork]:
    """Count the device work done inside the ``with`` block (see the module doc)."""
    w = DeviceWork()
    with contextlib.ExitStack() as stack:
        if _cuda.SIMULATOR:
            _sim_hooks(stack, w)
        else:
            _gpu_hooks(stack, w)
        yield w


def _copy(w: DeviceWork, kind: str) -> None:
    w.copies += 1
    w.copy_kinds[kind] += 1


def _sim_hooks(stack: contextlib.ExitStack, w: DeviceWork) -> None:
    from numba.cuda.simulator import kernel as K
    from numba.cuda.simulator.cudadrv import devicearray as D

    host = lambda: K._kernel_context is None  # not inside a simulated kernel

    def launch(orig):
        def call(self, *args):
            if not self._device and host():
                w.launches += 1
                w.names[getattr(self.fn, "__name__", "?")] += 1
            return orig(self, *args)

        return call

    def counted(kind, pred=lambda *a: True):
        def wrap(orig):
            def f(*args, **kw):
                if host() and pred(*args, **kw):
                    _copy(w, kind)
                return orig(*args, **kw)

            return f

        return wrap

    def alloc(orig):
        def f(*args, **kw):
            w.allocs += 1
            return orig(*args, **kw)

        return f

    def scalar_read(orig):
        def f(self, idx):
            r = orig(self, idx)
            if host() and not isinstance(r, D.FakeCUDAArray):
                _copy(w, "scalar read")
            return r

        return f

    _patch(stack, K.FakeCUDAKernel, "__call__", launch)
    _patch(stack, D.FakeCUDAArray, "copy_to_host", counted("d2h"))
    _patch(stack, D.FakeCUDAArray, "copy_to_device", counted("h2d"))
    _patch(stack, D.FakeCUDAArray, "__setitem__", counted("element write"))
    _patch(stack, D.FakeCUDAArray, "__getitem__", scalar_read)
    cuda = _cuda.cuda
    for name in ("device_array", "device_array_like"):
        _patch(stack, cuda, name, alloc)
    _patch(stack, cuda, "to_device", lambda o: counted("h2d")(alloc(o)))
    _patch(stack, cuda, "synchronize", _sync(w))


def _sync(w: DeviceWork):
    def wrap(orig):
        def f(*args, **kw):
            w.syncs += 1
            return orig(*args, **kw)

        return f

    return wrap


def _gpu_hooks(stack: contextlib.ExitStack, w: DeviceWork) -> None:
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import devicearray as D

    def launch(orig):
        def call(self, *args, **kw):
            w.launches += 1
            w.names[getattr(self.py_func, "__name__", "?")] += 1
            return orig(self, *args, **kw)

        return call

    def counted(kind):
        def wrap(orig):
            def f(*args, **kw):
                _copy(w, kind)
                if kind == "d2h":
                    w.syncs += 1  # a device-to-host copy waits for the queued work
                return orig(*args, **kw)

            return f

        return wrap

    def scalar_read(orig):
        def f(self, item):
            r = orig(self, item)
            if not getattr(r, "__cuda_ndarray__", False):
                _copy(w, "scalar read")
                w.syncs += 1
            return r

        return f

    def alloc(orig):
        def f(*args, **kw):
            w.allocs += 1
            return orig(*args, **kw)

        return f

    cuda = _cuda.cuda
    for name in ("device_array", "device_array_like", "to_device"):  # to_device's copy: below
        _patch(stack, cuda, name, alloc)
    _patch(stack, dispatcher.CUDADispatcher, "call", launch)
    _patch(stack, D.DeviceNDArray, "__getitem__", scalar_read)
    _patch(stack, D.DeviceNDArray, "copy_to_host", counted("d2h"))
    _patch(stack, D.DeviceNDArray, "copy_to_device", counted("h2d"))
    _patch(stack, D.DeviceNDArray, "__setitem__", counted("element write"))
    _patch(stack, _cuda.cuda, "synchronize", _sync(w))
