"""Shared pieces of the op boundary: argument checks, device dispatch, output allocation.

Every functional op validates here and nowhere else; kernels trust what they are given.

    dev, dtype, (x, w, b) = prepare("conv2d", x=x, weight=weight, bias=bias)
    K = kernels(dev, "conv2d")          # numba_cnn.kernels.cpu.conv2d or .cuda.conv2d
    y = empty((N, K_, P, Q), dtype, dev)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np

from .. import _cuda

#: Tests set this to True: every output allocated by an op is filled with NaN (or a large
#: sentinel for integers) first, so an element a kernel forgets to write shows up.
POISON = False

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = _FLOATS


def _where(a: Any) -> str:
    return "device" if _cuda.is_device_array(a) else "host"


def dtype_of(a: Any) -> np.dtype:
    """The NumPy dtype of a NumPy, Numba device, CuPy or PyTorch array. A PyTorch tensor's
    ``.dtype`` (``torch.float32``) is no NumPy dtype: read its ``__cuda_array_interface__``."""
    try:
        return np.dtype(a.dtype)
    except TypeError:
        cai = getattr(a, "__cuda_array_interface__", None)
        if cai is None:
            raise
        return np.dtype(cai["typestr"])


def prepare(op: str, *, ints: Iterable[str] = (), **arrays: Any) -> tuple[str, np.dtype, list[Any]]:
    """Check an op's array arguments and bring them to one form.

    ``arrays`` are named float arrays (``None`` is passed through); names listed in ``ints``
    must be integer arrays instead. Returns ``(device, dtype, arrays)``: ``"cpu"`` or
    ``"cuda"``, the shared float dtype, and the arrays in the order given, C-contiguous
    (NumPy arrays on the CPU, Numba device arrays on the GPU).
    """
    if not ints:  # the common case, host float arrays of one dtype: checked without the rest
        fast = _prepare_host(arrays.values())
        if fast is not None:
            return fast
    ints = set(ints)
    present = {k: v for k, v in arrays.items() if v is not None}
    for name, a in present.items():
        if not (isinstance(a, np.ndarray) or _cuda.is_device_array(a)):
            raise TypeError(
                f"{op}: {name} must be a NumPy array or a CUDA device array, got {type(a).__name__}"
            )
    places = {name: _where(a) for name, a in present.items()}
    if len(set(places.values())) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in places.items())
        raise TypeError(f"{op}: inputs mix host and device arrays ({where}); move them together")
    device = "cuda" if "device" in places.values() else "cpu"
    if device == "cuda" and not _cuda.available():
        raise RuntimeError(f"{op}: got device arrays but no CUDA GPU is available")

    dtype = None
    first = None
    for name, a in present.items():
        dt = dtype_of(a)
        if name in ints:
            if dt.kind not in "iu":
                raise TypeError(f"{op}: {name} must be an integer array, got dtype {dt}")
            continue
        if dt not in _FLOATS:
            raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {dt}")
        if dtype is None:
            dtype, first = dt, name
        elif dt != dtype:
            raise TypeError(
                f"{op}: {name} has dtype {dt} but {first} has dtype {dtype}; "
                "all inputs of one call must share one float dtype"
            )
    if dtype is None:
        dtype = np.dtype(np.float32)

    out = []
    for _name, a in arrays.items():
        if a is None:
            out.append(None)
        elif device == "cuda":
            out.append(_cuda.as_device_array(a))
        else:
            out.append(np.require(a, requirements="C"))  # keeps 0-d arrays 0-d
    return device, dtype, out


def _prepare_host(arrays: Iterable[Any]) -> tuple[str, np.dtype, list[Any]] | None:
    """``prepare``'s answer when every array is a NumPy array (or None) of one float dtype,
    else None (``prepare`` then checks and explains)."""
    dtype = None
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        if type(a) is not np.ndarray:
            return None
        dt = a.dtype
        if dtype is None:
            if dt not in _FLOATS:
                return None
            dtype = dt
        elif dt != dtype:
            return None
        out.append(a if a.flags.c_contiguous else np.ascontiguousarray(a))
    return "cpu", (dtype if dtype is not None else _FLOATS[0]), out


def plain(*arrays: Any) -> bool:
    """True when every array (None entries aside) is a C-contiguous NumPy array of one float
    dtype: arrays ``prepare`` would hand back as they are. An op's hot path checks this and
    its shapes, and skips ``prepare`` (whose answer would be the same) for a few microseconds
    a call; anything else takes the full path, which checks and explains. Dtypes are compared
    by identity (NumPy's float32 and float64 are singletons; an equal non-canonical dtype
    object just takes the full path)."""
    dt = None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray or not a.flags.c_contiguous:
            return False
        d = a.dtype
        if dt is None:
            if d is not _F32 and d is not _F64:
                return False
            dt = d
        elif d is not dt:
            return False
    return dt is not None


def check_ndim(op: str, name: str, a: Any, ndim: int | tuple[int, ...], layout: str = "") -> None:
    """Raise ``ValueError`` unless ``a`` has rank ``ndim`` (or one of several ranks)."""
    ok = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in ok:
        want = " or ".join(f"{n}-D" for n in ok)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{op}: {name} must be {want}{hint}, got shape {tuple(a.shape)}")


def check_shape(op: str, name: str, a: Any, shape: tuple[int, ...], why: str = "") -> None:
    """Raise ``ValueError`` unless ``a.shape == shape``."""
    if tuple(a.shape) != tuple(shape):
        extra = f" ({why})" if why else ""
        raise ValueError(f"{op}: {name} has shape {tuple(a.shape)}, expected {tuple(shape)}{extra}")


def pair(op: str, name: str, v: Any, *, minimum: int) -> tuple[int, int]:
    """An int or an ``(h, w)`` pair, each at least ``minimum``, as a tuple of two ints."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v), int(v))
    elif (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)
    ):
        t = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if min(t) < minimum:
        kind = "positive" if minimum >= 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {kind}, got {v!r}")
    return t


