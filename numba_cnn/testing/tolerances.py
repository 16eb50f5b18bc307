"""One tolerance table, and ``assert_close`` that names the worst element."""

from __future__ import annotations

from typing import Any

import numpy as np

#: |actual - expected| <= atol + rtol * |expected|, chosen by the dtype of ``actual``.
#: float32 covers reductions of a few thousand terms (conv, GEMM) in a different order.
TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float32): (1e-4, 1e-4),  # (rtol, atol)
    np.dtype(np.float64): (1e-9, 1e-10),
}


def _host(a: Any) -> np.ndarray:
    from .._cuda import to_host

    return np.asarray(to_host(a))


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    name: str = "output",
) -> None:
    """Raise ``AssertionError`` naming the worst element unless ``actual`` matches.

    Tolerances come from ``TOLERANCES`` by ``actual``'s dtype (integers must match
    exactly); NaNs must sit in the same places. Device arrays are copied to the host.

    >>> import numpy as np
    >>> assert_close(np.float32([1, 2]), np.array([1.0, 2.00001]))
    """
    a = _host(actual)
    e = _host(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected shape {e.shape}")
    if a.dtype.kind in "iub" and e.dtype.kind in "iub":
        bad = np.argwhere(a != e)
        if bad.size:
            i = tuple(int(v) for v in bad[0])
            raise AssertionError(
                f"{name}: {len(bad)} of {a.size} elements differ; first at {i}: "
                f"actual {a[i]} expected {e[i]}"
            )
        return
    d_rtol, d_atol = TOLERANCES.get(np.dtype(a.dtype), TOLERANCES[np.dtype(np.float32)])
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    nan_a, nan_e = np.isnan(a64), np.isnan(e64)
    if (nan_a != nan_e).any():
        i = tuple(int(v) for v in np.argwhere(nan_a != nan_e)[0])
        raise AssertionError(
            f"{name}: NaN mismatch ({int((nan_a != nan_e).sum())} of {a.size}); first at {i}: "
            f"actual {a[i]} expected {e[i]}"
        )
    with np.errstate(invalid="ignore"):
        err = np.abs(a64 - e64)
        inf_same = np.isinf(a64) & (a64 == e64)
        err = np.where(nan_a | inf_same, 0.0, err)
        excess = err - (atol + rtol * np.abs(np.where(np.isfinite(e64), e64, 0.0)))
    if a.size and (excess > 0).any():
        i = np.unravel_index(int(np.argmax(excess)), a.shape)
        i = tuple(int(v) for v in i)
        raise AssertionError(
            f"{name}: {int((excess > 0).sum())} of {a.size} elements out of tolerance "
            f"(rtol={rtol:g}, atol={atol:g}); worst at {i}: actual {a64[i]!r} "
            f"expected {e64[i]!r} (abs err {err[i]:.3g})"
        )
