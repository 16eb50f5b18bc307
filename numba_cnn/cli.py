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
import sys
import types
from pathlib import Path

import numpy as np

from . import __version__
from . import train as T

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="numba-cnn", description="Train and run CNNs with numba_cnn.")
    p.add_argument("--version", action="version", version=f"numba-cnn {__version__}")
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
    t.add_argument(
        "--out",
        type=Path,
        help="output folder (default: a new runs/<dataset>-<model>, then -2, -3, ...)",
    )
    t.add_argument("--resume", type=Path, metavar="CKPT", help="continue a saved run")
    t.add_argument(
        "--overwrite", action="store_true", help="let --out replace a run already saved there"
    )

    e = sub.add_parser("eval", help="test loss and accuracy of a checkpoint")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--dataset", help="evaluate on this data set instead of the run's")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")

    r = sub.add_parser("predict", help="classify image files (PNG/JPEG) with a checkpoint")
    r.add_argument("--checkpoint", type=Path, required=True)
    r.add_argument(
        "--invert",
        action="store_true",
        help="invert grey levels first: for dark-on-light images such as black ink on white "
        "paper (the digit models were trained on light digits on a dark background)",
    )
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
CHECKPOINT = "checkpoint.npz"


def new_run_folder(base: Path) -> Path:
    """``base`` if it does not exist yet, else the first free ``base-2``, ``base-3``, ..."""
    if not base.exists():
        return base
    n = 2
    while base.with_name(f"{base.name}-{n}").exists():
        n += 1
    return base.with_name(f"{base.name}-{n}")


def _check_out(out: Path, resumed: Path | None, overwrite: bool) -> None:
    """Refuse an ``--out`` that holds another run's checkpoint unless ``--overwrite``."""
    ckpt = out / CHECKPOINT
    if overwrite or not ckpt.exists():
        return
    if resumed is not None and ckpt.resolve() == resumed.resolve():
        return  # continuing that very checkpoint
    raise ValueError(
        f"--out {out} already holds a run ({ckpt}); continue it with --resume {ckpt}, "
        f"pass --overwrite to replace it, or leave --out out for a new folder"
    )


def _train(a: argparse.Namespace) -> int:
    given = {k: getattr(a, k) for k in (*T.DEFAULTS, "out") if getattr(a, k) is not None}
    if "epochs" in given and given["epochs"] < 1:
        raise ValueError(f"--epochs: must be at least 1, got {given['epochs']}")
    if a.resume is not None:
        ckpt = T.read_checkpoint(a.resume)
        fixed = [k for k in _FROM_CHECKPOINT if k in given]
        if fixed:
            opts = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise ValueError(f"--resume takes {opts} from the checkpoint; leave them out")
        settings = {**ckpt["settings"], **given}
        out = Path(given.get("out", a.resume.parent))
        _check_out(out, a.resume, a.overwrite)
        if int(ckpt["epoch"]) >= settings["epochs"]:
            print(f"{a.resume} already finished {ckpt['epoch']} epochs; raise --epochs to go on")
            return 0
    else:
        ckpt, settings = None, {**T.DEFAULTS, **given}
        name = settings["dataset"].partition(":")[0]
        if "out" in given:
            out = Path(given["out"])
            _check_out(out, None, a.overwrite)
        else:
            out = new_run_folder(Path("runs") / f"{name}-{settings['model']}")
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


def read_image(
    path: Path, channels: int, size: int, invert: bool = False
) -> tuple[np.ndarray, str]:
    """An image file as ``(channels, size, size)`` float32 in [0, 1], like the training data,
    and a note on the conversion applied ("" when the file already had that form), e.g.
    ``"converted RGB 4032x3024 -> grey 8x8"``. Transparent pixels count as background
    (black, or white with ``invert``). An unreadable file raises ``ValueError``."""
    from PIL import Image, UnidentifiedImageError

    want = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            alpha = "A" in mode or (mode == "P" and "transparency" in im.info)
            if alpha:
                back = Image.new("RGBA", im.size, (255,) * 4 if invert else (0, 0, 0, 255))
                im = Image.alpha_composite(back, im.convert("RGBA"))
            im = im.convert(want)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            a = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image: {e}") from e
    a = a[None] if channels == 1 else a.transpose(2, 0, 1)
    steps = []
    if (mode, w, h) != (want, size, size):
        name = {"L": "grey", "RGB": "RGB"}
        steps.append(f"converted {name.get(mode, mode)} {w}x{h} -> {name[want]} {size}x{size}")
        if alpha:
            steps.append(f"transparency over {'white' if invert else 'black'}")
    if invert:
        steps.append("inverted")
    return np.ascontiguousarray(1.0 - a if invert else a, dtype=np.float32), ", ".join(steps)


def load_image(path: Path, channels: int, size: int, invert: bool = False) -> np.ndarray:
    """An image file as ``(channels, size, size)`` float32 in [0, 1] (see ``read_image``)."""
    return read_image(path, channels, size, invert)[0]


def _predict(a: argparse.Namespace) -> int:
    from . import _cuda
    from . import functional as F

    s, model, device = _load_for_inference(a.checkpoint, a.device)
    classes = list(s.get("classes", [])) or [str(i) for i in range(s["num_classes"])]
    failed = 0
    for path in a.images:  # one image at a time: a bad file costs one line, not the batch
        try:
            x, note = read_image(path, s["in_channels"], s["image_size"], a.invert)
        except (ValueError, FileNotFoundError) as e:
            print(f"{path}: error: {e}", flush=True)
            failed += 1
            continue
        logits = model(_cuda.to_device(x[None]) if device == "cuda" else x[None])
        p = np.asarray(_cuda.to_host(F.softmax(logits, dim=1)))[0]
        k = int(p.argmax())
        print(f"{path}: {classes[k]} (p={p[k]:.3f})" + (f"  [{note}]" if note else ""), flush=True)
    if failed:
        print(f"numba-cnn predict: {failed} of {len(a.images)} images failed", file=sys.stderr)
    return 1 if failed else 0


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
    # run as __main__ with argv[0] naming the command, so that the script's argparse says
    # "usage: numba-cnn bench" (runpy.run_path would set argv[0] to the script's path)
    module = types.ModuleType("__main__")
    module.__file__ = str(script)
    code = compile(script.read_text(encoding="utf-8"), str(script), "exec")
    argv, sys.argv = sys.argv, ["numba-cnn bench", *a.args]
    main_module, sys.modules["__main__"] = sys.modules.get("__main__"), module
    try:
        exec(code, module.__dict__)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        if main_module is not None:
            sys.modules["__main__"] = main_module
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
