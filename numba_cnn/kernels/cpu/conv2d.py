"""CPU conv2d launchers (the interface the CUDA module implements too).

    y[n, k, p, q] = b[k] + sum_{c,r,s} w[k, c, r, s] * xpad[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw]

Six paths; ``_path`` picks one per pass by the measured rules written there:

- ``winograd`` (``conv2d_winograd``, ``conv2d_winograd_dw``): F(2x2, 3x3) for float32 3x3
  stride-1 convs with many channels, every pass (16 small GEMMs on the micro-kernel,
  transforms fused);
- ``gemm`` (``_gemm_conv``): implicit im2col on the packed GEMM micro-kernel, every pass,
  any stride, dilation, padding and groups;
- ``direct`` (``conv2d_direct``, ``conv2d_direct_dw``): stride-1 kernels on the padded "wide"
  rows (few channels); dx is the same kernel on dy with flipped weights;
- ``pixels`` (``conv2d_pixels``): tiles of 6 output pixels x 16 channels with x read in
  place (12-16 output channels: a tile fills the vector lanes), forward at any stride and
  the stride-1 data gradient;
- ``rows`` (``conv2d_rows``): stride-1 forward and data gradient for 6-12 channels on the
  GEMM micro-kernel with 8-pixel row panels read in place (rows of at least 8 pixels);
- ``im2col``: an explicit column matrix + BLAS per group, only when forced (``FORCE``): the
  GEMM path replaced it, and OpenBLAS's spinning threads slow the next ``prange`` op.

Launchers take preallocated outputs from the op (``numba_cnn.ops.conv2d``) and trust them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import _gemm_conv as g_
from . import conv2d_direct as d_
from . import conv2d_direct_dw as dd_
from . import conv2d_im2col as k_
from . import conv2d_pixels as px_
from . import conv2d_rows as rows_
from . import conv2d_winograd as wg_
from . import conv2d_winograd_dw as wgd_
from ._gemm import workspace

#: Columns of half a GEMM panel (``conv2d_rows.QMIN``): rows of a multiple of this many
#: pixels are read in place by the GEMM path.
_HALF = rows_.QMIN

#: Path choice: None picks per shape; "gemm", "im2col", "direct", "pixels", "rows" or
#: "winograd" force one (tests cover every path; "winograd" applies to float32 3x3 kernels at
#: stride 1 and dilation 1, the weight gradient with groups 1 only, else as "direct");
#: "direct" and "rows" apply to stride 1 only, else "gemm";
#: "rows" to rows of >= 8 pixels, else "direct"; "pixels" to the forward and the stride-1
#: data gradient, the weight gradient then "direct" at stride 1, else "gemm").
FORCE: str | None = None

#: Channels on both sides of a 3x3 stride-1 product from which Winograd F(2x2, 3x3) runs.
WINO_MIN = 32


def _workspace(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """``_gemm.workspace`` (per thread, reused, grown when too small) in ``shape``."""
    return workspace(name, math.prod(shape), dtype).reshape(shape)


def _path(
    pass_: str, stride, Kg: int, Co: int, plane: int, Q: int, taps: int = 0, k3: bool = False
) -> str:
    """The path of one pass ("fwd", "dx", "dw"): Kg output channels a group (fwd), Co output
    channels a group of the pass's GEMM (Kg for fwd and dw, C // groups for dx), plane the
    output pixels a sample of the pass (P*Q, or H*W for dx), Q output columns (fwd), taps the
    products summed into each output (Cg*R*S in the forward).

    Measured rule (AMD EPYC znver1, 2026-11-30, one thread, process CPU time of each path,
    ms fwd / dx / dw, after the GEMM epilogue, dot-product dw and max-pool changes, unless
    noted; the Winograd rule, checked first, comes last):
    - dw, stride 1: direct (the dot-product micro-kernel) on every shape measured:
      (64,32,16,16)->64 21.1 against gemm 28.4; (64,3,32,32)->32 8.8 / 12.1;
      (64,1,28,28)->6 1.2 / 3.5; (64,6,14,14)->16 1.7 / 2.7; (8,64,56,56)->64 52 / 77;
      (32,64,16,16)->128 37 / 47; (64,32,32,32)->64 75 / 107;
    - fwd, 12-16 output channels a group and >= 64 taps: pixels (2026-11-30, two threads,
      wall ms pixels / the "kv" kernel it replaced / direct / gemm: (64,6,14,14)->16 k5
      0.443 / 0.709 / 0.779 / 0.856; (16,16,28,28)->16 k3 1.05 / 1.43 / 1.26 / 1.25;
      (64,8,7,7)->16 k3 0.227 / 0.299 / 0.309 / 0.358; (8,32,32,32)->16 k3 1.34 / 1.66 /
      1.47 / 1.23); with fewer taps the tile's scattered stores dominate: (64,3,32,32)->16
      k3 3.06 / 2.06 / 1.54 / 1.22, (32,1,28,28)->12 k5 0.58 / 0.69 / 0.41 / 0.41; at
      stride 2 too (pixels / gemm: (64,16,28,28)->16 k3 1.84 / 3.46, (32,8,32,32)->12 k3
      0.67 / 0.97);
    - fwd and dx with >= 32 channels on the GEMM side (Co) and planes <= 1024 pixels: gemm
      ((64,3,32,32)->32 fwd 5.3 against direct 6.6; (64,32,16,16)->64 18.6 / 22.6 against
      22.9 / 25.2; (32,64,16,16)->128 37.7 / 39.5 against 45.5 / 46.7; (64,32,32,32)->64
      73.4 / 89.9 against 86.3 / 90.0); at 56x56 the two tie ((8,64,56,56)->64 61.9 / 63.0
      against 61.5 / 61.7): direct;
    - re-measured after the GEMM learnt to read panels of two half-runs in place (2026-11-30,
      two threads, wall ms gemm / direct): planes over 1024 pixels go to the GEMM when it has
      >= 64 channels and rows a multiple of NR/2 = 8 pixels (no panel packed): (8,64,56,56)->64
      fwd 27.3 / 30.5, dx 27.5 / 30.7; (4,64,40,40)->64 fwd 7.2 / 8.1, dx 7.9 / 8.4; with 32
      channels or other rows direct holds: dx (8,32,48,48)->64 12.5 / 11.9, (4,32,100,100)->32
      fwd 15.9 / 17.4 but dx 13.5 / 13.0, (2,64,60,60)->32 fwd 6.4 / 6.1, dx 4.4 / 4.5;
    - fwd and dx with 6-12 channels on the GEMM side and rows of >= 8 pixels: rows
      ((64,1,28,28)->6 fwd rows 0.80, direct 0.99; (64,6,14,14)->16 dx rows 2.83, direct
      3.32; batch 256: 3.26 / 4.04 and 12.3 / 13.5; rows lose with fewer channels: dx of
      (64,1,28,28)->6 4.1 against 1.9, and to kv at 16: 2.0 against 1.6; to pixels at 12-16
      channels in the forward);
    - other stride-1 passes: direct (few channels: (64,1,28,28)->6 dx direct 1.7, gemm 6.8;
      (64,6,14,14)->16 dx 3.0 against 8.2: the GEMM packs every panel that crosses a row);
    - any other stride: gemm (the direct kernels are stride-1 only).
    A "wide" GEMM (panels over the padded rows, never packed, columns past Q dropped) was
    tried for the small-channel passes and tied with direct (within 8 %): not kept.
    - float32, 3x3, stride 1, dilation 1, >= 32 channels on both sides of the product (dw:
      groups 1): winograd, every pass (2.25x fewer multiply-adds; the transforms cost about
      a third of the time, so with fewer channels they cost what it saves). Two threads,
      wall ms fwd / dx / dw, winograd against the rules above (2026-11-30, after the vectorised
      transforms): (32,64,16,16)->128 12.2 / 15.2 / 15.2 against 22.9 / 18.2 / 21.2;
      (8,64,56,56)->64 20.7 / 21.0 / 24.2 against 28.0 / 27.9 / 28.3; (64,32,32,32)->64
      32.4 / 39.2 / 37.3 against 36.6 / 43.1 / 40.1; (64,32,16,16)->64 8.5 / 9.7 / 10.0
      against 9.2 / 10.9 / 11.5; with 16 channels on one side it loses: (64,16,16,16)->32
      3.5 / 3.9 / 4.0 against 2.8 / 3.5 / 3.2, (64,32,16,16)->16 4.0 / 3.5 / 4.5 against
      3.0 / 2.8 / 3.5, (64,8,32,32)->32 9.5 / 11.8 against 6.3 / 8.9.
    """
    s1 = tuple(stride) == (1, 1)
    if FORCE is not None:
        if FORCE == "winograd" and k3:
            return "winograd"
        if FORCE == "pixels" and (pass_ == "fwd" or pass_ == "dx" and s1):
            return "pixels"
        if FORCE == "rows" and pass_ != "dw":
            return "rows" if s1 and Q >= rows_.QMIN else ("gemm" if not s1 else "direct")
        if FORCE in ("direct", "pixels", "rows", "winograd"):
            return "direct" if s1 else "gemm"
        return FORCE
    if k3 and Co >= WINO_MIN and taps >= 9 * WINO_MIN:
        return "winograd"
    if pass_ == "fwd" and 12 <= Kg <= 16 and taps >= 64:
        return "pixels"
    if not s1:
        return "gemm"
    if pass_ == "dw":
        return "direct"
    if 6 <= Co <= 12 and Q >= rows_.QMIN:
        return "rows"
    if Co >= 32 and plane <= 1024 or Co >= 64 and Q % _HALF == 0:
        return "gemm"
    return "direct"


@lru_cache(maxsize=64)
def _offsets(C: int, R: int, S: int, Hp: int, Wp: int, dh: int, dw: int) -> np.ndarray:
    """Window offsets c*Hp*Wp + r*dh*Wp + s*dw of every tap (c, r, s) in a padded sample
    (cached, read-only)."""
    c = np.arange(C, dtype=np.int64)[:, None, None] * (Hp * Wp)
    r = np.arange(R, dtype=np.int64)[None, :, None] * (dh * Wp)
    t = (c + r + np.arange(S, dtype=np.int64) * dw).reshape(-1)
    t.flags.writeable = False
    return t


def _rows(Wp: int) -> int:
    """Output rows per direct-kernel tile: 16 measured best from 10- to 56-wide planes."""
    return 16


def _k3(w, stride, dilation) -> bool:
    """A float32 3x3 kernel at stride 1 and dilation 1: what Winograd F(2x2, 3x3) serves.
    float64 keeps the direct sums: it is asked for precision (gradient checks), and its
    Winograd builds would add about a minute of compilation (four kernels)."""
    return (
        w.dtype == np.float32
        and w.shape[2:] == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
    )


def _geom(x, w, y_shape):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = y_shape[2], y_shape[3]
    return N, C, H, W, K, Cg, R, S, P, Q


def conv2d_forward(x, w, b, y, stride, pad, dilation, groups) -> None:
    """y (N,K,P,Q) = conv(x (N,C,H,W), w (K,C//groups,R,S)) + b (K,) or no bias."""
    N, C, H, W, K, Cg, R, S, P, Q = _geom(x, w, y.shape)
    Kg, CRS = K // groups, Cg * R * S
    (ph, pw), (dh, dw) = pad, dilation
    path = _path("fwd", stride, Kg, Kg, P * Q, Q, CRS, _k3(w, stride, dilation))
    if path == "winograd" and wg_.conv_forward(x, w, b, y, pad, groups):
        return
    if path == "winograd":  # x or w not finite
        path = "gemm"
    if path == "pixels":
        px_.conv_forward(x, w, b, y, stride, pad, dilation, groups)
        return
    if path == "gemm":
        g_.conv_forward(x, w, b, y, stride, pad, dilation, groups)
        return
    if path == "rows":
        Hp, Wp = P + dh * (R - 1), Q + dw * (S - 1)
        rows_.conv_rows(x, w.reshape(K, CRS), b, y, ph, pw, Hp, Wp, dilation, groups, R, S)
        return
    if path == "direct":
        Hp, Wp = P + dh * (R - 1), Q + dw * (S - 1)
        xp = _workspace("xp", (N, C * Hp * Wp + Wp + 16), x.dtype)
        d_.pad_planes(x, xp, ph, pw, Hp, Wp)
        has_b = b is not None
        bb = b if has_b else _workspace("nobias", (K,), x.dtype)
        offs = _offsets(C, R, S, Hp, Wp, dh, dw)
        d_.direct_fwd(xp, w.reshape(K, CRS), bb, has_b, offs, y, Wp, _rows(Wp))
        return
    k_.blas_forward(x, w, b, y, stride, pad, dilation, groups)


def conv2d_backward_data(dy, w, dx, stride, pad, dilation, groups) -> None:
    """dx (N,C,H,W) = transposed conv of dy (N,K,P,Q) with w (K,C//groups,R,S)."""
    N, C, H, W, K, Cg, R, S, P, Q = _geom(dx, w, dy.shape)
    G, Kg = groups, K // groups
    (ph, pw), (dh, dw) = pad, dilation
    path = _path("dx", stride, Kg, C // groups, H * W, W, Kg * R * S, _k3(w, stride, dilation))
    if path == "winograd" and wg_.conv_backward_data(dy, w, dx, pad, groups):
        return
    if path == "winograd":  # dy or w not finite
        path = "gemm"
    if path == "gemm" and tuple(stride) == (1, 1):
        g_.conv_backward_data(dy, w, dx, pad, dilation, groups)
        return
    if path == "pixels":
        px_.conv_backward_data(dy, w, dx, pad, dilation, groups)
        return
    if path == "gemm":
        g_.conv_backward_data_strided(dy, w, dx, stride, pad, dilation, groups)
        return
    if path == "rows":
        eh, ew = dh * (R - 1) + 1, dw * (S - 1) + 1
        wf = _workspace("wflip", (C, Kg * R * S), dy.dtype)
        d_.flip_weights(w, wf, G)
        Hp, Wp = H + eh - 1, W + ew - 1
        top, left = eh - 1 - ph, ew - 1 - pw
        rows_.conv_rows(dy, wf, None, dx, top, left, Hp, Wp, dilation, groups, R, S)
        return
    if path == "direct":
        eh, ew = dh * (R - 1) + 1, dw * (S - 1) + 1
        Hp, Wp = H + eh - 1, W + ew - 1
        dyp = _workspace("dyp", (N, K * Hp * Wp + Wp + 16), dy.dtype)
        d_.pad_planes(dy, dyp, eh - 1 - ph, ew - 1 - pw, Hp, Wp)
        wf = _workspace("wflip", (C, Kg * R * S), dy.dtype)
        d_.flip_weights(w, wf, G)
        offs = _offsets(K, R, S, Hp, Wp, dh, dw)
        nob = _workspace("nobias", (C,), dy.dtype)
        d_.direct_fwd(dyp, wf, nob, False, offs, dx, Wp, _rows(Wp))
        return
    k_.blas_backward_data(dy, w, dx, stride, pad, dilation, groups)


def conv2d_backward_weight(dy, x, dw, db, stride, pad, dilation, groups) -> None:
    """dw (K,C//groups,R,S) = sum over n,p,q of dy * x windows; db (K,) = dy.sum((0,2,3))."""
    N, C, H, W, K, Cg, R, S, P, Q = _geom(x, dw, dy.shape)
    Kg, CRS, PQ = K // groups, Cg * R * S, P * Q
    (ph, pw), (dh, dw_) = pad, dilation
    k3 = _k3(dw, stride, dilation) and groups == 1
    path = _path("dw", stride, Kg, Kg, P * Q, Q, CRS, k3)
    if path == "winograd" and N > 0 and wgd_.conv_backward_weight(dy, x, dw, pad):
        if db is not None:
            k_.bias_grad(dy.reshape(N, K, PQ), db)
        return
    if path == "winograd":  # x or dy not finite
        path = "direct" if tuple(stride) == (1, 1) else "gemm"
    if path == "gemm":
        g_.conv_backward_weight(dy, x, dw, db, stride, pad, dilation, groups)
        return
    if path == "direct" and N > 0:
        Hp, Wp = P + dh * (R - 1), Q + dw_ * (S - 1)
        xp = _workspace("xp", (N, C * Hp * Wp + Wp + 16), x.dtype)
        # wide columns pair dy = 0 with real x values: exact unless x holds inf/NaN, in
        # which case the GEMM path (exact windows) keeps NaN/inf out of taps that never see them
        if d_.pad_planes(x, xp, ph, pw, Hp, Wp) == 0:
            dyw = _workspace("dyw", (N, K, (P * Wp + 15) // 16 * 16), x.dtype)
            sums = _workspace("dysum", (N, K), x.dtype)
            dd_.widen(dy, dyw, Wp, sums)
            if db is not None:
                dd_.sum_parts(sums.reshape(N, K, 1), db.reshape(K, 1))
            nchunk = min(N, 4)
            part = _workspace("dwpart", (nchunk, K, CRS), x.dtype)
            offs = _offsets(C, R, S, Hp, Wp, dh, dw_)
            dd_.direct_dw(dyw, xp, offs, part, nchunk)
            dd_.sum_parts(part, dw.reshape(K, CRS))
            return
        g_.conv_backward_weight(dy, x, dw, db, stride, pad, dilation, groups)
        return
    if db is not None:
        k_.bias_grad(dy.reshape(N, K, PQ), db)
    k_.blas_backward_weight(dy, x, dw, stride, pad, dilation, groups)
