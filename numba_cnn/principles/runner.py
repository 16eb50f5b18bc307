"""Run every principle experiment in order and write ``principles.json`` and the figures."""

from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

from . import activations, calibration, hierarchy, sharing, translation
from ._common import Config, load_data, rnd

#: JSON key -> experiment module (each has ``run(data, cfg, out) -> (results, figures)``)
EXPERIMENTS = {
    "parameter_sharing": sharing,
    "translation": translation,
    "hierarchy": hierarchy,
    "activations": activations,
    "softmax": calibration,
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(
    out: str | Path,
    quick: bool = False,
    dataset: str = "digits",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """All experiments on ``dataset`` (``digits`` or ``mnist:DIR``) on the CPU, seeded by
    ``seed``; PNG figures and ``principles.json`` go to ``out``. Returns the JSON's content."""
    from tqdm import tqdm

    from ..train import cpu_threads

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = Config.make(quick, seed)
    data = load_data(dataset, quick)
    res: dict[str, Any] = {}
    figures: list[str] = []
    seconds: dict[str, float] = {}
    bar = tqdm(EXPERIMENTS.items(), desc="principles", unit="exp", disable=not progress)
    with cpu_threads(0, data.shape[1]):
        for key, module in bar:
            bar.set_postfix_str(key)
            t = time.perf_counter()
            res[key], figs = module.run(data, cfg, out)
            seconds[key] = rnd(time.perf_counter() - t, 2)
            figures += figs
    res["meta"] = {
        "dataset": data.name,
        "train_images": int(len(data.ytr)),
        "test_images": int(len(data.yte)),
        "image_shape": list(data.shape),
        "seed": seed,
        "epochs": cfg.epochs,
        "activation_epochs": cfg.act_epochs,
        "cpu": _cpu_model(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds_per_experiment": seconds,
    }
    res["figures"] = figures
    res["quick"] = bool(quick)
    res["seconds"] = rnd(time.perf_counter() - t0, 2)
    (out / "principles.json").write_text(json.dumps(res, indent=1) + "\n")
    return res
