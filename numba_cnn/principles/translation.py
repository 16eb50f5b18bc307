"""Translation: test accuracy on shifted test images (zero fill, no wraparound) for an MLP and
CNNs without and with max-pooling, all trained the same way on unshifted images; and how far
feature maps move when the input moves (conv: equivariance; after pooling: invariance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import nn
from ._common import (
    Config,
    Data,
    accuracy,
    colorbar,
    count_params,
    directions,
    fit,
    image_grid,
    pyplot,
    rnd,
    row_label,
    save_fig,
    seeded,
    shift,
)
from .sharing import cnn

SHIFTS = [0, 1, 2, 3]
NAMES = {
    "mlp": "MLP",
    "cnn_no_pool": "CNN, no pooling",
    "cnn_pool": "CNN, 2x2 max-pooling",
    "cnn_global_pool": "CNN, 2x2 + global max-pooling",
}
STAGES = ["input", "conv1", "pool1", "conv2", "pool2"]  # cnn_pool layers 1, 2, 4, 5 after input


def models(shape: tuple[int, int, int]) -> dict[str, Any]:
    """Builders of the compared nets (the ``cnn_pool`` one is ``sharing.cnn(shape, 8)``)."""
    c, h, w = shape
    return {
        "mlp": lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, 64), nn.ReLU(), nn.Linear(64, 10)
        ),
        "cnn_no_pool": lambda: nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * h * w, 10),
        ),
        "cnn_pool": lambda: cnn(shape, 8),
        "cnn_global_pool": lambda: nn.Sequential(
            *list(cnn(shape, 8))[:6], nn.MaxPool2d(h // 4), nn.Flatten(), nn.Linear(16, 10)
        ),
    }


def shifted_accuracy(model: nn.Module, data: Data, s: int) -> float:
    """Mean test accuracy over the four directions of an ``s``-pixel shift."""
    accs = [accuracy(model, shift(data.xte, dy, dx), data.yte) for dy, dx in directions(s)]
    return float(np.mean(accs))


def stages(model: nn.Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """``input`` and the ``cnn_pool`` net's maps after conv1+ReLU, pool1, conv2+ReLU, pool2."""
    out, acts = {"input": x}, []
    for m in list(model)[:6]:
        x = np.asarray(m(x))
        acts.append(x)
    out.update(conv1=acts[1], pool1=acts[2], conv2=acts[4], pool2=acts[5])
    return out


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def interior(h: int, w: int, dy: int, dx: int) -> tuple[slice, slice]:
    """Rows and columns of a 3x3 'same' conv's output where conv(shift(x)) must equal
    shift(conv(x)) exactly: away from the zero-filled band and the image border."""
    return slice(max(0, dy) + 1, h - 1 + min(0, dy)), slice(max(0, dx) + 1, w - 1 + min(0, dx))


def movement(model: nn.Sequential, x: np.ndarray) -> dict[str, list[float]]:
    """Per shift 1..3 (mean of 4 directions): relative change ``|f(Tx) - f(x)| / |f(x)|`` of
    each stage, and conv1's equivariance error ``|conv(Tx) - T conv(x)| / |conv(x)|`` (interior)."""
    model.eval()
    base = stages(model, x)
    res: dict[str, list[float]] = {k: [0.0] for k in STAGES}
    res["conv1_realigned"] = [0.0]
    res["conv1_realigned_whole_map"] = [0.0]
    h, w = x.shape[-2:]
    for s in SHIFTS[1:]:
        acc: dict[str, list[float]] = {k: [] for k in res}
        for dy, dx in directions(s):
            moved = stages(model, shift(x, dy, dx))
            for k in STAGES:
                acc[k].append(rel(moved[k], base[k]))
            rows, cols = interior(h, w, dy, dx)
            realigned = shift(base["conv1"], dy, dx)[..., rows, cols]
            acc["conv1_realigned"].append(rel(moved["conv1"][..., rows, cols], realigned))
            whole = rel(moved["conv1"], shift(base["conv1"], dy, dx))
            acc["conv1_realigned_whole_map"].append(whole)
        for k, v in acc.items():
            res[k].append(float(np.mean(v)))
    return {k: [rnd(v) for v in vs] for k, vs in res.items()}


