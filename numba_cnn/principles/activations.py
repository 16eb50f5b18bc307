"""Activations and training: ReLU, sigmoid and tanh in the same net with the same optimizer
(loss curves, gradient norm reaching the first layer), then SGD, SGD with momentum and Adam
training the ReLU net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import nn, optim
from ._common import Config, Data, accuracy, fit, pyplot, rnd, save_fig, seeded

ACTS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
LR = 0.05  # SGD learning rate (with and without momentum)
OPTIMIZERS = {
    "sgd": ("SGD, lr 0.05", lambda ps: optim.SGD(ps, lr=LR)),
    "sgd_momentum": ("SGD + momentum 0.9, lr 0.05", lambda ps: optim.SGD(ps, lr=LR, momentum=0.9)),
    "adam": ("Adam, lr 1e-3", lambda ps: optim.Adam(ps, lr=1e-3)),
}


def net(shape: tuple[int, int, int], act: type[nn.Module]) -> nn.Sequential:
    """conv8-A-conv16-A-pool-conv16-A-pool-linear32-A-linear: four activations A deep."""
    c, h, _ = shape
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1),
        act(),
        nn.Conv2d(8, 16, 3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * (h // 4) ** 2, 32),
        act(),
        nn.Linear(32, 10),
    )


def _train(data: Data, cfg: Config, act: str, opt: str) -> tuple[nn.Module, dict]:
    model = seeded(cfg, lambda: net(data.shape, ACTS[act]))
    watch = (model[0].weight, model[-1].weight)
    hist = fit(model, data, cfg, epochs=cfg.act_epochs, make_opt=OPTIMIZERS[opt][1], watch=watch)
    return model, hist


def _summary(model: nn.Module, hist: dict, data: Data) -> dict[str, Any]:
    steps = len(hist["step_loss"]) // len(hist["epoch_loss"])  # steps per epoch
    first, last = (np.asarray(g) for g in hist["grad_norms"]) if hist["grad_norms"] else ([], [])
    res = {
        "final_loss": rnd(hist["epoch_loss"][-1]),
        "test_accuracy": rnd(accuracy(model, data.xte, data.yte)),
        "epoch_loss": [rnd(v) for v in hist["epoch_loss"]],
    }
    if len(first):
        res["first_layer_grad_norm"] = rnd(first.mean())  # mean over every training step
        res["last_layer_grad_norm"] = rnd(last.mean())
        res["first_to_last_ratio"] = rnd(first.mean() / last.mean())
        res["first_layer_grad_norm_first_epoch"] = rnd(first[:steps].mean())
        res["first_layer_grad_norm_per_epoch"] = [
            rnd(first[i : i + steps].mean()) for i in range(0, len(first), steps)
        ]
    return res


def run(data: Data, cfg: Config, out: Path) -> tuple[dict[str, Any], list[str]]:
    """Three activations under SGD + momentum, three optimizers on the ReLU net; two figures."""
    res: dict[str, Any] = {"net": "conv8-A-conv16-A-pool-conv16-A-pool-linear32-A-linear10"}
    res["optimizer"] = OPTIMIZERS["sgd_momentum"][0]
    res["epochs"] = cfg.act_epochs
    hists = {}
    for act in ACTS:
        model, hist = _train(data, cfg, act, "sgd_momentum")
        hists[act] = hist
        res[act] = _summary(model, hist, data)
    res["optimizers"] = {}
    for opt, (label, _) in OPTIMIZERS.items():
        if opt == "sgd_momentum":  # the ReLU run above
            hist, summary = hists["relu"], dict(res["relu"])
        else:
            model, hist = _train(data, cfg, "relu", opt)
            summary = _summary(model, hist, data)
        hists[opt] = hist
        keep = ("final_loss", "test_accuracy", "epoch_loss")
        res["optimizers"][opt] = {"label": label, **{k: summary[k] for k in keep}}
    return res, [plot_activations(hists, res, out), plot_optimizers(hists, res, out)]


def _smooth(v: list[float], n: int = 9) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if len(v) < n:
        return v
    return np.convolve(v, np.ones(n) / n, mode="valid")


def plot_activations(hists: dict, res: dict, out: Path) -> str:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, act in enumerate(ACTS):
        h = hists[act]
        a1.plot(_smooth(h["step_loss"]), color=f"C{i}", label=act)
        first, last = h["grad_norms"]
        a2.plot(_smooth(first), color=f"C{i}", label=f"{act}: first conv layer")
        a2.plot(_smooth(last), color=f"C{i}", ls=":", label=f"{act}: last linear layer")
    a1.set(xlabel="training step (batches of 32)", ylabel="training loss (9-step mean)")
    a1.set_title(f"same net, {res['optimizer']}", fontsize=10)
    a1.legend()
    a2.set(xlabel="training step", ylabel="gradient 2-norm (9-step mean)", yscale="log")
    a2.set_title("gradient reaching the first and the last layer", fontsize=10)
    a2.legend(fontsize=7, ncol=2, loc="center", bbox_to_anchor=(0.5, 0.36))
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.suptitle("ReLU vs saturating activations: sigmoid's gradient vanishes on the way down")
    fig.tight_layout()
    return save_fig(fig, out, "activations.png")


def plot_optimizers(hists: dict, res: dict, out: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (opt, r) in enumerate(res["optimizers"].items()):
        ax.plot(_smooth(hists[opt]["step_loss"]), color=f"C{i + 3}", label=r["label"])
    ax.set(xlabel="training step (batches of 32)", ylabel="training loss (9-step mean)")
    ax.set(yscale="log", title="ReLU net: three optimizers, same initial weights and batches")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_fig(fig, out, "optimizers.png")
