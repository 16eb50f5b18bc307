"""Parameter sharing: a 3x3 conv layer against the dense layer with the same input and output
sizes (parameters, multiply-adds, the conv written out as a dense matrix), and small nets of
each kind trained at matched parameter budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import _random, nn
from .. import functional as F
from ._common import Config, Data, accuracy, count_params, fit, pyplot, rnd, save_fig, seeded

CHANNELS = 16  # output channels of the compared layer


def cnn(shape: tuple[int, int, int], width: int) -> nn.Sequential:
    """conv(w)-relu-pool-conv(2w)-relu-pool-linear: all 3x3 'same' convs."""
    c, h, _ = shape
    s = h // 2 // 2
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * s * s, 10),
    )


def mlp(shape: tuple[int, int, int], hidden: int) -> nn.Sequential:
    """flatten-linear(hidden)-relu-linear."""
    n = int(np.prod(shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def matched_hidden(shape: tuple[int, int, int], budget: int) -> int:
    """The MLP hidden width whose parameter count is closest to ``budget``."""
    n = int(np.prod(shape))
    return max(1, round((budget - 10) / (n + 11)))


def layer_comparison(shape: tuple[int, int, int], seed: int) -> dict[str, Any]:
    """Counts for conv3x3(C -> 16, 'same') vs Linear(C*H*W -> 16*H*W), and the conv layer
    written out as the dense matrix that computes the same function."""
    c, h, w = shape
    n_in, n_out = c * h * w, CHANNELS * h * w
    conv = nn.Conv2d(c, CHANNELS, 3, padding=1)
    dense_params = n_in * n_out + n_out  # Linear(n_in, n_out): weight + bias
    # column i of the equivalent matrix: the conv's answer to the i-th basis image, less bias
    basis = np.eye(n_in, dtype=np.float32).reshape(n_in, c, h, w)
    bias = conv.bias.data
    cols = np.asarray(conv(basis)) - bias[None, :, None, None]
    m = np.ascontiguousarray(cols.reshape(n_in, n_out).T)
    x = np.random.default_rng(seed).random((8, c, h, w), dtype=np.float32)
    y_conv = np.asarray(conv(x)).reshape(8, n_out)
    y_dense = np.asarray(F.linear(x.reshape(8, n_in), m, np.repeat(bias, h * w)))
    nz = m[m != 0]
    return {
        "layer": f"{c}x{h}x{w} -> {CHANNELS}x{h}x{w}",
        "conv_params": count_params(conv),
        "dense_params": int(dense_params),
        "conv_macs": int(CHANNELS * h * w * c * 9),  # every output: a 3x3xC window (pads too)
        "dense_macs": int(n_in * n_out),
        "equivalent_dense_nonzeros": int(nz.size),
        "equivalent_dense_entries": int(m.size),
        "equivalent_dense_distinct_values": int(np.unique(nz).size),
        "equivalent_dense_max_abs_error": rnd(np.abs(y_conv - y_dense).max(), 9),
    }


def run(data: Data, cfg: Config, out: Path) -> tuple[dict[str, Any], list[str]]:
    """The layer counts and the matched-budget accuracies; writes ``sharing.png``."""
    shape = data.shape
    _random.manual_seed(cfg.seed)
    res = layer_comparison(shape, cfg.seed)
    budgets = []
    for width in cfg.budgets:
        conv_net = seeded(cfg, lambda width=width: cnn(shape, width))
        p_conv = count_params(conv_net)
        hidden = matched_hidden(shape, p_conv)
        dense_net = seeded(cfg, lambda hidden=hidden: mlp(shape, hidden))
        fit(conv_net, data, cfg, epochs=cfg.epochs)
        fit(dense_net, data, cfg, epochs=cfg.epochs)
        if width == 8:  # the translation experiment's pooling CNN: same net, same training
            cfg.cache["cnn8"] = conv_net
        budgets.append(
            {
                "cnn_width": width,
                "conv_params": p_conv,
                "mlp_hidden": hidden,
                "dense_params": count_params(dense_net),
                "conv_accuracy": rnd(accuracy(conv_net, data.xte, data.yte)),
                "dense_accuracy": rnd(accuracy(dense_net, data.xte, data.yte)),
            }
        )
    main = next((b for b in budgets if b["cnn_width"] == 8), budgets[len(budgets) // 2])
    res["budgets"] = budgets
    res["conv_accuracy"] = main["conv_accuracy"]
    res["dense_accuracy"] = main["dense_accuracy"]
    res["matched_budget"] = {
        "conv_net_params": main["conv_params"],
        "mlp_params": main["dense_params"],
    }
    return res, [plot(res, out)]


def plot(res: dict[str, Any], out: Path) -> str:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    kinds = ["parameters", "multiply-adds"]
    conv = [res["conv_params"], res["conv_macs"]]
    dense = [res["dense_params"], res["dense_macs"]]
    xs = np.arange(2)
    for dx, vals, label in ((-0.2, conv, "conv 3x3"), (0.2, dense, "dense")):
        bars = a1.bar(xs + dx, vals, 0.38, label=label)
        a1.bar_label(bars, [f"{v:,}" for v in vals], fontsize=8)
    a1.set(xticks=xs, xticklabels=kinds, yscale="log", ylabel="count (log scale)")
    a1.set_ylim(10, 30 * max(dense))
    a1.set_title(f"one layer, {res['layer']}", fontsize=10)
    a1.legend(loc="upper left")
    b = res["budgets"]
    a2.plot(
        [r["conv_params"] for r in b],
        [100 * r["conv_accuracy"] for r in b],
        "o-",
        label="CNN (conv-pool-conv-pool-linear)",
    )
    a2.plot(
        [r["dense_params"] for r in b],
        [100 * r["dense_accuracy"] for r in b],
        "s-",
        label="MLP (one hidden layer)",
    )
    a2.set(xscale="log", xlabel="trainable parameters (log scale)", ylabel="test accuracy (%)")
    a2.set_title("small nets at matched parameter budgets", fontsize=10)
    a2.legend(loc="upper left")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.suptitle("parameter sharing: a conv layer reuses one small filter at every position")
    fig.tight_layout()
    return save_fig(fig, out, "sharing.png")
