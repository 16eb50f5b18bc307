"""Check a backward function against float64 central differences.

For a random ``dy`` of ``f``'s output shape, the gradient of the scalar ``L = sum(dy * f(*inputs))``
with respect to each checked input is the vector-Jacobian product the backward must return:

    dL/dx[i] ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

>>> import numpy as np
>>> f = lambda x, w: x @ w.T
>>> backward = lambda dy, x, w: (dy @ w, dy.T @ x)
>>> rng = np.random.default_rng(0)
>>> gradcheck(f, (rng.standard_normal((2, 3)), rng.standard_normal((4, 3))), backward)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .harness import host


def _is_float_array(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _output(f: Callable[..., Any], args: list[Any], label: str) -> np.ndarray:
    out = host(f(*args))
    if isinstance(out, (tuple, list)):
        raise TypeError(f"{label}: f must return one array, got a {type(out).__name__}")
    out = np.asarray(out)
    if out.dtype != np.float64:
        raise TypeError(f"{label}: f must return float64 for a gradient check, got {out.dtype}")
    return out


def gradcheck(
    f: Callable[..., Any],
    inputs: Sequence[Any],
    backward: Callable[..., Any],
    *,
    wrt: Sequence[int] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
    name: str = "",
) -> None:
    """Compare ``backward(dy, *inputs)`` with numeric gradients of ``sum(dy * f(*inputs))``.

    ``inputs`` may hold non-array arguments (ints, integer labels); every float array among them
    must be float64. ``wrt`` lists the input positions to check (default: every float array).
    ``backward`` returns one gradient per input (``None`` where not differentiable); device
    arrays are copied to the host. Inputs are never modified. Raises ``AssertionError`` naming
    the input, the worst element, and the analytic and numeric values.
    """
    label = name or getattr(f, "__name__", "f")
    inputs = list(inputs)
    for i, a in enumerate(inputs):
        if _is_float_array(a) and a.dtype != np.float64:
            raise TypeError(f"{label}: input {i} is {a.dtype}; gradcheck needs float64 inputs")
    if wrt is None:
        wrt = [i for i, a in enumerate(inputs) if _is_float_array(a)]
    wrt = list(wrt)
    for i in wrt:
        if not (0 <= i < len(inputs)) or not _is_float_array(inputs[i]):
            raise ValueError(f"{label}: wrt index {i} is not a float64 array input")
    if not wrt:
        raise ValueError(f"{label}: nothing to check (no float64 array inputs)")

    args = [a.copy() if isinstance(a, np.ndarray) else a for a in inputs]
    out = _output(f, args, label)
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(out.shape)
    if out.ndim == 0:
        dy = np.asarray(dy, dtype=np.float64)

    grads = host(backward(dy.copy(), *[a.copy() if isinstance(a, np.ndarray) else a for a in args]))
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) != len(inputs):
        raise ValueError(
            f"{label}: backward returned {len(grads)} gradients for {len(inputs)} inputs"
        )

    def loss(argv: list[Any]) -> float:
        return float(np.sum(dy * _output(f, argv, label)))

    for i in wrt:
        g = grads[i]
        if g is None:
            raise AssertionError(f"{label}: backward gave None for input {i}")
        g = np.asarray(g, dtype=np.float64)
        x = args[i]
        if g.shape != x.shape:
            raise AssertionError(
                f"{label}: gradient of input {i} has shape {g.shape}, input shape {x.shape}"
            )
        num = np.zeros(x.shape, dtype=np.float64)
        for j in np.ndindex(*x.shape):
            orig = x[j]
            x[j] = orig + eps
            lp = loss(args)
            x[j] = orig - eps
            lm = loss(args)
            x[j] = orig
            num[j] = (lp - lm) / (2.0 * eps)
        with np.errstate(invalid="ignore"):
            err = np.abs(g - num)
            excess = np.where(np.isnan(err), np.inf, err - (atol + rtol * np.abs(num)))
        if x.size and (excess > 0).any():
            k = tuple(int(v) for v in np.unravel_index(int(np.argmax(excess)), x.shape))
            raise AssertionError(
                f"{label}: gradient of input {i} (shape {x.shape}) wrong at "
                f"{int((excess > 0).sum())} of {x.size} elements; worst at {k}: "
                f"analytic {float(g[k])!r} numeric {float(num[k])!r} (abs err {err[k]:.3g}, "
                f"rtol={rtol:g}, atol={atol:g})"
            )
