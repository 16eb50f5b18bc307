"""MNIST and Fashion-MNIST from their four IDX files (plain or gzip).

IDX format (big-endian): images ``0x00000803`` (2051), count, rows, cols, then count*rows*cols
uint8 pixels; labels ``0x00000801`` (2049), count, then count uint8 labels.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "read_idx_images", "read_idx_labels", "MNIST_FILES"]

#: the four files, as MNIST and Fashion-MNIST ship them (each may also end in ``.gz``)
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"load_mnist: {folder / name} (or {name}.gz) not found in {folder}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"load_mnist: cannot read {path}: {e}") from e


def _header(path: Path, raw: bytes, magic: int, ndims: int) -> tuple[int, ...]:
    size = 4 * (1 + ndims)
    if len(raw) < size:
        raise ValueError(f"load_mnist: {path} is {len(raw)} bytes, too short for an IDX header")
    head = np.frombuffer(raw, dtype=">u4", count=1 + ndims)
    if int(head[0]) != magic:
        raise ValueError(
            f"load_mnist: {path} has magic number {int(head[0])}, expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'} IDX file)"
        )
    dims = tuple(int(d) for d in head[1:])
    expected = size + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(
            f"load_mnist: {path} holds {len(raw)} bytes but its header {dims} needs {expected}"
        )
    return dims


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX image file: ``(N, rows, cols)`` uint8. ValueError naming the file if bad."""
    path = Path(path)
    raw = _read_bytes(path)
    n, rows, cols = _header(path, raw, IMAGES_MAGIC, 3)
    if rows == 0 or cols == 0:
        raise ValueError(f"load_mnist: {path} has empty images ({rows}x{cols})")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Read an IDX label file: ``(N,)`` int64. ValueError naming the file if bad."""
    path = Path(path)
    raw = _read_bytes(path)
    _header(path, raw, LABELS_MAGIC, 1)
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)


def _pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    ipath, lpath = _find(folder, images_name), _find(folder, labels_name)
    images, labels = read_idx_images(ipath), read_idx_labels(lpath)
    if len(images) != len(labels):
        raise ValueError(
            f"load_mnist: {ipath} holds {len(images)} images but {lpath} holds {len(labels)} labels"
        )
    if len(images) == 0:
        raise ValueError(f"load_mnist: {ipath} holds no images")
    return images, labels


def load_mnist(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST (or Fashion-MNIST) from the folder holding its four IDX files.

    Returns ``(x_train, y_train, x_test, y_test)``: x ``(N, 1, H, W)`` float32 in [0, 1]
    (pixel / 255), y int64. A missing folder or file raises ``FileNotFoundError``; a file with
    a wrong magic number, size or count raises ``ValueError`` naming it.

    >>> x_train, y_train, x_test, y_test = load_mnist("~/data/mnist")  # doctest: +SKIP
    >>> x_train.shape, x_test.shape  # doctest: +SKIP
    ((60000, 1, 28, 28), (10000, 1, 28, 28))
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"load_mnist: {folder} is not a folder")
    xtr, ytr = _pair(folder, MNIST_FILES[0], MNIST_FILES[1])
    xte, yte = _pair(folder, MNIST_FILES[2], MNIST_FILES[3])
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(
            f"load_mnist: training images are {xtr.shape[1]}x{xtr.shape[2]} but test images "
            f"are {xte.shape[1]}x{xte.shape[2]} in {_find(folder, MNIST_FILES[2])}"
        )

    def scale(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float32) / np.float32(255.0))[:, None, :, :]

    return scale(xtr), ytr, scale(xte), yte
