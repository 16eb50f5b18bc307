"""Shared pieces of the principle experiments: settings, data, a training loop that records
loss and gradient norms, evaluation, zero-fill shifts and figure saving."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _random, nn, optim
from ..data import DataLoader
from ..plots import _pyplot

__all__ = ["Config", "Data", "fit", "logits", "accuracy", "shift", "save_fig", "pyplot", "rnd"]

pyplot = _pyplot


@dataclass
class Data:
    """Train and test arrays: x ``(N, C, H, W)`` float32 in [0, 1], y int64."""

    xtr: np.ndarray
    ytr: np.ndarray
    xte: np.ndarray
    yte: np.ndarray
    name: str = "digits"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.xtr.shape[1:])  # type: ignore[return-value]


@dataclass
class Config:
    """How long each experiment trains; ``quick`` shortens everything (for tests)."""

    quick: bool = False
    seed: int = 0
    epochs: int = 15  # the conv/MLP comparison, translation and hierarchy nets
    act_epochs: int = 10  # activations and optimizers
    batch_size: int = 32
    budgets: tuple[int, ...] = (4, 8, 16)  # CNN widths of the parameter-sharing nets
    cache: dict[str, Any] = field(default_factory=dict)  # trained models shared by experiments

    @classmethod
    def make(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(quick=True, seed=seed, epochs=2, act_epochs=2, budgets=(8,))
        return cls(quick=False, seed=seed)


def rnd(v: float, digits: int = 6) -> float:
    """A float for the JSON file, rounded so reruns print the same digits."""
    v = float(v)
    return v if not math.isfinite(v) else round(v, digits)


def grad_norm(p: nn.Parameter) -> float:
    g = np.asarray(p.grad, dtype=np.float64)
    return float(np.sqrt((g * g).sum()))


def fit(
    model: nn.Module,
    data: Data,
    cfg: Config,
    *,
    epochs: int,
    make_opt: Callable[[Any], optim.Optimizer] | None = None,
    watch: tuple[nn.Parameter, ...] = (),
) -> dict[str, list]:
    """Train ``model`` on ``data`` with the library's optimizers (Adam lr 3e-3 unless
    ``make_opt`` says otherwise), batches shuffled by ``cfg.seed``.

    Returns ``{"step_loss": [...], "epoch_loss": [...], "grad_norms": [[...] per watched
    parameter], "seconds": s}``: the loss of every step, the mean training loss of every
    epoch and the 2-norm of each watched parameter's gradient at every step."""
    opt = make_opt(model.parameters()) if make_opt else optim.Adam(model.parameters(), lr=3e-3)
    crit = nn.CrossEntropyLoss()
    loader = DataLoader(data.xtr, data.ytr, cfg.batch_size, shuffle=True, seed=cfg.seed)
    hist: dict[str, list] = {"step_loss": [], "epoch_loss": [], "grad_norms": [[] for _ in watch]}
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        total, n = 0.0, 0
        for xb, yb in loader:
            opt.zero_grad()
            loss = float(crit(model(xb), yb))
            model.backward(crit.backward(), need_dx=False)
            for norms, p in zip(hist["grad_norms"], watch, strict=True):
                norms.append(grad_norm(p))
            opt.step()
            hist["step_loss"].append(loss)
            total, n = total + loss * len(yb), n + len(yb)
        hist["epoch_loss"].append(total / n)
    hist["seconds"] = time.perf_counter() - t0
    model.eval()
    return hist


def logits(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The model's outputs for ``x`` (eval mode), as one float32 array."""
    model.eval()
    out = [
        np.asarray(model(np.ascontiguousarray(x[i : i + batch_size])))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float((logits(model, x).argmax(1) == y).mean())


def shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``x (N, C, H, W)`` moved by ``dy`` rows down and ``dx`` columns right; the pixels that
    move in are zeros (no wraparound), those that move out are lost.

    >>> shift(np.arange(4.0).reshape(1, 1, 1, 4), 0, 1)[0, 0, 0].tolist()
    [0.0, 0.0, 1.0, 2.0]
    """
    H, W = x.shape[-2:]
    out = np.zeros_like(x)
    if abs(dy) >= H or abs(dx) >= W:
        return out
    src_r = slice(max(0, -dy), H - max(0, dy))
    dst_r = slice(max(0, dy), H - max(0, -dy))
    src_c = slice(max(0, -dx), W - max(0, dx))
    dst_c = slice(max(0, dx), W - max(0, -dx))
    out[..., dst_r, dst_c] = x[..., src_r, src_c]
    return out


#: the four directions of a shift by ``s`` pixels: right, left, down, up
def directions(s: int) -> list[tuple[int, int]]:
    return [(0, s), (0, -s), (s, 0), (-s, 0)] if s else [(0, 0)]


def seeded(cfg: Config, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` right after ``manual_seed(cfg.seed)``: same initial weights every run."""
    _random.manual_seed(cfg.seed)
    return build()


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def save_fig(fig: Any, out: Path, name: str) -> str:
    """Write ``fig`` as ``out/name`` (PNG, 100 dpi, 256-colour palette: a third of the
    size of full colour), close it, return the file name."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(Path(out) / name, optimize=True)
    return name


def load_data(dataset: str, quick: bool) -> Data:
    """``"digits"`` (all 1438 / 359 images) or ``"mnist:DIR"`` (the first 6000 / 1000 images;
    1000 / 300 with ``quick``) as a ``Data``."""
    from ..train import load_dataset

    name = dataset.partition(":")[0]
    if name == "digits":
        limit = 0
    elif name in ("mnist", "fashion-mnist"):
        limit = 1000 if quick else 6000
    else:
        raise ValueError(f"--dataset: expected digits or mnist:DIR, got {dataset!r}")
    (xtr, ytr, xte, yte), _ = load_dataset(dataset, 0)
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
        n_test = 300 if quick else 1000
        xte, yte = xte[:n_test], yte[:n_test]
    return Data(xtr, ytr, xte, yte, name)


def image_grid(rows: int, cols: int, figsize: tuple[float, float], **adjust: float):
    """A figure of ``rows x cols`` image panels without axes (fixed margins ``adjust``, no
    layout engine: much faster to draw than constrained layout with many panels)."""
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    fig.subplots_adjust(**adjust)
    return fig, axes


def colorbar(fig: Any, im: Any, rect: tuple[float, float, float, float], label: str) -> None:
    """A colour bar for ``im`` in the figure-fraction rectangle ``(left, bottom, w, h)``;
    horizontal when the rectangle is wider than tall."""
    cax = fig.add_axes(rect)
    horizontal = rect[2] > rect[3]
    fig.colorbar(im, cax=cax, orientation="horizontal" if horizontal else "vertical", label=label)


def row_label(ax: Any, text: str, size: float = 8) -> None:
    """A label left of an axis-less panel."""
    ax.text(-0.08, 0.5, text, transform=ax.transAxes, ha="right", va="center", rotation=90,
            fontsize=size)  # fmt: skip
