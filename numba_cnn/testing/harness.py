"""Test helpers: random inputs, moving arguments to a device, and a one-line op check.

>>> import numpy as np
>>> from numba_cnn import functional as F
>>> from numba_cnn.testing import reference as R
>>> x = randn((2, 3, 5, 5), seed=1)
>>> check(F.relu, R.relu, x, device="cpu")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._cuda import is_device_array, to_device, to_host
from .tolerances import assert_close


def randn(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0, scale: float = 1.0):
    """Normal random numbers; never all zeros or ones."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def on(device: str, *args: Any) -> Any:
    """Move every NumPy array among ``args`` to ``device`` ("cpu" leaves them as they are).
    One argument gives one value back, several a tuple."""
    out = tuple(to_device(a) if device == "cuda" and isinstance(a, np.ndarray) else a for a in args)
    return out[0] if len(out) == 1 else out


def host(result: Any) -> Any:
    """Copy a result (an array, or a tuple/list of arrays and None) back to NumPy."""
    if isinstance(result, (tuple, list)):
        return type(result)(host(r) for r in result)
    if is_device_array(result):
        return to_host(result)
    return result


def check(
    op: Callable[..., Any],
    ref: Callable[..., Any],
    *args: Any,
    device: str,
    rtol: float | None = None,
    atol: float | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``op`` on ``device`` and ``ref`` on the host with the same arguments; compare
    every output with ``assert_close``. Returns the op's host result."""
    moved = [on(device, a) for a in args]
    got = host(op(*moved, **kwargs))
    exp = ref(*args, **kwargs)
    gl = got if isinstance(got, (tuple, list)) else (got,)
    el = exp if isinstance(exp, (tuple, list)) else (exp,)
    assert len(gl) == len(el), f"{len(gl)} outputs, reference gives {len(el)}"
    for i, (g, e) in enumerate(zip(gl, el, strict=False)):
        if e is None:
            assert g is None, f"output {i}: expected None"
            continue
        if is_device_array(g) or isinstance(g, np.ndarray):
            # the op must keep the input's dtype
            first = next(
                (a for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"), None
            )
            if first is not None and np.asarray(g).dtype.kind == "f":
                assert np.asarray(g).dtype == first.dtype, (
                    f"output {i}: dtype {np.asarray(g).dtype}, input dtype {first.dtype}"
                )
        assert_close(g, e, rtol=rtol, atol=atol, name=f"{getattr(op, '__name__', 'op')}[{i}]")
    return got
