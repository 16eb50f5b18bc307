"""The training loop behind ``numba-cnn train``: data, model, optimizer, checkpoints, metrics.

A checkpoint (``nc.save``) holds ``model`` and ``optimizer`` state dicts, ``epoch`` (finished
epochs), ``batch`` (finished batches of the next epoch, after a Ctrl-C), ``partial`` (that
epoch's loss sum and sample count so far), ``history`` (per-epoch metrics) and ``settings``
(everything needed to rebuild the run). Epoch ``e`` always sees the same batches for a given
seed (see ``DataLoader``), so a resumed run continues the same loss curve.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _cuda, _random, data, distributed, nn, optim
from .io import load, save
from .models import build_model
from .nn import _grad

__all__ = [
    "DEFAULTS",
    "load_dataset",
    "resolve_device",
    "make_optimizer",
    "build_from_checkpoint",
    "evaluate",
    "train",
]

#: settings of a plain ``numba-cnn train`` (digits, LeNet, Adam)
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "model": "lenet",
    "epochs": 20,
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adam",
    "seed": 0,
    "device": "auto",
    "limit": 0,
    "threads": 0,
}
HISTORY_KEYS = ("epoch", "train_loss", "test_loss", "test_acc", "seconds")
COMPILE_NOTICE = "compiling kernels (first run only, cached afterwards)"
_notice_shown = False


@contextlib.contextmanager
def compile_notice(log, after: float = 1.0):
    """Print ``COMPILE_NOTICE`` (once a process) if the work inside takes more than ``after``
    seconds: a first run's Numba compiles; with a warm cache the kernels load in milliseconds."""
    if _notice_shown:
        yield
        return

    def say() -> None:
        global _notice_shown
        if not _notice_shown:
            _notice_shown = True
            from tqdm import tqdm

            with tqdm.external_write_mode():
                log(COMPILE_NOTICE)

    timer = threading.Timer(after, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def load_dataset(spec: str, limit: int = 0) -> tuple[tuple[np.ndarray, ...], list[str]]:
    """``"digits"``, ``"mnist:DIR"`` or ``"cifar10:DIR"`` -> ``((xtr, ytr, xte, yte), classes)``;
    ``limit`` > 0 keeps the first ``limit`` training and test images (quick runs, tests)."""
    name, _, path = spec.partition(":")
    if name == "digits" and not path:
        arrays, classes = data.load_digits(), [str(i) for i in range(10)]
    elif name in ("mnist", "fashion-mnist") and path:
        arrays, classes = data.load_mnist(path), [str(i) for i in range(10)]
    elif name == "cifar10" and path:
        arrays, classes = data.load_cifar10(path), list(data.CIFAR10_CLASSES)
    else:
        raise ValueError(f"--dataset: expected digits, mnist:DIR or cifar10:DIR, got {spec!r}")
    if limit > 0:
        arrays = tuple(a[:limit] for a in arrays)
    return arrays, classes


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` on a real GPU (never the simulator), else ``"cpu"``."""
    if device == "auto":
        return "cuda" if _cuda.available() and not _cuda.SIMULATOR else "cpu"
    if device == "cuda" and not _cuda.available():
        raise RuntimeError("--device cuda: no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, got {device!r}")
    return device


def make_optimizer(name: str, params: Any, lr: float) -> optim.Optimizer:
    """``sgd`` (momentum 0.9), ``adam`` or ``adamw`` with learning rate ``lr``."""
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return optim.Adam(params, lr=lr)
    if name == "adamw":
        return optim.AdamW(params, lr=lr)
    raise ValueError(f"--optimizer: expected sgd, adam or adamw, got {name!r}")


def build_from_checkpoint(ckpt: dict, device: str) -> tuple[nn.Module, optim.Optimizer]:
    """The model and optimizer of a checkpoint, with their saved state, on ``device``."""
    s = ckpt["settings"]
    model = build_model(s["model"], s["in_channels"], s["image_size"], s["num_classes"])
    model.load_state_dict(ckpt["model"])
    model.to(device)
    opt = make_optimizer(s["optimizer"], model.parameters(), s["lr"])
    opt.load_state_dict(ckpt["optimizer"])
    return model, opt


def evaluate(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    device: str,
    batch_size: int = 256,
    group: distributed.Group | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (0..1) of ``model`` (in eval mode) on ``(x, y)``;
    with a ``group`` of several ranks each evaluates its share and the sums are added."""
    n_all = len(y)
    if group is not None and group.size > 1:
        lo, hi = n_all * group.rank // group.size, n_all * (group.rank + 1) // group.size
        x, y = x[lo:hi], y[lo:hi]
    was_training = model.training
    model.eval()
    crit = nn.CrossEntropyLoss()
    total, correct = 0.0, 0
    for xb, yb in data.DataLoader(x, y, batch_size, seed=0):
        if device == "cuda":
            xb, ybd = _cuda.to_device(xb), _cuda.to_device(yb)
        else:
            ybd = yb
        logits = model(xb)
        total += float(_cuda.to_host(crit(logits, ybd))) * len(yb)
        correct += int((np.asarray(_cuda.to_host(logits)).argmax(1) == yb).sum())
    model.train(was_training)
    if group is not None and group.size > 1:
        total, correct = group.sum([total, correct])
    return total / n_all, correct / n_all


@contextlib.contextmanager
def cpu_threads(n: int, image_size: int, share: int = 1):
    """Run with ``n`` CPU threads for Numba's parallel loops and for BLAS (``n`` = 0: one for
    images under 16 pixels, whose tiny kernels lose more to waking threads than they gain,
    else all cores, divided among the ``share`` processes of this node). BLAS is limited
    through threadpoolctl when it is installed."""
    import numba

    if n <= 0:
        n = 1 if image_size < 16 else numba.config.NUMBA_NUM_THREADS // max(1, share)
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls: load it first)
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield n
        else:
            with threadpool_limits(n, user_api="blas"):
                yield n
    finally:
        numba.set_num_threads(old)


class _StopFlag:
    """First Ctrl-C: finish the current batch, then save and stop. Second: stop at once."""

    def __init__(self) -> None:
        self.set = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _write_csv(history: dict[str, list], path: Path) -> None:
    rows = [",".join(HISTORY_KEYS)]
    for i in range(len(history["epoch"])):
        rows.append(",".join(f"{history[k][i]:.6g}" for k in HISTORY_KEYS))
    path.write_text("\n".join(rows) + "\n")


class _Run:
    """One training run's state: what a checkpoint holds, plus the data and the loop."""

    def __init__(
        self, settings: dict[str, Any], out: Path, ckpt: dict | None, log, group=None
    ) -> None:
        s = self.s = dict(settings)
        self.log, self.out, self.path = log, out, out / "checkpoint.npz"
        g = self.group = group or distributed.Group()
        self.device = resolve_device(s["device"])
        if self.device == "cuda" and g.size > 1 and not _cuda.SIMULATOR:  # one GPU per rank
            _cuda.cuda.select_device(g.local_rank % len(_cuda.cuda.gpus))
        (self.xtr, self.ytr, self.xte, self.yte), classes = load_dataset(s["dataset"], s["limit"])
        s.update(in_channels=int(self.xtr.shape[1]), image_size=int(self.xtr.shape[2]))
        s.update(classes=classes, num_classes=s.get("num_classes", len(classes)))
        if ckpt is None:
            _random.manual_seed(s["seed"])
            self.model = build_model(
                s["model"], s["in_channels"], s["image_size"], s["num_classes"]
            )
            self.model.to(self.device)
            self.opt = make_optimizer(s["optimizer"], self.model.parameters(), s["lr"])
            self.epoch, self.batch, self.partial = 0, 0, [0.0, 0]
            self.history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
        else:
            self.model, self.opt = build_from_checkpoint(ckpt, self.device)
            self.epoch, self.batch = int(ckpt["epoch"]), int(ckpt["batch"])
            self.partial = [float(ckpt["partial"][0]), int(ckpt["partial"][1])]
            self.history = {k: list(ckpt["history"][k]) for k in HISTORY_KEYS}
        self.loader = data.DataLoader(
            self.xtr, self.ytr, s["batch_size"] // g.size, True, s["seed"], **g.shard
        )
        if g.size > 1:
            distributed.broadcast_parameters(self.model)  # the same start on every rank
            if not g.is_root:  # a checkpoint's partial sums span all ranks: count them once
                self.partial = [0.0, 0]
        self.crit = nn.CrossEntropyLoss()
        self.losses = _grad.RunningSum()  # loss x batch size, on the loss's device: read once
        self.in_step = self.agreed_stop = False
        self.stepped = self.evaluated = False  # first step / evaluation of this process done

    def save(self) -> None:
        """Checkpoint after ``self.batch`` batches of epoch ``self.epoch``."""
        self.read_losses()
        partial = self.group.sum(self.partial)  # over the ranks (all of them call save)
        if not self.group.is_root:
            return
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}
        where = {"epoch": self.epoch, "batch": self.batch}
        where["partial"] = [float(partial[0]), int(partial[1])]
        save({**state, **where, "history": self.history, "settings": self.s}, self.path)

    def read_losses(self) -> None:
        total, n = self.losses.take()  # one host read (per epoch and checkpoint)
        self.partial[0] += total
        self.partial[1] += n

    def run_epoch(self, stop: _StopFlag) -> bool:
        """Train the rest of epoch ``self.epoch``; False if stopped by Ctrl-C."""
        from tqdm import tqdm

        model, opt, crit, n = self.model, self.opt, self.crit, len(self.loader)
        model.train()
        desc = f"epoch {self.epoch + 1}/{self.s['epochs']}"
        bar = tqdm(total=n, initial=self.batch, desc=desc, unit="batch", leave=False)
        bar.disable = not self.group.is_root
        for xb, yb in self.loader.epoch_batches(self.epoch, start=self.batch):
            t0 = time.perf_counter()
            first = not self.stepped  # the kernels compile in this process's first step
            with compile_notice(self.log) if first else contextlib.nullcontext():
                ybd = yb
                if self.device == "cuda":
                    xb, ybd = _cuda.to_device(xb), _cuda.to_device(yb)
                opt.zero_grad()
                loss = crit(model(xb), ybd)
                model.backward(crit.backward(), need_dx=False)
                if self.group.size > 1:
                    distributed.allreduce_gradients(model)  # mean over ranks: one collective
                self.in_step = True
                opt.step()
                self.in_step = False
            self.stepped = True
            self.losses.add(loss, len(yb))
            self.batch += 1
            if first and time.perf_counter() - t0 > 1.0:  # compiled: time the bar from here,
                bar.reset(total=n)  # or its rate and ETA count the compile as one batch
                bar.update(self.batch)
            else:
                bar.update(1)
            if (self.batch % 10 == 0 or self.batch == n) and not _cuda.is_device_array(loss):
                bar.set_postfix(loss=f"{float(loss):.4f}")  # on the GPU: no read in the loop
            if self.group.size > 1:  # stop together: a Ctrl-C may reach ranks a step apart
                self.agreed_stop = bool(self.group.sum([stop.set])[0])
                if self.agreed_stop:
                    break
            elif stop.set:
                break
        bar.close()
        return not (self.agreed_stop if self.group.size > 1 else stop.set)

    def end_epoch(self, seconds: float) -> None:
        self.read_losses()
        g = self.group
        with compile_notice(self.log) if not self.evaluated else contextlib.nullcontext():
            if g.size > 1:  # rank 0's batch-norm statistics, as the checkpoint holds
                distributed.broadcast_parameters(self.model)
            test_loss, test_acc = evaluate(self.model, self.xte, self.yte, self.device, group=g)
        self.evaluated = True
        loss_sum, count = g.sum(self.partial)
        row = (self.epoch + 1, loss_sum / count, test_loss, test_acc, seconds)
        for k, v in zip(HISTORY_KEYS, row, strict=True):
            self.history[k].append(v)
        self.epoch, self.batch, self.partial = self.epoch + 1, 0, [0.0, 0]
        self.log(
            f"epoch {row[0]:3d}/{self.s['epochs']}  train loss {row[1]:.4f}  "
            f"test loss {test_loss:.4f}  test acc {100 * test_acc:6.2f}%  ({seconds:.1f} s)"
        )
        self.save()
        if g.is_root:
            _write_csv(self.history, self.out / "metrics.csv")

    def fit(self) -> int:
        s = self.s
        self.log(
            f"training {s['model']} on {s['dataset']} ({len(self.xtr)} train / {len(self.xte)} "
            f"test images, {s['in_channels']}x{s['image_size']}x{s['image_size']}) on "
            f"{self.device}: {s['epochs']} epochs, batch {s['batch_size']}, {s['optimizer']} "
            f"lr {s['lr']:g}"
        )
        t_run = time.perf_counter()
        try:
            with _StopFlag() as stop:
                while self.epoch < s["epochs"]:
                    t0 = time.perf_counter()
                    if not self.run_epoch(stop):
                        raise KeyboardInterrupt
                    self.end_epoch(time.perf_counter() - t0)
        except KeyboardInterrupt:
            if self.group.size > 1 and not self.agreed_stop:  # ranks out of step: stop them all
                self.group.abort(130)  # (checkpoints are written whole or not at all)
            if self.in_step:  # parameters half updated: keep the last consistent checkpoint
                last = self.path if self.path.exists() else "none written yet"
                self.log(f"\ninterrupted inside an optimizer step; last checkpoint: {last}")
                return 130
            self.save()
            if self.group.is_root:
                _write_csv(self.history, self.out / "metrics.csv")
            self.log(
                f"\ninterrupted in epoch {self.epoch + 1} after {self.batch} batches: "
                f"checkpoint saved to {self.path}\n"
                f"resume with: numba-cnn train --resume {self.path}"
            )
            return 130
        if self.history["epoch"] and self.group.is_root:
            from . import plots

            paths = plots.plot_all(
                self.model, self.history, self.xte, self.out, self.device, self.yte, s["classes"]
            )
            self.log(
                f"done in {time.perf_counter() - t_run:.1f} s: test accuracy "
                f"{100 * self.history['test_acc'][-1]:.2f}%; wrote {self.path.name}, "
                f"metrics.csv, {', '.join(p.name for p in paths)} to {self.out}"
            )
        return 0


def train(settings: dict[str, Any], out: Path, ckpt: dict | None = None, log=print) -> int:
    """Run (or resume from ``ckpt``) a training run writing into ``out``; returns 0, or 130
    after a Ctrl-C (which saves a checkpoint that ``--resume`` continues exactly).

    Under ``mpiexec -n P`` it trains data-parallel: ``batch_size`` stays the global batch (it
    must divide by P), rank 0's ``out`` is used and only rank 0 logs and writes files."""
    group = world()
    if group.size > 1:
        if int(settings["batch_size"]) % group.size:
            raise ValueError(
                f"--batch-size {settings['batch_size']} is the global batch and must divide by "
                f"the number of ranks, {group.size}"
            )
        out = Path(group.bcast(str(out)))  # rank 0's choice of run folder
        log = log if group.is_root else _quiet
    if group.is_root:
        out.mkdir(parents=True, exist_ok=True)
    run = _Run(settings, out, ckpt, log, group)
    with cpu_threads(run.s.get("threads", 0), run.s["image_size"], group.local_size):
        return run.fit()


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The log of ranks other than rank 0."""


def world() -> distributed.Group:
    """The MPI world when an MPI launcher started this process, else a world of one (no MPI
    initialised for a plain run)."""
    return distributed.init() if distributed.launched_by_mpi() else distributed.Group()


def read_checkpoint(path: str | Path) -> dict:
    """``nc.load`` a training checkpoint and check it holds what ``train`` wrote (under
    ``mpiexec``: rank 0 reads it and sends it to the others)."""
    return world().from_root(_read_checkpoint, path)


def _read_checkpoint(path: str | Path) -> dict:
    ckpt = load(path)
    missing = [k for k in ("model", "optimizer", "epoch", "settings") if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise ValueError(f"{path} is not a numba-cnn training checkpoint (missing {missing})")
    return ckpt
