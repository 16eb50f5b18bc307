"""2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``): forward and backward.

Validation, allocation and dispatch; the math is in ``numba_cnn.kernels.{cpu,cuda}.conv2d``.

    y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xpad[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw]

with ``g = k // (K // groups)``, ``Cg = C // groups`` and ``xpad`` the zero-padded input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import check_ndim, check_shape, empty, kernels, pair, prepare

_Pair = int | tuple[int, int]


def _geometry(op: str, x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: Any):
    """Check shapes and options; return ((sh, sw), (top, left), (dh, dw), groups, (N, K, P, Q))."""
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_ndim(op, "weight", w, 4, "(K, C // groups, R, S)")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"{op}: groups must be positive, got {groups}")
    sh, sw = pair(op, "stride", stride, minimum=1)
    dh, dw = pair(op, "dilation", dilation, minimum=1)
    N, C, H, W = (int(v) for v in x.shape)
    K, Cg, R, S = (int(v) for v in w.shape)
    xs, ws = tuple(x.shape), tuple(w.shape)
    if min(K, Cg, R, S) < 1:
        raise ValueError(f"{op}: weight {ws} must have positive K, C // groups, R and S")
    if C % groups:
        raise ValueError(f"{op}: x {xs} has {C} channels, not divisible by groups={groups}")
    if K % groups:
        raise ValueError(
            f"{op}: weight {ws} has {K} output channels, not divisible by groups={groups}"
        )
    if Cg * groups != C:
        raise ValueError(
            f"{op}: x {xs} has {C} channels but weight {ws} with groups={groups} expects "
            f"{Cg} * {groups} = {Cg * groups}"
        )
    eh, ew = dh * (R - 1) + 1, dw * (S - 1) + 1  # dilated kernel extent
    if isinstance(padding, str):
        if padding == "valid":
            top = bottom = left = right = 0
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride={stride!r}")
            top, left = (eh - 1) // 2, (ew - 1) // 2
            bottom, right = eh - 1 - top, ew - 1 - left  # odd extra at the bottom/right
        else:
            raise ValueError(
                f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}"
            )
    else:
        top, left = pair(op, "padding", padding, minimum=0)
        bottom, right = top, left
    hp, wp = H + top + bottom, W + left + right
    if eh > hp or ew > wp:
        raise ValueError(
            f"{op}: kernel {(R, S)} (dilated {(eh, ew)}) is larger than the padded input "
            f"{(hp, wp)} (x {xs}, weight {ws}, padding={padding!r}, dilation={dilation!r})"
        )
    P, Q = (hp - eh) // sh + 1, (wp - ew) // sw + 1
    return (sh, sw), (top, left), (dh, dw), groups, (N, K, P, Q)


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: _Pair = 1,
    padding: _Pair | str = 0,
    dilation: _Pair = 1,
    groups: int = 1,
) -> Any:
    """y (N, K, P, Q) = conv2d of x (N, C, H, W) with weight (K, C // groups, R, S) + bias (K,).

    ``stride``, ``dilation``: int or (h, w) pair >= 1. ``padding``: int or pair >= 0,
    ``"valid"`` (none) or ``"same"`` (stride 1; odd total padding puts the extra row/column at
    the bottom/right, as PyTorch). ``groups`` divides C and K (``groups == C``: depthwise).
    NumPy inputs run on the CPU, device arrays on the GPU; the output lives with the inputs.

    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> w = np.ones((2, 1, 3, 3), dtype=np.float32)
    >>> conv2d(x, w, np.float32([0, 1]), padding=1).shape
    (1, 2, 4, 4)
    >>> conv2d(x, w)[0, 0]
    array([[45., 54.],
           [81., 90.]], dtype=float32)
    """
    op = "conv2d"
    dev, dtype, (x, w, b) = prepare(op, x=x, weight=weight, bias=bias)
    stride_, pad, dil, groups, (N, K, P, Q) = _geometry(op, x, w, stride, padding, dilation, groups)
    if b is not None:
        check_ndim(op, "bias", b, 1, "(K,)")
        check_shape(op, "bias", b, (K,), f"one per output channel of weight {tuple(w.shape)}")
    y = empty((N, K, P, Q), dtype, dev)
    kernels(dev, "conv2d").conv2d_forward(x, w, b, y, stride_, pad, dil, groups)
    return y


def conv2d_backward(
    dy: Any,
    x: Any,
    weight: Any,
    stride: _Pair = 1,
    padding: _Pair | str = 0,
    dilation: _Pair = 1,
    groups: int = 1,
    *,
    need_dx: bool = True,
) -> tuple[Any, Any, Any]:
    """(dx, dw, db) of ``y = conv2d(x, weight, bias, stride, padding, dilation, groups)``.

    ``dy`` is the gradient of the output (N, K, P, Q). ``dx`` (shape of x) is None when
    ``need_dx`` is False (first layer); ``dw`` has weight's shape; ``db = dy.sum((0, 2, 3))``
    is always returned (use it when the layer has a bias, ignore it otherwise).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    >>> w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    >>> dy = np.ones((2, 4, 5, 5), dtype=np.float32)
    >>> dx, dw, db = conv2d_backward(dy, x, w, padding="same")
    >>> dx.shape, dw.shape, db.tolist()
    ((2, 3, 5, 5), (4, 3, 3, 3), [50.0, 50.0, 50.0, 50.0])
    """
    op = "conv2d_backward"
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{op}: need_dx must be a bool, got {need_dx!r}")
    dev, dtype, (dy, x, w) = prepare(op, dy=dy, x=x, weight=weight)
    stride_, pad, dil, groups, (N, K, P, Q) = _geometry(op, x, w, stride, padding, dilation, groups)
    check_ndim(op, "dy", dy, 4, "(N, K, P, Q)")
    check_shape(
        op,
        "dy",
        dy,
        (N, K, P, Q),
        f"the output of x {tuple(x.shape)} with weight {tuple(w.shape)}, stride={stride!r}, "
        f"padding={padding!r}, dilation={dilation!r}, groups={groups}",
    )
    kern = kernels(dev, "conv2d")
    dx = None
    if need_dx:
        dx = empty(tuple(x.shape), dtype, dev)
        kern.conv2d_backward_data(dy, w, dx, stride_, pad, dil, groups)
    dw = empty(tuple(w.shape), dtype, dev)
    db = empty((K,), dtype, dev)
    kern.conv2d_backward_weight(dy, x, dw, db, stride_, pad, dil, groups)
    return dx, dw, db
