"""CIFAR-10 from its python batches (``cifar-10-batches-py``).

Each batch is a pickled dict with ``b"data"`` ((n, 3072) uint8: 1024 red, 1024 green, 1024 blue
values of a 32x32 image, row by row) and ``b"labels"`` (n ints in 0..9). The pickles are read
with an unpickler that only rebuilds NumPy arrays and plain containers, so a foreign pickle
cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_cifar10", "read_cifar_batch", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_PIXELS = 3 * 32 * 32

# what a CIFAR batch pickle may name: NumPy's array reconstruction, nothing else
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _get(d: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch: ``(n, 3, 32, 32)`` uint8 images, ``(n,)`` int64 labels.

    A file that is not such a pickle raises ``ValueError`` naming it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, foreign or malicious pickle: all just "bad file"
        raise ValueError(f"load_cifar10: {path} is not a CIFAR-10 batch pickle: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"load_cifar10: {path} holds a {type(d).__name__}, expected a dict")
    try:
        data, labels = _get(d, "data"), _get(d, "labels")
    except KeyError as e:
        raise ValueError(f"load_cifar10: {path} has no {e.args[0]!r} entry") from None
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise ValueError(
            f"load_cifar10: {path}: data has shape {data.shape} dtype {data.dtype}, "
            f"expected (n, {_PIXELS}) uint8"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(
            f"load_cifar10: {path}: {data.shape[0]} images but labels have shape {labels.shape}"
        )
    if labels.dtype.kind not in "iu" or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"load_cifar10: {path}: labels must be integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load CIFAR-10 from ``cifar-10-batches-py`` (or the folder holding it).

    Returns ``(x_train, y_train, x_test, y_test)``: x ``(N, 3, 32, 32)`` float32 in [0, 1]
    (pixel / 255), y int64 (class names in ``CIFAR10_CLASSES``). A missing file raises
    ``FileNotFoundError``; a corrupt one ``ValueError`` naming it.

    >>> x_train, y_train, x_test, y_test = load_cifar10("~/data")  # doctest: +SKIP
    >>> x_train.shape, x_test.shape  # doctest: +SKIP
    ((50000, 3, 32, 32), (10000, 3, 32, 32))
    """
    folder = Path(path).expanduser()
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise FileNotFoundError(f"load_cifar10: {folder} is not a folder")
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"load_cifar10: {folder / name} not found")
    train = [read_cifar_batch(folder / name) for name in TRAIN_BATCHES]
    xte, yte = read_cifar_batch(folder / TEST_BATCH)

    def scale(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / np.float32(255.0)

    xtr = np.concatenate([x for x, _ in train])
    ytr = np.concatenate([y for _, y in train])
    return scale(xtr), ytr, scale(xte), yte
