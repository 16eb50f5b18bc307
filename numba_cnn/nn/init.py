"""Parameter initialisation as ``torch.nn.init``, drawn from the library's seeded generator
(``nc.manual_seed``). Functions fill NumPy arrays (or ``Parameter.data``) in place.

>>> import numpy as np, numba_cnn as nc
>>> _ = nc.manual_seed(0)
>>> w = np.empty((4, 9), np.float32)
>>> _ = kaiming_uniform_(w, a=5 ** 0.5)  # PyTorch's Linear/Conv2d default: U(+-1/sqrt(fan_in))
>>> bool(np.abs(w).max() <= 1 / 3)
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _cuda, _random

__all__ = [
    "calculate_gain",
    "fan_in_and_fan_out",
    "uniform_",
    "kaiming_uniform_",
    "zeros_",
    "ones_",
]


def _array(t: Any) -> Any:
    return getattr(t, "data", t) if not isinstance(t, np.ndarray) else t


def _fill(t: Any, values: np.ndarray) -> Any:
    a = _array(t)
    if _cuda.is_device_array(a):
        a.copy_to_device(np.ascontiguousarray(values, dtype=a.dtype))
    else:
        a[...] = values
    return t


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """``torch.nn.init.calculate_gain`` for linear/conv, sigmoid, tanh, relu, leaky_relu."""
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape ``(out, in, *kernel)`` as PyTorch computes them."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out need at least 2 dimensions, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def uniform_(t: Any, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Any:
    """Fill with U(a, b)."""
    rng = generator if generator is not None else _random.generator()
    shape = tuple(_array(t).shape)
    return _fill(t, rng.uniform(a, b, size=shape))


def kaiming_uniform_(
    t: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: Any = None,
) -> Any:
    """Fill with U(-bound, bound), bound = gain * sqrt(3 / fan), as PyTorch."""
    fan_in, fan_out = fan_in_and_fan_out(tuple(_array(t).shape))
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_uniform_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(t, -bound, bound, generator)


def zeros_(t: Any) -> Any:
    return _fill(t, np.zeros(tuple(_array(t).shape)))


def ones_(t: Any) -> Any:
    return _fill(t, np.ones(tuple(_array(t).shape)))


def default_weight_and_bias(weight: Any, bias: Any) -> None:
    """PyTorch's ``reset_parameters`` of Linear and Conv2d: kaiming_uniform_(a=sqrt(5)) for the
    weight (= U(+-1/sqrt(fan_in))), then U(+-1/sqrt(fan_in)) for the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = fan_in_and_fan_out(tuple(_array(weight).shape))
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
