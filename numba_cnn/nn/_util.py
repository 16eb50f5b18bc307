"""Small helpers shared by the layers."""

from __future__ import annotations

from typing import Any

from .. import _cuda


def pair(v: Any) -> Any:
    """PyTorch's ``_pair``: an int becomes ``(v, v)``; strings and pairs pass through."""
    if isinstance(v, str):
        return v
    if isinstance(v, (tuple, list)):
        return tuple(v)
    return (v, v)


def cached(layer: Any, name: str) -> Any:
    """What ``forward`` kept for ``backward``; a clear error when there is none."""
    v = layer.__dict__.get(name)
    if v is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")
    return v


def reshape(a: Any, shape: tuple[int, ...]) -> Any:
    """Reshape a NumPy array or a (C-contiguous) device array without copying."""
    if _cuda.is_device_array(a):
        return _cuda.as_device_array(a).reshape(shape)
    return a.reshape(shape)
