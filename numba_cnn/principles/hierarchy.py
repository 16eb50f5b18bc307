"""Hierarchical features: first-layer filters, feature maps layer by layer, the receptive field
of each conv layer (computed, and measured through the library's backward pass) and the input
patches that most excite a few deep units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import nn
from ..nn._util import pair
from ._common import (
    Config,
    Data,
    accuracy,
    colorbar,
    count_params,
    fit,
    image_grid,
    rnd,
    row_label,
    save_fig,
    seeded,
)

RELU_AFTER_CONV = [1, 3, 6]  # indices of the ReLU after each conv layer of ``deep_cnn``


def deep_cnn(shape: tuple[int, int, int]) -> nn.Sequential:
    """conv16-relu-conv16-relu-pool-conv32-relu-pool-linear (3x3 'same' convs, 2x2 pools)."""
    c, h, _ = shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (h // 4) ** 2, 10),
    )


def _geometry(m: nn.Module) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) along the rows of a conv or pooling layer."""
    if isinstance(m, nn.Conv2d):
        k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
        p = m.padding
        p = (d * (k - 1)) // 2 if p == "same" else 0 if p == "valid" else pair(p)[0]
        return k, s, p, d
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        d = pair(getattr(m, "dilation", 1))[0]
        return pair(m.kernel_size)[0], pair(m.stride)[0], pair(m.padding)[0], d
    if isinstance(m, nn.AdaptiveAvgPool2d):
        raise ValueError("receptive_fields: global pooling has no fixed receptive field")
    return None


def receptive_fields(model: nn.Sequential) -> list[dict[str, int]]:
    """Per conv layer of ``model`` (in order): ``rf`` (receptive field side in input pixels),
    ``jump`` (input pixels between neighbouring outputs) and ``start`` (input row of the first
    pixel that output row 0 sees; negative inside the padding). Rows only: square layers.

    Recursion per layer (kernel k, stride s, padding p, dilation d):
    rf += d*(k-1)*jump; start -= p*jump; jump *= s.

    >>> [r["rf"] for r in receptive_fields(deep_cnn((1, 8, 8)))]
    [3, 5, 10]
    """
    rf, jump, start, out = 1, 1, 0, []
    for m in model:
        g = _geometry(m)
        if g is None:
            continue
        k, s, p, d = g
        rf += d * (k - 1) * jump
        start -= p * jump
        jump *= s
        if isinstance(m, nn.Conv2d):
            out.append({"rf": rf, "jump": jump, "start": start})
    return out


