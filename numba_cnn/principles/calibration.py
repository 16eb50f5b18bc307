"""Softmax and cross-entropy: the library's loss and gradient against the predicted probability
of the true class, and how well the trained model's probabilities are calibrated (reliability
diagram, expected calibration error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from ._common import Config, Data, fit, logits, pyplot, rnd, save_fig, seeded
from .hierarchy import deep_cnn

N_BINS = 10
CLASSES = 10


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS
) -> tuple[float, dict[str, list]]:
    """ECE of ``probs (N, K)`` against ``labels``: predictions grouped by confidence (the top
    probability) into ``n_bins`` equal bins ``(lo, hi]``; ECE = sum over bins of
    (bin count / N) * |accuracy in bin - mean confidence in bin|. Returns ``(ece, bins)``
    with each bin's ``lower``, ``upper``, ``count``, ``accuracy``, ``confidence`` (empty bins:
    count 0, accuracy and confidence None).

    >>> p = np.array([[0.9, 0.1], [0.6, 0.4]]); round(expected_calibration_error(p, [0, 1])[0], 6)
    0.35
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins: dict[str, list] = {
        "lower": [],
        "upper": [],
        "count": [],
        "accuracy": [],
        "confidence": [],
    }
    ece = 0.0
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        bins["lower"].append(rnd(b / n_bins))
        bins["upper"].append(rnd((b + 1) / n_bins))
        bins["count"].append(n)
        if n == 0:
            bins["accuracy"].append(None)
            bins["confidence"].append(None)
            continue
        acc, cf = float(correct[sel].mean()), float(conf[sel].mean())
        bins["accuracy"].append(rnd(acc))
        bins["confidence"].append(rnd(cf))
        ece += n / len(conf) * abs(acc - cf)
    return float(ece), bins


def loss_vs_probability(points: np.ndarray) -> dict[str, np.ndarray]:
    """The library's cross-entropy and its gradient on the true logit, one 10-class sample
    per probability ``p`` of the true class (logits: ``a`` for the true class, 0 elsewhere,
    with ``a = log(9 p / (1 - p))`` so that softmax gives ``p``)."""
    loss, grad = [], []
    for p in points:
        z = np.zeros((1, CLASSES), np.float32)
        z[0, 0] = np.log((CLASSES - 1) * p / (1 - p))
        label = np.zeros(1, np.int64)
        loss.append(float(np.asarray(F.cross_entropy(z, label))))
        grad.append(float(np.asarray(F.cross_entropy_backward(z, label))[0, 0]))
    return {"p": points, "loss": np.array(loss), "grad_true_logit": np.array(grad)}


def run(data: Data, cfg: Config, out: Path) -> tuple[dict[str, Any], list[str]]:
    """The loss curve and the calibration of the hierarchy experiment's net; one figure."""
    model = cfg.cache.get("deep")
    if model is None:
        model = seeded(cfg, lambda: deep_cnn(data.shape))
        fit(model, data, cfg, epochs=cfg.epochs)
    curve = loss_vs_probability(np.linspace(0.01, 0.99, 99))
    marks = loss_vs_probability(np.array([0.1, 0.5, 0.9, 0.99]))
    z = logits(model, data.xte)
    probs = np.asarray(F.softmax(z, dim=1))
    ece, bins = expected_calibration_error(probs, data.yte)
    conf = probs.max(1)
    wrong = probs.argmax(1) != data.yte
    res = {
        "loss_at_p": {f"{p:g}": rnd(v) for p, v in zip(marks["p"], marks["loss"], strict=True)},
        "grad_true_logit_at_p": {
            f"{p:g}": rnd(v) for p, v in zip(marks["p"], marks["grad_true_logit"], strict=True)
        },
        "max_abs_loss_minus_neg_log_p": rnd(np.abs(curve["loss"] + np.log(curve["p"])).max(), 9),
        "model": "the hierarchy experiment's net",
        "test_accuracy": rnd(float((~wrong).mean())),
        "test_nll": rnd(float(np.asarray(F.cross_entropy(z, data.yte)))),
        "mean_confidence": rnd(conf.mean()),
        "ece": rnd(ece),
        "n_bins": N_BINS,
        "wrong_with_confidence_over_0.9": int((wrong & (conf > 0.9)).sum()),
        "wrong": int(wrong.sum()),
        "bins": bins,
    }
    return res, [plot(curve, res, out)]


def plot(curve: dict[str, np.ndarray], res: dict[str, Any], out: Path) -> str:
    plt = pyplot()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4.2))
    a1.plot(curve["p"], curve["loss"], label="cross-entropy (library)")
    a1.plot(curve["p"], -curve["grad_true_logit"], "--", label="-dL/dz of the true logit = 1 - p")
    a1.set(xlabel="predicted probability of the true class p", ylabel="value")
    a1.set_title("loss = -log p: confident mistakes cost most", fontsize=10)
    a1.legend()
    b = res["bins"]
    centers = (np.array(b["lower"]) + np.array(b["upper"])) / 2
    acc = np.array([np.nan if v is None else v for v in b["accuracy"]])
    cf = np.array([np.nan if v is None else v for v in b["confidence"]])
    a2.bar(centers, acc, width=1 / N_BINS, edgecolor="k", alpha=0.8, label="accuracy in bin")
    a2.plot(centers, cf, "o", color="C3", label="mean confidence in bin")
    a2.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    a2.set(xlabel="confidence (top softmax probability)", ylabel="accuracy", xlim=(0, 1))
    a2.set(ylim=(0, 1.02))
    a2.set_title(f"reliability diagram, ECE = {res['ece']:.4f}", fontsize=10)
    a2.legend(loc="upper left", fontsize=8)
    a3.bar(centers, b["count"], width=1 / N_BINS, edgecolor="k", color="C2")
    a3.set(xlabel="confidence", ylabel="test images (log scale)", yscale="log", xlim=(0, 1))
    a3.set_ylim(bottom=0.5)
    a3.set_title("how many predictions fall in each bin", fontsize=10)
    for a in (a1, a2, a3):
        a.grid(alpha=0.3)
    fig.suptitle("softmax + cross-entropy: the loss, and the trained model's calibration")
    fig.tight_layout()
    return save_fig(fig, out, "softmax.png")
