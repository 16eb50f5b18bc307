"""CUDA launchers for linear layers, all on the one tiled GEMM of ``gemm.py``.

y  = x @ w.T + b     gemm(TA=False, TB=True, bias)      x (M, I), w (O, I), y (M, O)
dx = dy @ w          gemm(TA=False, TB=False)           dy (M, O) -> dx (M, I)
dw = dy.T @ x        gemm(TA=True,  TB=False)           -> dw (O, I)
db = sum_m dy[m, :]  deterministic column sum           -> db (O,)
"""

from __future__ import annotations

from .gemm import launch_colsum, launch_gemm


# x (M, I); w (O, I); b (O,) or None -> y (M, O) = x @ w.T + b
def linear_forward(x, w, b, y) -> None:
    launch_gemm(x, w, b, y, ta=False, tb=True)


# dy (M, O); x (M, I); w (O, I) -> dx (M, I), dw (O, I), db (O,)
def linear_backward(dy, x, w, dx, dw, db) -> None:
    launch_gemm(dy, w, None, dx, ta=False, tb=False)
    linear_backward_nodx(dy, x, dw, db)


# dy (M, O); x (M, I) -> dw (O, I), db (O,)
def linear_backward_nodx(dy, x, dw, db) -> None:
    launch_gemm(dy, x, None, dw, ta=True, tb=False)
    launch_colsum(dy, db)


# no ptx_specs here: the kernels live in gemm.py, whose ptx_specs lists every specialisation
