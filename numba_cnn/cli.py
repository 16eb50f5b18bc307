"""The ``numba-cnn`` command: ``train``, ``eval``, ``predict``, ``bench``.

numba-cnn train                               # LeNet on the embedded digits, CPU or GPU
numba-cnn train --dataset mnist:~/data/mnist --epochs 5 --out runs/mnist
numba-cnn train --resume runs/digits-lenet/checkpoint.npz --epochs 30
numba-cnn eval --checkpoint runs/digits-lenet/checkpoint.npz
numba-cnn predict --checkpoint runs/digits-lenet/checkpoint.npz seven.png
numba-cnn bench
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

import numpy as np

from . import train as T

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="numba-cnn", description="Train and run CNNs with numba_cnn.")
    sub = p.add_subparsers(dest="command", required=True)
    d = T.DEFAULTS

    t = sub.add_parser("train", help="train a model; writes checkpoint, metrics.csv and plots")
    t.add_argument("--dataset", help=f"digits | mnist:DIR | cifar10:DIR (default {d['dataset']})")
    t.add_argument("--model", choices=["lenet", "vgg"], help=f"default {d['model']}")
    t.add_argument("--epochs", type=int, help=f"default {d['epochs']}")
    t.add_argument("--batch-size", type=int, help=f"default {d['batch_size']}")
    t.add_argument("--lr", type=float, help=f"learning rate (default {d['lr']})")
    t.add_argument(
        "--optimizer", choices=["sgd", "adam", "adamw"], help=f"default {d['optimizer']}"
    )
    t.add_argument("--seed", type=int, help=f"default {d['seed']}")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto (GPU if any)")
    t.add_argument("--threads", type=int, help="CPU threads (default: 1 for images under 16 px)")
    t.add_argument("--limit", type=int, help="use only the first N train and test images")
    t.add_argument("--out", type=Path, help="output folder (default runs/<dataset>-<model>)")
    t.add_argument("--resume", type=Path, metavar="CKPT", help="continue a saved run")

    e = sub.add_parser("eval", help="test loss and accuracy of a checkpoint")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--dataset", help="evaluate on this data set instead of the run's")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")

    r = sub.add_parser("predict", help="classify image files (PNG/JPEG) with a checkpoint")
    r.add_argument("--checkpoint", type=Path, required=True)
    r.add_argument("--invert", action="store_true", help="dark-on-light images (digits are light)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    r.add_argument("images", nargs="+", type=Path)

    b = sub.add_parser("bench", help="run benchmarks/run.py (extra arguments are passed on)")
    b.add_argument("args", nargs=argparse.REMAINDER)

    c = sub.add_parser("principles", help="measure the principles of CNNs (docs/principles.md)")
    c.add_argument("--out", type=Path, default=Path("runs/principles"), help="output folder")
    c.add_argument("--quick", action="store_true", help="short training (a smoke run)")
    c.add_argument("--dataset", default="digits", help="digits (default) | mnist:DIR")
    c.add_argument("--seed", type=int, default=0)
    return p


_FROM_CHECKPOINT = ("dataset", "model", "batch_size", "lr", "optimizer", "seed", "limit")


def _train(a: argparse.Namespace) -> int:
    given = {k: getattr(a, k) for k in (*T.DEFAULTS, "out") if getattr(a, k) is not None}
    if a.resume is not None:
        ckpt = T.read_checkpoint(a.resume)
        fixed = [k for k in _FROM_CHECKPOINT if k in given]
        if fixed:
            opts = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise ValueError(f"--resume takes {opts} from the checkpoint; leave them out")
        settings = {**ckpt["settings"], **given}
        out = Path(given.get("out", a.resume.parent))
        if int(ckpt["epoch"]) >= settings["epochs"]:
            print(f"{a.resume} already finished {ckpt['epoch']} epochs; raise --epochs to go on")
            return 0
    else:
        ckpt, settings = None, {**T.DEFAULTS, **given}
        name = settings["dataset"].partition(":")[0]
        out = Path(given.get("out", Path("runs") / f"{name}-{settings['model']}"))
    settings["out"] = str(out)
    return T.train(settings, out, ckpt)


def _load_for_inference(path: Path, device: str):
    ckpt = T.read_checkpoint(path)
    device = T.resolve_device(device)
    model, _ = T.build_from_checkpoint(ckpt, device)
    return ckpt["settings"], model.eval(), device


def _eval(a: argparse.Namespace) -> int:
    s, model, device = _load_for_inference(a.checkpoint, a.device)
    dataset = a.dataset or s["dataset"]
    (_, _, xte, yte), _ = T.load_dataset(dataset, s.get("limit", 0))
    loss, acc = T.evaluate(model, xte, yte, device)
    print(f"{dataset}: test loss {loss:.4f}  test accuracy {100 * acc:.2f}% ({len(yte)} images)")
    return 0


def load_image(path: Path, channels: int, size: int, invert: bool = False) -> np.ndarray:
    """An image file as ``(channels, size, size)`` float32 in [0, 1], like the training data."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            im = im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            a = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"predict: cannot read image {path}: {e}") from e
    a = a[None] if channels == 1 else a.transpose(2, 0, 1)
    return np.ascontiguousarray(1.0 - a if invert else a, dtype=np.float32)


