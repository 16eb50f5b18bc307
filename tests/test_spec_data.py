"""SPEC.md conformance, part 4: data loaders, transforms, save/load and the command line.

Public API only: ``import numba_cnn as nc`` and ``from numba_cnn import data, nn, optim``.
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

import numba_cnn as nc
from numba_cnn import data, nn, optim
from numba_cnn.testing import assert_close

ROOT = Path(__file__).resolve().parents[1]


def small_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))


def test_load_digits_and_dataloader():
    xtr, ytr, xte, yte = data.load_digits()
    for x, y in ((xtr, ytr), (xte, yte)):
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.5
        assert set(np.unique(y)) == set(range(10))
    # stratified: each class takes the same share of the test set (within one image)
    share = np.bincount(yte, minlength=10) / (
        np.bincount(ytr, minlength=10) + np.bincount(yte, minlength=10)
    )
    assert share.max() - share.min() < 0.05
    assert np.array_equal(data.load_digits()[3], yte)  # fixed split
    loader = data.DataLoader(xtr, ytr, 100, shuffle=True, seed=3, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == len(xtr) // 100
    xb, yb = batches[0]
    assert xb.shape == (100, 1, 8, 8) and xb.dtype == np.float32 and yb.dtype == np.int64
    again = next(iter(data.DataLoader(xtr, ytr, 100, shuffle=True, seed=3)))
    assert np.array_equal(again[1], yb)
    assert len(data.DataLoader(xtr, ytr, 100)) == math.ceil(len(xtr) / 100)
    tf = data.Normalize(0.5, 0.25)
    out = next(iter(data.DataLoader(xtr, ytr, 10, transform=tf)))[0]
    assert_close(out, (xtr[:10] - 0.5) / 0.25, name="Normalize")
    for t in (data.RandomCrop(8, 2), data.RandomHorizontalFlip()):
        assert next(iter(data.DataLoader(xtr, ytr, 10, transform=t)))[0].shape == (10, 1, 8, 8)


def test_save_load(tmp_path):
    nc.manual_seed(0)
    net = small_net()
    opt = optim.Adam(net.parameters())
    ckpt = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "name": "x"}
    ckpt["settings"] = {"lr": 0.05, "model": "lenet", "sizes": {"batch": 32}}
    path = tmp_path / "ckpt.npz"
    nc.save(ckpt, path)
    back = nc.load(path)
    assert back["epoch"] == 3 and back["name"] == "x"
    assert back["settings"] == ckpt["settings"] and isinstance(back["settings"]["lr"], float)
    assert set(back["model"]) == set(ckpt["model"])
    for k, v in ckpt["model"].items():
        assert np.array_equal(back["model"][k], v) and back["model"][k].dtype == v.dtype
    small_net().load_state_dict(back["model"])
    optim.Adam(net.parameters()).load_state_dict(back["optimizer"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temp file left
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt.npz"):
        nc.load(bad)
    nc.save(ckpt, path)
    with pytest.raises(TypeError):  # a failed save leaves the previous file whole
        nc.save({"model": ckpt["model"], "bad": object()}, path)
    assert nc.load(path)["epoch"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt.npz",
        "corrupt.npz",
    ]
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ValueError, match="foreign.npz"):
        nc.load(foreign)


def test_command_line():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["numba-cnn"] == "numba_cnn.cli:main"
    assert callable(importlib.import_module("numba_cnn.cli").main)
    run = [sys.executable, "-m", "numba_cnn.cli"]
    top = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("train", "eval", "predict", "bench"):
        assert cmd in top
    train = subprocess.run([*run, "train", "--help"], capture_output=True, text=True, check=True)
    for opt in (
        "--dataset",
        "--model",
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--seed",
    ):
        assert opt in train.stdout
    for opt in ("--device", "--out", "--resume", "sgd", "adamw", "cifar10"):
        assert opt in train.stdout
    for cmd, opt in (("eval", "--checkpoint"), ("predict", "--checkpoint")):
        out = subprocess.run([*run, cmd, "--help"], capture_output=True, text=True, check=True)
        assert opt in out.stdout
