"""The benchmark cases: shapes, work counts, and the NumPy and PyTorch peers for each op.

Each case builds its inputs once and returns callables for numba_cnn, NumPy and (when
installed) PyTorch, forward and backward, with the work done (FLOPs or bytes moved).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONV_SHAPES = [  # (N, C, H, W), K, kernel, padding
    ((64, 1, 28, 28), 6, 5, 2),
    ((64, 6, 14, 14), 16, 5, 0),
    ((64, 3, 32, 32), 32, 3, 1),
    ((64, 32, 32, 32), 64, 3, 1),
    ((32, 64, 16, 16), 128, 3, 1),
    ((8, 64, 56, 56), 64, 3, 1),
]


@dataclass
class Case:
    name: str
    unit: str  # "GFLOP/s" or "GB/s"
    work_fwd: float  # FLOPs or bytes
    work_bwd: float
    ours: dict[str, Callable[[], Any]]
    numpy: dict[str, Callable[[], Any]] = field(default_factory=dict)
    torch: dict[str, Callable[[], Any]] = field(default_factory=dict)
    check: Callable[[], float] | None = None  # max abs error of ours vs the NumPy peer


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---------------------------------------------------------------- NumPy peers (im2col + matmul)
def np_conv2d(x: np.ndarray, w: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (R, S), axis=(2, 3))  # N,C,P,Q,R,S
    P, Q = win.shape[2], win.shape[3]
    cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(N * P * Q, C * R * S)
    y = np.matmul(cols, w.reshape(K, -1).T).reshape(N, P, Q, K).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(y), cols


def np_conv2d_backward(dy, x, w, pad, cols):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = dy.shape[2:]
    dym = dy.transpose(0, 2, 3, 1).reshape(-1, K)
    dw = np.matmul(dym.T, cols).reshape(w.shape)
    dcols = np.matmul(dym, w.reshape(K, -1)).reshape(N, P, Q, C, R, S)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    for r in range(R):
        for s in range(S):
            dxp[:, :, r : r + P, s : s + Q] += dcols[..., r, s].transpose(0, 3, 1, 2)
    dx = dxp[:, :, pad : pad + H, pad : pad + W]
    return dx, dw, dy.sum((0, 2, 3))


# ---------------------------------------------------------------- cases
def conv_case(shape, K: int, k: int, pad: int) -> Case:
    from numba_cnn import functional as F

    x = _rng(1).standard_normal(shape, dtype=np.float32)
    C = shape[1]
    w = (_rng(2).standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    b = _rng(3).standard_normal(K).astype(np.float32)
    y = F.conv2d(x, w, b, padding=pad)
    dy = _rng(4).standard_normal(y.shape, dtype=np.float32)
    N, _, P, Q = y.shape
    flops = 2.0 * N * K * P * Q * C * k * k
    cols_box = {}

    def np_fwd():
        out, cols_box["c"] = np_conv2d(x, w, pad)
        return out

    np_fwd()
    case = Case(
        f"conv {shape}->{K} k{k} p{pad}",
        "GFLOP/s",
        flops,
        2 * flops,
        ours={
            "fwd": lambda: F.conv2d(x, w, b, padding=pad),
            "bwd": lambda: F.conv2d_backward(dy, x, w, padding=pad),
        },
        numpy={"fwd": np_fwd, "bwd": lambda: np_conv2d_backward(dy, x, w, pad, cols_box["c"])},
        check=lambda: float(
            np.abs(F.conv2d(x, w, None, padding=pad) - np_conv2d(x, w, pad)[0]).max()
        ),
    )
    torch = _torch()
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        case.torch = {
            "fwd": lambda: torch.nn.functional.conv2d(tx, tw, tb, padding=pad),
            "bwd": lambda: torch.ops.aten.convolution_backward(
                tdy, tx, tw, [K], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, True]
            ),
        }
    return case


def maxpool_case(shape=(64, 32, 32, 32)) -> Case:
    from numba_cnn import functional as F

    x = _rng(5).standard_normal(shape, dtype=np.float32)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    dy = _rng(6).standard_normal(y.shape, dtype=np.float32)
    n_in, n_out = x.size, y.size
    N, C, H, W = shape

    def np_fwd():
        v = x.reshape(N, C, H // 2, 2, W // 2, 2)
        return v.max(axis=(3, 5))

    case = Case(
        f"max-pool 2x2 {shape}",
        "GB/s",
        4.0 * n_in + 12.0 * n_out,  # read x, write y and int64 idx
        12.0 * n_out + 4.0 * n_in,  # read dy and idx, write dx
        ours={
            "fwd": lambda: F.max_pool2d(x, 2, return_indices=True),
            "bwd": lambda: F.max_pool2d_backward(dy, idx, x.shape),
        },
        numpy={"fwd": np_fwd},
        check=lambda: float(np.abs(F.max_pool2d(x, 2) - np_fwd()).max()),
    )
    torch = _torch()
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        _, tidx = torch.nn.functional.max_pool2d(tx, 2, return_indices=True)
        case.torch = {
            "fwd": lambda: torch.nn.functional.max_pool2d(tx, 2, return_indices=True),
            "bwd": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                tdy, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, tidx
            ),
        }
    return case


def relu_case(shape=(64, 32, 32, 32)) -> Case:
    from numba_cnn import functional as F

    x = _rng(7).standard_normal(shape, dtype=np.float32)
    dy = _rng(8).standard_normal(shape, dtype=np.float32)
    n = x.size
    case = Case(
        f"relu {shape}",
        "GB/s",
        8.0 * n,
        12.0 * n,
        ours={"fwd": lambda: F.relu(x), "bwd": lambda: F.relu_backward(dy, x)},
        numpy={"fwd": lambda: np.maximum(x, 0), "bwd": lambda: np.where(x > 0, dy, 0)},
        check=lambda: float(np.abs(F.relu(x) - np.maximum(x, 0)).max()),
    )
    torch = _torch()
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        case.torch = {
            "fwd": lambda: torch.relu(tx),
            "bwd": lambda: torch.ops.aten.threshold_backward(tdy, tx, 0),
        }
    return case


def xent_case(shape) -> Case:
    from numba_cnn import functional as F

    N, Cn = shape
    x = (_rng(9).standard_normal(shape) * 3).astype(np.float32)
    lab = _rng(10).integers(0, Cn, N).astype(np.int64)

    def np_fwd():
        m = x.max(1, keepdims=True)
        lse = np.log(np.exp(x - m).sum(1)) + m[:, 0]
        return (lse - x[np.arange(N), lab]).mean()

    def np_bwd():
        e = np.exp(x - x.max(1, keepdims=True))
        g = e / e.sum(1, keepdims=True)
        g[np.arange(N), lab] -= 1
        return g / N

    case = Case(
        f"softmax+cross-entropy {shape}",
        "GB/s",
        4.0 * x.size,
        8.0 * x.size,
        ours={
            "fwd": lambda: F.cross_entropy(x, lab),
            "bwd": lambda: F.cross_entropy_backward(x, lab),
        },
        numpy={"fwd": np_fwd, "bwd": np_bwd},
        check=lambda: float(abs(float(np.asarray(F.cross_entropy(x, lab))) - np_fwd())),
    )
    torch = _torch()
    if torch is not None:
        tx, tl = torch.from_numpy(x), torch.from_numpy(lab)

        def t_bwd():
            ls = torch.log_softmax(tx, 1)
            gl = torch.ops.aten.nll_loss_backward(
                torch.tensor(1.0), ls, tl, None, 1, -100, torch.tensor(float(N))
            )
            return torch.ops.aten._log_softmax_backward_data(gl, ls, 1, torch.float32)

        case.torch = {"fwd": lambda: torch.nn.functional.cross_entropy(tx, tl), "bwd": t_bwd}
    return case


def linear_case(N=64, fin=400, fout=120) -> Case:
    from numba_cnn import functional as F

    x = _rng(11).standard_normal((N, fin), dtype=np.float32)
    w = (_rng(12).standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
    b = _rng(13).standard_normal(fout).astype(np.float32)
    dy = _rng(14).standard_normal((N, fout), dtype=np.float32)
    flops = 2.0 * N * fin * fout
    case = Case(
        f"linear ({N},{fin})->{fout}",
        "GFLOP/s",
        flops,
        2 * flops,
        ours={"fwd": lambda: F.linear(x, w, b), "bwd": lambda: F.linear_backward(dy, x, w)},
        numpy={
            "fwd": lambda: x @ w.T + b,
            "bwd": lambda: (dy @ w, dy.T @ x, dy.sum(0)),
        },
        check=lambda: float(np.abs(F.linear(x, w, b) - (x @ w.T + b)).max()),
    )
    torch = _torch()
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        case.torch = {
            "fwd": lambda: torch.nn.functional.linear(tx, tw, tb),
            "bwd": lambda: (tdy @ tw, tdy.T @ tx, tdy.sum(0)),
        }
    return case


def all_cases(only: str | None = None) -> list[Callable[[], Case]]:
    makers: list[tuple[str, Callable[[], Case]]] = []
    for shape, K, k, pad in CONV_SHAPES:
        makers.append(("conv", lambda s=shape, K=K, k=k, p=pad: conv_case(s, K, k, p)))
    makers.append(("pool", maxpool_case))
    makers.append(("relu", relu_case))
    makers.append(("xent", lambda: xent_case((256, 10))))
    makers.append(("xent", lambda: xent_case((256, 1000))))
    makers.append(("linear", linear_case))
    makers.append(("linear", lambda: linear_case(64, 4096, 128)))
    makers.append(("linear", lambda: linear_case(256, 512, 1000)))
    return [m for tag, m in makers if only is None or tag in only.split(",")]