def _predict(a: argparse.Namespace) -> int:
    from . import _cuda
    from . import functional as F

    s, model, device = _load_for_inference(a.checkpoint, a.device)
    x = np.stack([load_image(p, s["in_channels"], s["image_size"], a.invert) for p in a.images])
    logits = model(_cuda.to_device(x) if device == "cuda" else x)
    probs = np.asarray(_cuda.to_host(F.softmax(logits, dim=1)))
    classes = list(s.get("classes", [])) or [str(i) for i in range(probs.shape[1])]
    for path, p in zip(a.images, probs, strict=True):
        k = int(p.argmax())
        print(f"{path}: {classes[k]} (p={p[k]:.3f})")
    return 0


def bench_candidates() -> list[Path]:
    """Where ``numba-cnn bench`` looks for ``benchmarks/run.py``: the current folder, then
    the source checkout this package was imported from."""
    here = Path(__file__).resolve().parent.parent
    return [Path.cwd() / "benchmarks" / "run.py", here / "benchmarks" / "run.py"]


def _bench(a: argparse.Namespace) -> int:
    candidates = bench_candidates()
    script = next((c for c in candidates if c.is_file()), None)
    if script is None:
        where = " or ".join(str(c) for c in candidates)
        msg = f"benchmarks/run.py not found ({where}); run bench from a source checkout"
        print(f"numba-cnn bench: error: {msg}", file=sys.stderr)
        return 2
    argv, sys.argv = sys.argv, [str(script), *a.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return 0


def _principles(a: argparse.Namespace) -> int:
    from .principles import run

    res = run(a.out, quick=a.quick, dataset=a.dataset, seed=a.seed)
    print(f"principles: {len(res['figures'])} figures and principles.json in {a.out} "
          f"({res['seconds']:.0f} s)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``numba-cnn`` console script; returns the exit status."""
    # Idle OpenMP workers of Numba's parallel loops sleep instead of spinning: on a busy or
    # small machine spinning threads starve the working ones (measured: 10x slower epochs
    # with 2 threads on 2 loaded cores). Read when the OpenMP runtime loads, i.e. at the
    # first parallel kernel, which comes after this line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after "bench" goes to the script as it is
        return _bench(argparse.Namespace(command="bench", args=argv[1:]))
    a = build_parser().parse_args(argv)
    run = {"train": _train, "eval": _eval, "predict": _predict, "bench": _bench,
           "principles": _principles}[a.command]  # fmt: skip
    try:
        return run(a)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"numba-cnn {a.command}: error: {e}", file=sys.stderr)
        T.distributed.abort_all(2)  # under mpiexec: stop the other ranks too, never a hang
        return 2
    except KeyboardInterrupt:  # outside the training loop (which saves and returns 130)
        print(f"numba-cnn {a.command}: interrupted", file=sys.stderr)
        T.distributed.abort_all(130)
        return 130


if __name__ == "__main__":
    sys.exit(main())
