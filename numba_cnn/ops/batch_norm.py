"""Batch normalisation over (N, H, W) per channel, as ``torch.nn.functional.batch_norm``.

Validation, allocation and dispatch; the math is in ``numba_cnn.kernels.{cpu,cuda}.batch_norm``.

    y = (x - mean[c]) * invstd[c] * weight[c] + bias[c],    invstd = 1 / sqrt(var + eps)

training: mean and biased var of the batch; running stats (if given) are updated in place,
    running <- (1 - momentum) * running + momentum * stat, with the unbiased batch variance.
eval:     mean, var = running_mean, running_var (both required, as PyTorch).
x may be (N, C), (N, C, L) or (N, C, H, W); kernels see it as (N, C, L).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _cuda
from ._common import check_ndim, empty, kernels, prepare


def _as3(a: Any) -> Any:
    n, c = int(a.shape[0]), int(a.shape[1])
    return a.reshape(n, c, math.prod(int(v) for v in a.shape[2:]))


def _check_channels(op: str, x: Any, **vecs: Any) -> int:
    check_ndim(op, "x", x, (2, 3, 4), "(N, C), (N, C, L) or (N, C, H, W)")
    C = int(x.shape[1])
    for name, v in vecs.items():
        if v is None:
            continue
        if tuple(v.shape) != (C,):
            raise ValueError(
                f"{op}: {name} has shape {tuple(v.shape)}, expected ({C},) for the C={C} "
                f"channels of x {tuple(x.shape)}"
            )
    return C


def _real(op: str, name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number, got {v!r}")
    return float(v)


def _contiguous(a: Any) -> bool:
    """Whether a 1-D device array is unit-strided (so its memory is updated in place)."""
    cai = a.__cuda_array_interface__ if hasattr(a, "__cuda_array_interface__") else None
    if cai is None:
        return bool(a.is_c_contiguous())
    strides = cai.get("strides")
    return strides is None or a.shape[0] <= 1 or strides[0] == np.dtype(cai["typestr"]).itemsize


def _filled(value: float, C: int, dtype: Any, dev: str) -> Any:
    a = np.full((C,), value, dtype=dtype)
    return _cuda.to_device(a) if dev == "cuda" else a


def batch_norm(
    x: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, Any, Any]:
    """Normalise each channel of x; returns ``(y, save_mean, save_invstd)``.

    ``save_mean``/``save_invstd`` (C,) are what ``batch_norm_backward`` takes: the batch
    statistics in training, ``running_mean`` and ``1/sqrt(running_var + eps)`` in eval.
    In training ``running_mean``/``running_var`` may be None; when given they are updated in
    place (on their device). eps must be positive.

    >>> import numpy as np
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> y, mean, invstd = batch_norm(x, rm, rv, training=True, eps=1e-5)
    >>> np.round(y, 4).tolist(), mean.tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [2.0, 20.0])
    >>> np.round(rm, 4).tolist(), np.round(rv, 4).tolist()  # unbiased var 2, 200; momentum 0.1
    ([0.2, 2.0], [1.1, 20.9])
    """
    op = "batch_norm"
    momentum = _real(op, "momentum", momentum)
    eps = _real(op, "eps", eps)
    if not eps > 0:
        raise ValueError(f"{op}: eps must be positive, got {eps!r}")
    training = bool(training)
    originals = (running_mean, running_var)
    dev, dtype, (x, rm, rv, w, b) = prepare(
        op, x=x, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias
    )
    C = _check_channels(op, x, running_mean=rm, running_var=rv, weight=w, bias=b)
    x3 = _as3(x)
    cnt = int(x3.shape[0]) * int(x3.shape[2])
    if training and cnt <= 1:
        raise ValueError(
            f"{op}: expected more than 1 value per channel when training, got x {tuple(x.shape)}"
        )
    if not training and (rm is None or rv is None):
        raise ValueError(f"{op}: running_mean and running_var must be given when training=False")
    for name, orig in zip(("running_mean", "running_var"), originals, strict=True):
        if orig is not None and dev == "cuda" and not _contiguous(orig):
            raise ValueError(f"{op}: {name} must be contiguous to be updated in place on the GPU")
    K = kernels(dev, "batch_norm")
    mean = empty((C,), dtype, dev)
    invstd = empty((C,), dtype, dev)
    if dev == "cpu":  # the CUDA kernels take None (no upload of ones/zeros)
        w = _filled(1.0, C, dtype, dev) if w is None else w
        b = _filled(0.0, C, dtype, dev) if b is None else b
    y = empty(tuple(x.shape), dtype, dev)
    if training:
        var = empty((C,), dtype, dev)
        if dev == "cuda":  # statistics, running update and normalisation in two launches
            K.train_forward(x3, eps, w, b, mean, var, invstd, _as3(y), (rm, rv, momentum))
            return y, mean, invstd
        K.train_forward(x3, eps, w, b, mean, var, invstd, _as3(y))
        if rm is not None or rv is not None:
            K.update_running(
                rm if rm is not None else empty((C,), dtype, dev),
                rv if rv is not None else empty((C,), dtype, dev),
                mean,
                var,
                momentum,
                cnt,
            )
        for orig, got in zip(originals, (rm, rv), strict=True):
            if dev == "cpu" and got is not None and got is not orig:
                orig[...] = got  # a strided NumPy view was copied by prepare: write back
    else:
        K.eval_forward(x3, rm, rv, eps, w, b, mean, invstd, _as3(y))
    return y, mean, invstd


def batch_norm_backward(
    dy: Any, x: Any, weight: Any, save_mean: Any, save_invstd: Any, *, training: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of ``batch_norm``: ``(dx, dweight, dbias)``, from the ``save_mean`` and
    ``save_invstd`` the forward returned. ``training=True`` differentiates through the batch
    statistics; ``training=False`` treats them as constants (dx = dy * weight * invstd).
    ``weight=None`` means ones; dweight and dbias are returned all the same.

    >>> import numpy as np
    >>> x = np.array([[1.0], [3.0]]); dy = np.array([[1.0], [1.0]])
    >>> dx, dw, db = batch_norm_backward(dy, x, None, np.array([2.0]), np.array([1.0]))
    >>> dx.ravel(), dw, db
    (array([0., 0.]), array([0.]), array([2.]))
    """
    op = "batch_norm_backward"
    dev, dtype, (dy, x, w, sm, si) = prepare(
        op, dy=dy, x=x, weight=weight, save_mean=save_mean, save_invstd=save_invstd
    )
    for name, v in (("save_mean", sm), ("save_invstd", si)):
        if v is None:
            raise TypeError(f"{op}: {name} must be an array (the forward's output), got None")
    C = _check_channels(op, x, weight=w, save_mean=sm, save_invstd=si)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)} but x has shape {tuple(x.shape)}")
    K = kernels(dev, "batch_norm")
    w = _filled(1.0, C, dtype, dev) if w is None and dev == "cpu" else w
    dweight = empty((C,), dtype, dev)
    dbias = empty((C,), dtype, dev)
    dx = empty(tuple(x.shape), dtype, dev)
    K.backward(_as3(dy), _as3(x), sm, si, w, bool(training), _as3(dx), dweight, dbias)
    return dx, dweight, dbias


__all__ = ["batch_norm", "batch_norm_backward"]
