"""load_mnist on tiny IDX files written here: plain and gzip, and every kind of corruption."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from numba_cnn.data import load_mnist
from numba_cnn.data.mnist import MNIST_FILES


def idx_images(a: np.ndarray, magic: int = 2051) -> bytes:
    return struct.pack(">4I", magic, *a.shape) + a.astype(np.uint8).tobytes()


def idx_labels(a: np.ndarray, magic: int = 2049) -> bytes:
    return struct.pack(">2I", magic, len(a)) + a.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=7, n_test=5, h=6, w=5, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, h, w)),
        rng.integers(0, 10, n_train),
        rng.integers(0, 256, (n_test, h, w)),
        rng.integers(0, 10, n_test),
    )
    blobs = (idx_images(arrays[0]), idx_labels(arrays[1]))
    blobs += (idx_images(arrays[2]), idx_labels(arrays[3]))
    for name, blob in zip(MNIST_FILES, blobs, strict=True):
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_plain_and_gzip(tmp_path, gz):
    imgs, labels, timgs, tlabels = write_mnist(tmp_path, gz=gz)
    xtr, ytr, xte, yte = load_mnist(tmp_path)
    assert xtr.shape == (7, 1, 6, 5) and xte.shape == (5, 1, 6, 5)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    np.testing.assert_array_equal(xtr[:, 0], (imgs / 255).astype(np.float32))
    np.testing.assert_array_equal(xte[:, 0], (timgs / 255).astype(np.float32))
    np.testing.assert_array_equal(ytr, labels)
    np.testing.assert_array_equal(yte, tlabels)


def corrupt(folder, name, blob):
    (folder / name).write_bytes(blob)


@pytest.mark.parametrize(
    "name, blob, match",
    [
        (MNIST_FILES[0], idx_images(np.zeros((7, 6, 5)), magic=2049), "magic number 2049"),
        (MNIST_FILES[1], idx_labels(np.zeros(7), magic=2051), "magic number 2051"),
        (MNIST_FILES[0], idx_images(np.zeros((7, 6, 5)))[:-3], "header .* needs"),
        (MNIST_FILES[3], idx_labels(np.zeros(5)) + b"\0", "header .* needs"),
        (MNIST_FILES[2], b"\0\0\x08", "too short"),
        (MNIST_FILES[1], idx_labels(np.zeros(6)), "7 images but .* 6 labels"),
        (MNIST_FILES[2], idx_images(np.zeros((5, 5, 5))), "6x5 but test images are 5x5"),
        (MNIST_FILES[2], idx_images(np.zeros((5, 0, 5))), "empty images"),
    ],
    ids=["images-magic", "labels-magic", "short", "long", "no-header", "counts", "size", "empty"],
)
def test_corrupt_file_names_it(tmp_path, name, blob, match):
    write_mnist(tmp_path)
    corrupt(tmp_path, name, blob)
    with pytest.raises(ValueError, match=match) as e:
        load_mnist(tmp_path)
    assert str(tmp_path / name) in str(e.value)


def test_bad_gzip_names_file(tmp_path):
    write_mnist(tmp_path, gz=True)
    (tmp_path / (MNIST_FILES[1] + ".gz")).write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=MNIST_FILES[1] + ".gz"):
        load_mnist(tmp_path)


def test_missing_file_and_folder(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / MNIST_FILES[3]).unlink()
    with pytest.raises(FileNotFoundError, match=MNIST_FILES[3]):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_mnist(tmp_path / "nowhere")
