"""Reference 2-D convolution (cross-correlation, PyTorch semantics): explicit padding, then one
einsum per kernel tap (r, s). Plain NumPy, float64.

    y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw]

where ``xp`` is the zero-padded input, ``g = k // (K // groups)`` and ``Cg = C // groups``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

IntPair = int | tuple[int, int]


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv_padding(padding, kernel_hw, dilation, stride) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an int, a pair, "valid" or "same".

    "same" (stride 1 only): total = dilation * (kernel - 1); top = total // 2 and the odd extra
    row/column goes to the bottom/right, as PyTorch does.
    """
    dh, dw = _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if _pair(stride, "stride") != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride!r}")
            th, tw = dh * (kernel_hw[0] - 1), dw * (kernel_hw[1] - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(padding, "padding")
    return ph, ph, pw, pw


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, cg, r, s = w_shape
    if c != cg * groups or k % groups:
        raise ValueError(
            f"groups={groups}: x {tuple(x_shape)} and weight {tuple(w_shape)} disagree"
        )
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    pads = conv_padding(padding, (r, s), dilation, stride)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    p = (hp - dh * (r - 1) - 1) // sh + 1
    q = (wp - dw * (s - 1) - 1) // sw + 1
    if p < 1 or q < 1:
        raise ValueError(f"kernel {(r, s)} larger than padded input {(hp, wp)}")
    return (sh, sw), (dh, dw), pads, (hp, wp), (p, q)


def conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """y (N, K, P, Q) from x (N, C, H, W), weight (K, C // groups, R, S), bias (K,).

    >>> conv2d(np.ones((1, 1, 3, 3)), np.ones((2, 1, 2, 2)), padding="same").shape
    (1, 2, 3, 3)
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    (sh, sw), (dh, dw), pads, _, (p, q) = _geometry(
        x.shape, weight.shape, stride, padding, dilation, groups
    )
    xp = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]))
    n, k, cg = x.shape[0], weight.shape[0], weight.shape[1]
    kg = k // groups
    y = np.zeros((n, k, p, q), dtype=np.float64)
    for g in range(groups):
        xg = xp[:, g * cg : (g + 1) * cg]  # (N, Cg, Hp, Wp)
        wg = weight[g * kg : (g + 1) * kg]  # (Kg, Cg, R, S)
        for r in range(weight.shape[2]):
            for s in range(weight.shape[3]):
                win = xg[:, :, r * dh : r * dh + sh * (p - 1) + 1 : sh,
                         s * dw : s * dw + sw * (q - 1) + 1 : sw]  # fmt: skip
                y[:, g * kg : (g + 1) * kg] += np.einsum("ncpq,kc->nkpq", win, wg[:, :, r, s])
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward(
    dy: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx, dw, db) for y = conv2d(x, weight, b, ...); dx is None unless ``need_dx``.

    dw[k, c, r, s] = sum_{n,p,q} dy[n, k, p, q] * xp[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw]
    dxp[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw] += sum_k dy[n, k, p, q] * w[k, c, r, s]
    db[k] = sum_{n,p,q} dy[n, k, p, q]
    """
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    (sh, sw), (dh, dw_), pads, (hp, wp), (p, q) = _geometry(
        x.shape, weight.shape, stride, padding, dilation, groups
    )
    if dy.shape != (x.shape[0], weight.shape[0], p, q):
        raise ValueError(f"dy {dy.shape} != output shape {(x.shape[0], weight.shape[0], p, q)}")
    xp = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]))
    n, c = x.shape[:2]
    k, cg = weight.shape[:2]
    kg = k // groups
    dxp = np.zeros((n, c, hp, wp), dtype=np.float64)
    dw = np.zeros_like(weight)
    for g in range(groups):
        ks, cs = slice(g * kg, (g + 1) * kg), slice(g * cg, (g + 1) * cg)
        for r in range(weight.shape[2]):
            for s in range(weight.shape[3]):
                hs = slice(r * dh, r * dh + sh * (p - 1) + 1, sh)
                ws = slice(s * dw_, s * dw_ + sw * (q - 1) + 1, sw)
                dw[ks, :, r, s] = np.einsum("nkpq,ncpq->kc", dy[:, ks], xp[:, cs, hs, ws])
                dxp[:, cs, hs, ws] += np.einsum("nkpq,kc->ncpq", dy[:, ks], weight[ks, :, r, s])
    dx = dxp[:, :, pads[0] : pads[0] + x.shape[2], pads[2] : pads[2] + x.shape[3]].copy()
    db = dy.sum(axis=(0, 2, 3))
    return (dx if need_dx else None), dw, db