def dim_index(op: str, dim: Any, ndim: int) -> int:
    """Normalise a possibly negative ``dim`` for an array of rank ``ndim``."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: dim {dim} is out of range for a {ndim}-D input")
    return int(dim) % ndim


def empty(shape: tuple[int, ...], dtype: Any, device: str) -> Any:
    """An output array on ``device``; poisoned in tests (see ``POISON``)."""
    if device == "cpu" and not POISON:
        return np.empty(shape, dtype=dtype)
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if device == "cuda":
        if POISON:
            return _cuda.cuda.to_device(_poisoned(shape, dtype))
        return _cuda.cuda.device_array(shape, dtype=dtype)
    if POISON:
        return _poisoned(shape, dtype)
    return np.empty(shape, dtype=dtype)


def zeros(shape: tuple[int, ...], dtype: Any, device: str) -> Any:
    """A zero-filled array on ``device`` (for buffers that are accumulated into); on the GPU
    a fill kernel writes the zeros (no host array is uploaded)."""
    dtype = np.dtype(dtype)
    if device == "cuda":
        shape = tuple(int(s) for s in shape)
        a = _cuda.cuda.device_array(shape, dtype=dtype)
        if a.size:
            kernels("cuda", "optim").fill_(a.reshape(a.size), dtype.type(0))
        return a
    return np.zeros(shape, dtype=dtype)


def _poisoned(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype=dtype)
    if dtype.kind == "b":
        return np.ones(shape, dtype=dtype)
    return np.full(shape, np.iinfo(dtype).max // 2 + 7, dtype=dtype)


_KERNELS: dict[tuple[str, str], ModuleType] = {}


def kernels(device: str, name: str) -> ModuleType:
    """The kernel module for op family ``name`` on ``device``: the one dispatch point."""
    mod = _KERNELS.get((device, name))
    if mod is None:
        sub = "cuda" if device == "cuda" else "cpu"
        mod = _KERNELS[(device, name)] = importlib.import_module(f"numba_cnn.kernels.{sub}.{name}")
    return mod


__all__ = [
    "POISON",
    "prepare",
    "plain",
    "dtype_of",
    "check_ndim",
    "check_shape",
    "pair",
    "dim_index",
    "empty",
    "zeros",
    "kernels",
]
