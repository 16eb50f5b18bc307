"""load_cifar10 on tiny batch pickles written here, and on corrupt or foreign ones."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from numba_cnn.data import load_cifar10

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batch(path, data, labels, protocol=2):
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f, protocol)


def write_cifar(root, n=3, seed=0):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    out = {}
    for name in NAMES:
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        write_batch(folder / name, data, labels)
        out[name] = (data, labels)
    return folder, out


@pytest.mark.parametrize("parent", [False, True])
def test_load_folder_or_parent(tmp_path, parent):
    folder, batches = write_cifar(tmp_path)
    xtr, ytr, xte, yte = load_cifar10(tmp_path if parent else folder)
    assert xtr.shape == (15, 3, 32, 32) and xte.shape == (3, 3, 32, 32)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    data, labels = batches["data_batch_2"]
    # channel-major rows: the first 1024 values are the red plane, row by row
    np.testing.assert_array_equal(xtr[3:6, 0, 0, :], data[:, :32] / np.float32(255))
    np.testing.assert_array_equal(xtr[3:6, 2, 31, :], data[:, -32:] / np.float32(255))
    np.testing.assert_array_equal(ytr[3:6], labels)
    np.testing.assert_array_equal(yte, batches["test_batch"][1])
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"garbage, not a pickle", "not a CIFAR-10 batch pickle"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels' entry"),
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}, r"\(2, 3000\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "2 images but labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, "labels must be"),
        ([1, 2, 3], "holds a list"),
        ({b"data": Evil(), b"labels": [1]}, "forbidden global"),
    ],
    ids=["garbage", "no-labels", "size", "dtype", "count", "range", "list", "code"],
)
def test_corrupt_batch_names_file(tmp_path, payload, match):
    folder, _ = write_cifar(tmp_path)
    path = folder / "data_batch_4"
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match=match) as e:
        load_cifar10(folder)
    assert str(path) in str(e.value)


def test_truncated_batch(tmp_path):
    folder, _ = write_cifar(tmp_path)
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(tmp_path)


def test_missing_batch(tmp_path):
    folder, _ = write_cifar(tmp_path)
    (folder / "data_batch_5").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_5"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_cifar10(tmp_path / "nowhere")
