"""PNG plots of a training run (matplotlib, Agg backend): curves, filters, feature maps.

>>> import numpy as np, tempfile, pathlib
>>> h = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "test_loss": [0.9, 0.6], "test_acc": [0.7, 0.9]}
>>> plot_curves(h, pathlib.Path(tempfile.mkdtemp()) / "curves.png").name
'curves.png'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import _cuda, nn

__all__ = ["plot_curves", "plot_filters", "plot_feature_maps", "plot_all", "feature_maps"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: dict[str, list], path: Path) -> Path:
    """Train/test loss and test accuracy per epoch, side by side."""
    plt = _pyplot()
    ep = history["epoch"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, history["train_loss"], "o-", label="train")
    a1.plot(ep, history["test_loss"], "s-", label="test")
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss", yscale="log")
    a1.legend()
    a2.plot(ep, 100 * np.asarray(history["test_acc"]), "o-", color="C2")
    a2.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    from matplotlib.ticker import MaxNLocator

    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = min(n, cols)
    return -(-n // cols), cols


def plot_filters(weight: np.ndarray, path: Path, title: str = "first conv layer") -> Path:
    """Each filter of a conv weight ``(K, C, R, S)``, all on one scale: RGB when C == 3
    (-m..m mapped to 0..1, m the largest magnitude), else the mean over input channels in a
    blue-white-red map from -m to m with its colour bar (white is 0)."""
    plt = _pyplot()
    w = np.asarray(weight, dtype=np.float64)
    k, c = w.shape[0], w.shape[1]
    m = float(np.abs(w).max()) or 1.0
    rgb = c == 3
    rows, cols = _grid(k, 8)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.2 * cols + 1.0, 1.2 * rows + 0.6), squeeze=False
    )
    im = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        if rgb:
            ax.imshow((w[i].transpose(1, 2, 0) + m) / (2 * m), interpolation="nearest")
        else:
            im = ax.imshow(w[i].mean(0), cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
    how = f"RGB, {-m:.2g}..{m:.2g} -> 0..1" if rgb else "mean over input channels" * (c > 1)
    fig.suptitle(f"{title}: {k} filters {w.shape[2]}x{w.shape[3]}" + (f" ({how})" if how else ""))
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))
    if im is not None:
        cax = fig.add_axes((1 - 0.75 / fig.get_figwidth(), 0.1, 0.15 / fig.get_figwidth(), 0.75))
        fig.colorbar(im, cax=cax).set_label("weight", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def feature_maps(model: nn.Sequential, image: np.ndarray, device: str) -> list[tuple[str, Any]]:
    """Run one ``(C, H, W)`` image through ``model`` (eval mode) and return the activation
    after each conv layer's block (its ReLU, else the conv output): ``[(label, (K, H, W))]``."""
    model.eval()
    x = image[None].astype(np.float32)
    if device == "cuda":
        x = _cuda.to_device(x)
    maps, pending = [], None
    for i, m in enumerate(model):
        x = m(x)
        if isinstance(m, nn.Conv2d):
            if pending is not None:
                maps.append(pending)
            pending = (f"conv layer {i}", np.asarray(_cuda.to_host(x))[0])
        elif pending is not None and isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)):
            label = f"{pending[0]} after layer {i} ({type(m).__name__})"
            maps.append((label, np.asarray(_cuda.to_host(x))[0]))
            pending = None
    if pending is not None:
        maps.append(pending)
    return maps


def _prediction(model: nn.Sequential, image: np.ndarray, device: str) -> tuple[int, float]:
    """Class index and softmax probability of ``model``'s answer for one image."""
    x = image[None].astype(np.float32)
    logits = np.asarray(_cuda.to_host(model(_cuda.to_device(x) if device == "cuda" else x)))
    z = logits[0].astype(np.float64)
    p = np.exp(z - z.max())
    k = int(p.argmax())
    return k, float(p[k] / p.sum())


def plot_feature_maps(
    model: nn.Sequential,
    image: np.ndarray,
    path: Path,
    device: str = "cpu",
    max_maps: int = 16,
    label: int | None = None,
    classes: list[str] | None = None,
) -> Path:
    """The input image, then up to ``max_maps`` channels of each conv layer's output; the
    title gives the image's ``label`` (when known) and the model's prediction."""
    plt = _pyplot()
    maps = feature_maps(model, image, device)
    k, prob = _prediction(model, image, device)
    name = lambda i: classes[i] if classes and i < len(classes) else str(i)
    what = f"predicted {name(k)} (p={prob:.2f})"
    if label is not None:
        what = f"label {name(int(label))}, {what}"
    cols = max_maps
    fig, axes = plt.subplots(
        1 + len(maps), cols, figsize=(0.8 * cols, 1.05 * (1 + len(maps)) + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    img = image.transpose(1, 2, 0) if image.shape[0] == 3 else image.mean(0)
    axes[0, 0].imshow(img, cmap=None if image.shape[0] == 3 else "gray", interpolation="nearest")
    axes[0, 0].set_title("input", fontsize=7)
    for r, (label, fm) in enumerate(maps, start=1):
        for c in range(min(cols, fm.shape[0])):
            axes[r, c].imshow(fm[c], cmap="viridis", interpolation="nearest")
        shape = "x".join(str(d) for d in fm.shape)
        shown = f", first {cols} of {fm.shape[0]} maps shown" if fm.shape[0] > cols else ""
        axes[r, 0].set_title(f"{label}: {shape}{shown}", fontsize=7, loc="left")
    fig.suptitle(f"feature maps of one test image: {what}", fontsize=10)
    # row labels overflow to the right on purpose: no tight_layout, fixed margins
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1 - 0.5 / fig.get_figheight(),
        wspace=0.08,
        hspace=0.35,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_all(
    model: nn.Sequential,
    history: dict,
    x_test: np.ndarray,
    out: Path,
    device: str,
    y_test: np.ndarray | None = None,
    classes: list[str] | None = None,
) -> list[Path]:
    """``curves.png``, ``filters.png`` and ``feature_maps.png`` (of ``x_test[0]``, titled with
    ``y_test[0]`` when given) in ``out``; returns the paths."""
    out = Path(out)
    paths = [plot_curves(history, out / "curves.png")]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        paths.append(plot_filters(_cuda.to_host(convs[0].weight.data), out / "filters.png"))
        label = None if y_test is None else int(y_test[0])
        paths.append(
            plot_feature_maps(
                model, x_test[0], out / "feature_maps.png", device, label=label, classes=classes
            )
        )
    return paths