def run(data: Data, cfg: Config, out: Path) -> tuple[dict[str, Any], list[str]]:
    """Accuracy per shift of each net and the feature movement; writes two figures."""
    res: dict[str, Any] = {"shifts": SHIFTS, "fill": "zeros (no wraparound)"}
    nets = {}
    for name, build in models(data.shape).items():
        net = cfg.cache.get("cnn8") if name == "cnn_pool" else None
        if net is None:
            net = seeded(cfg, build)
            fit(net, data, cfg, epochs=cfg.epochs)
        nets[name] = net
        res[name] = [rnd(shifted_accuracy(net, data, s)) for s in SHIFTS]
    res["params"] = {k: count_params(m) for k, m in nets.items()}
    res["feature_change"] = movement(nets["cnn_pool"], data.xte[:300])
    return res, [plot(res, out), plot_maps(nets["cnn_pool"], data, out)]


def plot(res: dict[str, Any], out: Path) -> str:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.4))
    for (k, label), m in zip(NAMES.items(), "osD^", strict=True):
        a1.plot(SHIFTS, [100 * v for v in res[k]], m + "-", label=label)
    a1.set(xlabel="shift of the test images (pixels, zero fill)", ylabel="test accuracy (%)")
    a1.set(xticks=SHIFTS, title="accuracy on shifted test images")
    a1.legend(fontsize=8)
    fc = res["feature_change"]
    labels = {
        "input": "input image",
        "conv1": "conv1 map",
        "conv1_realigned": "conv1 map shifted back:\nequivariance error (interior)",
        "conv1_realigned_whole_map": "same, whole map\n(border effects)",
        "pool1": "after 2x2 max-pool 1",
        "conv2": "conv2 map",
        "pool2": "after 2x2 max-pool 2",
    }
    for (k, label), m in zip(labels.items(), "o^v<sDx", strict=True):
        a2.plot(SHIFTS, fc[k], m + "-", label=label)
    a2.set(xlabel="shift of the input (pixels)", ylabel="relative change |f(Tx) - f(x)| / |f(x)|")
    a2.set(xticks=SHIFTS, title="how much the CNN's maps change (2x2-pool net)")
    a2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return save_fig(fig, out, "translation.png")


def plot_maps(model: nn.Sequential, data: Data, out: Path) -> str:
    """One test digit moved right by 0, 1, 2 pixels and one channel of each stage."""
    x0 = data.xte[:1]
    maps = [stages(model, shift(x0, 0, s)) for s in (0, 1, 2)]
    ch = {k: int(maps[0][k][0].reshape(maps[0][k].shape[1], -1).max(1).argmax()) for k in STAGES}
    cols = ["input", "conv1", "pool1", "pool2"]
    fig, axes = image_grid(3, 4, (9, 7.6), left=0.06, right=0.98, top=0.88, bottom=0.13,
                           wspace=0.35, hspace=0.25)  # fmt: skip
    for j, k in enumerate(cols):
        vmax = max(float(m[k][0, ch[k]].max()) for m in maps) or 1.0
        for i, m in enumerate(maps):
            im = axes[i, j].imshow(
                m[k][0, ch[k]], cmap="gray" if k == "input" else "viridis", vmin=0, vmax=vmax
            )
            size = "x".join(str(d) for d in m[k].shape[2:])
            where = "" if k == "input" else f" ch {ch[k]}"
            axes[i, j].set_title(f"{k}{where} ({size})", fontsize=9)
        pos = axes[2, j].get_position()
        label = "pixel" if k == "input" else "activation"
        colorbar(fig, im, (pos.x0, 0.07, pos.width, 0.02), label)
    for i in range(3):
        row_label(axes[i, 0], f"shifted right by {i} px", 9)
    fig.suptitle("one digit moved right by 0, 1, 2 pixels (zero fill):\n"
                 "conv maps move along, pooled maps change less")  # fmt: skip
    return save_fig(fig, out, "translation_maps.png")