def measured_receptive_fields(model: nn.Sequential, size: int = 48) -> list[int]:
    """The receptive field of each conv layer measured with the library: a copy of the layers
    up to it with all-ones weights, no bias, no activation and average instead of max pooling
    (so no gradient is zero by accident) gets ``dy`` = 1 at one central output; the rows of
    the input gradient that are not zero are the receptive field."""
    layers, out = [], []
    c_in = next(m for m in model if isinstance(m, nn.Conv2d)).in_channels
    for m in model:
        if isinstance(m, nn.Conv2d):
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                             m.dilation, m.groups, bias=False)  # fmt: skip
            conv.weight.data[...] = 1.0
            layers.append(conv)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            layers.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
        if not isinstance(m, nn.Conv2d):
            continue
        probe = nn.Sequential(*layers)
        y = np.asarray(probe(np.ones((1, c_in, size, size), np.float32)))
        dy = np.zeros_like(y)
        dy[0, 0, y.shape[2] // 2, y.shape[3] // 2] = 1.0
        dx = np.asarray(probe.backward(dy))
        rows = np.flatnonzero(np.abs(dx[0]).sum((0, 2)) > 0)
        out.append(int(rows[-1] - rows[0] + 1))
    return out


def activations(model: nn.Sequential, x: np.ndarray) -> list[np.ndarray]:
    """The maps after each conv layer's ReLU, for a batch ``x``."""
    out = []
    for i, m in enumerate(model):
        x = m(x)
        if i in RELU_AFTER_CONV:
            out.append(np.asarray(x))
    return out


def top_patches(
    model: nn.Sequential, x: np.ndarray, y: np.ndarray, layer: int, units: int, k: int
) -> list[dict[str, Any]]:
    """For the ``units`` channels of conv layer ``layer`` with the highest activation over
    ``x``: the ``k`` input windows (one per image) that excite each channel most."""
    model.eval()
    a = activations(model, x)[layer]  # (N, K, P, Q)
    geo = receptive_fields(model)[layer]
    rf, jump, start = geo["rf"], geo["jump"], geo["start"]
    pad = max(0, -start) + rf
    xp = np.pad(x[:, 0], ((0, 0), (pad, pad), (pad, pad)))
    peak = a.reshape(a.shape[0], a.shape[1], -1)
    best_ch = np.argsort(-peak.max((0, 2)), kind="stable")[:units]
    res = []
    for ch in best_ch:
        per_image = peak[:, ch].max(1)
        imgs = np.argsort(-per_image, kind="stable")[:k]
        patches = []
        for n in imgs:
            r, c = divmod(int(peak[n, ch].argmax()), a.shape[3])
            r0, c0 = start + r * jump + pad, start + c * jump + pad
            patches.append(xp[n, r0 : r0 + rf, c0 : c0 + rf])
        res.append(
            {
                "layer": f"conv{layer + 1}",
                "channel": int(ch),
                "max_activation": rnd(per_image[imgs[0]], 4),
                "top_labels": [int(y[n]) for n in imgs],
                "patches": patches,
            }
        )
    return res


def run(data: Data, cfg: Config, out: Path) -> tuple[dict[str, Any], list[str]]:
    """Train ``deep_cnn`` and look inside it; writes three figures."""
    model = seeded(cfg, lambda: deep_cnn(data.shape))
    hist = fit(model, data, cfg, epochs=cfg.epochs)
    cfg.cache["deep"] = model
    geo = receptive_fields(model)
    units = 2 if cfg.quick else 4
    tops = [u for layer in (1, 2) for u in top_patches(model, data.xte, data.yte, layer, units, 6)]
    res = {
        "model": "conv16-relu-conv16-relu-maxpool2-conv32-relu-maxpool2-linear",
        "params": count_params(model),
        "test_accuracy": rnd(accuracy(model, data.xte, data.yte)),
        "final_train_loss": rnd(hist["epoch_loss"][-1]),
        "receptive_field": [g["rf"] for g in geo],
        "receptive_field_measured": measured_receptive_fields(model),
        "jump": [g["jump"] for g in geo],
        "top_units": [{k: v for k, v in u.items() if k != "patches"} for u in tops],
    }
    figs = [plot_filters(model, out), plot_maps(model, data, geo, out), plot_patches(tops, out)]
    return res, figs


def plot_filters(model: nn.Sequential, out: Path) -> str:
    w = np.asarray(model[0].weight.data, np.float64).mean(1)  # (K, 3, 3), channel mean
    lim = float(np.abs(w).max())
    cols = (len(w) + 1) // 2
    fig, axes = image_grid(2, cols, (10, 3.3), left=0.02, right=0.88, top=0.8, bottom=0.04,
                           wspace=0.15, hspace=0.3)  # fmt: skip
    for i, ax in enumerate(axes.flat[: len(w)]):
        im = ax.imshow(w[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"filter {i}", fontsize=8)
    colorbar(fig, im, (0.91, 0.1, 0.015, 0.65), "weight")
    fig.suptitle(f"first conv layer after training: {len(w)} filters 3x3 (red +, blue -)")
    return save_fig(fig, out, "hierarchy_filters.png")


def plot_maps(model: nn.Sequential, data: Data, geo: list[dict], out: Path) -> str:
    """Three test digits; for each conv layer its 4 most active channels (after ReLU)."""
    idx = [int(np.flatnonzero(data.yte == d)[0]) for d in (0, 4, 7)]
    acts = activations(model, data.xte[idx])
    per = 4
    ncol = 1 + per * len(acts)
    fig, axes = image_grid(3, ncol, (14, 4.8), left=0.03, right=0.99, top=0.83, bottom=0.2,
                           wspace=0.1, hspace=0.12)  # fmt: skip
    for r, n in enumerate(idx):
        axes[r, 0].imshow(data.xte[n, 0], cmap="gray", vmin=0, vmax=1)
        row_label(axes[r, 0], f"digit {data.yte[n]}", 9)
    axes[0, 0].set_title("input", fontsize=9)
    for li, a in enumerate(acts):
        chans = np.argsort(-a.mean((0, 2, 3)), kind="stable")[:per]
        vmax = float(a[:, chans].max()) or 1.0
        cols = [1 + li * per + j for j in range(per)]
        for j, ch in enumerate(chans):
            for r in range(len(idx)):
                im = axes[r, cols[j]].imshow(a[r, ch], cmap="viridis", vmin=0, vmax=vmax)
            size = f"{a.shape[2]}x{a.shape[3]}"
            axes[0, cols[j]].set_title(f"conv{li + 1} ch {ch}\n{size}, rf {geo[li]['rf']}",
                                       fontsize=8)  # fmt: skip
        x0 = axes[2, cols[0]].get_position().x0
        x1 = axes[2, cols[-1]].get_position().x1
        colorbar(fig, im, (x0, 0.1, x1 - x0, 0.03), f"conv{li + 1} activation")
    fig.suptitle("feature maps after each conv layer's ReLU: local strokes, then larger parts")
    return save_fig(fig, out, "hierarchy_maps.png")


def plot_patches(tops: list[dict[str, Any]], out: Path) -> str:
    k = len(tops[0]["patches"])
    fig, axes = image_grid(len(tops), k, (1.3 * k + 2.2, 1.3 * len(tops) + 0.8), left=0.1,
                           right=0.84, top=1 - 0.85 / (1.3 * len(tops) + 0.8), bottom=0.02,
                           wspace=0.1, hspace=0.3)  # fmt: skip
    for r, u in enumerate(tops):
        for c, p in enumerate(u["patches"]):
            im = axes[r, c].imshow(p, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_title(f"label {u['top_labels'][c]}", fontsize=7)
        side = u["patches"][0].shape[0]
        row_label(axes[r, 0], f"{u['layer']} ch {u['channel']}\n{side}x{side} px")
    colorbar(fig, im, (0.88, 0.3, 0.025, 0.4), "pixel")
    fig.suptitle(
        "input windows that most excite deep units\n(zero padding shows black)", fontsize=10
    )
    return save_fig(fig, out, "hierarchy_patches.png")
