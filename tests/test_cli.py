"""The numba-cnn command on a small digits subset: train, the files it writes, eval, predict,
resume continuing the same curve, Ctrl-C checkpoints, bench."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import numba_cnn as nc
import numba_cnn._cuda as _cuda
from numba_cnn import cli
from numba_cnn import train as T
from numba_cnn.data import DataLoader, load_digits

# 96 training images in batches of 16: 6 batches per epoch; 96 test images
SMALL = ["--limit", "96", "--batch-size", "16", "--seed", "3", "--device", "cpu"]
FILES = ["checkpoint.npz", "metrics.csv", "curves.png", "filters.png", "feature_maps.png"]


def train(out: Path, *extra: str) -> int:
    return cli.main(["train", *SMALL, "--out", str(out), *extra])


def curve(out: Path) -> np.ndarray:
    """epoch, train loss, test loss, test accuracy of each epoch (not the timings)."""
    return np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1, ndmin=2)[:, :4]


@pytest.fixture(scope="module")
def run2(tmp_path_factory) -> Path:
    """A finished 2-epoch run, the reference curve for the resume tests."""
    out = tmp_path_factory.mktemp("run2")
    assert train(out, "--epochs", "2") == 0
    return out


def test_train_writes_checkpoint_metrics_and_plots(run2):
    for name in FILES:
        assert (run2 / name).is_file(), name
    for name in FILES[2:]:
        with Image.open(run2 / name) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 100
    c = curve(run2)
    assert c.shape == (2, 4) and list(c[:, 0]) == [1, 2]
    assert c[1, 1] < c[0, 1]  # the training loss goes down
    ck = nc.load(run2 / "checkpoint.npz")
    assert ck["epoch"] == 2 and ck["batch"] == 0
    s = ck["settings"]
    assert (s["dataset"], s["model"], s["optimizer"], s["batch_size"]) == (
        "digits",
        "lenet",
        "adam",
        16,
    )
    assert (s["in_channels"], s["image_size"], s["num_classes"]) == (1, 8, 10)
    model, opt = T.build_from_checkpoint(ck, "cpu")
    assert set(ck["model"]) == set(model.state_dict())
    assert opt.state_dict()["state"], "optimizer state (Adam moments) is saved"
    np.testing.assert_allclose(ck["history"]["test_acc"], c[:, 3], rtol=1e-5)


def test_train_prints_epochs(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "1", "--model", "vgg") == 0
    out = capsys.readouterr().out
    assert "training vgg on digits (96 train / 96 test images, 1x8x8) on cpu" in out
    assert "epoch   1/1  train loss" in out and "test acc" in out and "done in" in out


def test_eval_reports_the_last_epoch(run2, capsys):
    assert cli.main(["eval", "--checkpoint", str(run2 / "checkpoint.npz"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy ")[1].split("%")[0])
    assert acc == pytest.approx(100 * curve(run2)[-1, 3], abs=0.006)
    assert "(96 images)" in out


def test_predict_images(run2, tmp_path, capsys):
    _, _, xte, _ = load_digits()
    ck = nc.load(run2 / "checkpoint.npz")
    model, _ = T.build_from_checkpoint(ck, "cpu")
    expected = model.eval()(xte[:4]).argmax(1)
    paths = []
    for i in range(4):
        a = np.round(xte[i, 0] * 255).astype(np.uint8)
        im = Image.fromarray(a)
        if i % 2:  # an RGB, larger JPEG-free copy: converted to grey and resized to 8x8
            im = im.convert("RGB").resize((8, 8))
        paths.append(tmp_path / f"digit{i}.png")
        im.save(paths[-1])
    odd = ("digit1.png", "digit3.png")  # saved as RGB: the line says so
    argv = ["predict", "--checkpoint", str(run2 / "checkpoint.npz"), "--device", "cpu"]
    assert cli.main([*argv, *map(str, paths)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for line, path, k in zip(lines, paths, expected, strict=True):
        assert line.startswith(f"{path}: {k} (p=")
        assert 0.0 < float(line.split("p=")[1].split(")")[0]) <= 1.0
        assert line.endswith("[converted RGB 8x8 -> grey 8x8]") == (path.name in odd)
    x = cli.load_image(paths[0], 1, 8)
    assert x.shape == (1, 8, 8) and np.abs(x - xte[0]).max() <= 0.5 / 255 + 1e-7
    # a bad file among good ones: every image gets its line, in order, and the exit is 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    assert cli.main([*argv, str(paths[0]), str(bad), str(missing), str(paths[2])]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{paths[0]}: {expected[0]} (p=")
    assert lines[1].startswith(f"{bad}: error: cannot read image")
    assert lines[2].startswith(f"{missing}: error: cannot read image")
    assert lines[3].startswith(f"{paths[2]}: {expected[2]} (p=")
    assert "predict: error: predict:" not in out + err and "2 of 4 images failed" in err


def test_resume_continues_the_same_curve(run2, tmp_path):
    assert train(tmp_path, "--epochs", "1") == 0
    np.testing.assert_array_equal(curve(tmp_path), curve(run2)[:1])
    assert cli.main(["train", "--resume", str(tmp_path / "checkpoint.npz"), "--epochs", "2"]) == 0
    np.testing.assert_allclose(curve(tmp_path), curve(run2), rtol=1e-6)
    assert all((tmp_path / name).is_file() for name in FILES)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(
    run2, tmp_path, monkeypatch, capsys, wrap_step
):
    # a real SIGINT during batch 4 of epoch 2: that batch finishes, then the run stops
    wrap_step(10, lambda: signal.raise_signal(signal.SIGINT))
    assert train(tmp_path, "--epochs", "2") == 130
    assert "resume with: numba-cnn train --resume" in capsys.readouterr().out
    ck = nc.load(tmp_path / "checkpoint.npz")
    assert (ck["epoch"], ck["batch"]) == (1, 4)
    assert not (tmp_path / "curves.png").exists()
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert cli.main(["train", "--resume", str(tmp_path / "checkpoint.npz")]) == 0
    np.testing.assert_allclose(curve(tmp_path), curve(run2), rtol=1e-6)


def test_keyboard_interrupt_between_batches_resumes_exactly(run2, tmp_path, monkeypatch):
    batches = DataLoader.epoch_batches

    def interrupted(self, epoch, start=0):
        for i, b in enumerate(batches(self, epoch, start)):
            if epoch == 0 and i == 2:
                raise KeyboardInterrupt
            yield b

    monkeypatch.setattr(DataLoader, "epoch_batches", interrupted)
    assert train(tmp_path, "--epochs", "2") == 130
    ck = nc.load(tmp_path / "checkpoint.npz")
    assert (ck["epoch"], ck["batch"], ck["partial"][1]) == (0, 2, 32)
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(tmp_path / "checkpoint.npz")]) == 0
    np.testing.assert_allclose(curve(tmp_path), curve(run2), rtol=1e-6)


def test_interrupt_inside_a_step_keeps_the_last_epoch_checkpoint(
    tmp_path, monkeypatch, capsys, wrap_step
):
    def boom():
        raise KeyboardInterrupt

    wrap_step(8, boom)  # epoch 2, batch 2
    assert train(tmp_path, "--epochs", "2") == 130
    assert "inside an optimizer step" in capsys.readouterr().out
    ck = nc.load(tmp_path / "checkpoint.npz")
    assert (ck["epoch"], ck["batch"]) == (1, 0)


def test_bad_options(run2, tmp_path, capsys):
    ckpt = str(run2 / "checkpoint.npz")
    assert cli.main(["train", "--resume", ckpt, "--lr", "0.1", "--out", str(tmp_path)]) == 2
    assert "--resume takes --lr from the checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "imagenet", "--out", str(tmp_path)]) == 2
    assert "expected digits, mnist:DIR or cifar10:DIR" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", f"mnist:{tmp_path / 'none'}"]) == 2
    assert "not a folder" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK not really")
    assert cli.main(["eval", "--checkpoint", str(junk)]) == 2
    assert str(junk) in capsys.readouterr().err
    assert cli.main(["train", "--resume", ckpt, "--epochs", "2", "--out", str(tmp_path)]) == 0
    assert "already finished 2 epochs" in capsys.readouterr().out


def test_auto_device_never_picks_the_simulator():
    expected = "cuda" if _cuda.available() and not _cuda.SIMULATOR else "cpu"
    assert T.resolve_device("auto") == expected
    if not _cuda.available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            T.resolve_device("cuda")


def test_bench_runs_the_script_or_says_it_is_missing(tmp_path, monkeypatch, capsys):
    script = tmp_path / "benchmarks" / "run.py"
    monkeypatch.setattr(cli, "bench_candidates", lambda: [script])
    assert cli.main(["bench"]) == 2
    assert "benchmarks/run.py not found" in capsys.readouterr().err
    script.parent.mkdir()
    script.write_text(
        "import sys\nprint('bench args', sys.argv[1:])\n"
        "if __name__ == '__main__' and '--fail' in sys.argv:\n    sys.exit(3)\n"
    )
    assert cli.main(["bench", "--quick", "--only", "conv"]) == 0
    assert "bench args ['--quick', '--only', 'conv']" in capsys.readouterr().out
    assert cli.main(["bench", "--fail"]) == 3


def test_module_entry_point_help():
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "numba_cnn.cli", "train", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root).stdout
    for opt in ("--dataset", "--model", "--epochs", "--batch-size", "--lr", "--optimizer",
                "--seed", "--device", "--out", "--resume"):  # fmt: skip
        assert opt in out


def _write_idx(folder: Path, n: int, size: int, rng) -> None:
    import struct

    for prefix, count in (("train", n), ("t10k", n // 2)):
        imgs = rng.integers(0, 256, (count, size, size)).astype(np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        head = struct.pack(">4I", 2051, count, size, size)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(head + imgs.tobytes())
        head = struct.pack(">2I", 2049, count)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(head + labels.tobytes())


def _write_cifar(root: Path, n: int, rng) -> None:
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8)}
        d[b"labels"] = [int(v) for v in rng.integers(0, 10, n)]
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_train_eval_predict_on_mnist_and_cifar_folders(tmp_path, dataset, capsys):
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if dataset == "mnist":
        _write_idx(data_dir, 24, 28, rng)
        shape, n_train, n_test = "1x28x28", 24, 12
    else:
        _write_cifar(data_dir, 4, rng)
        shape, n_train, n_test = "3x32x32", 20, 4
    out = tmp_path / "run"
    argv = ["train", "--dataset", f"{dataset}:{data_dir}", "--epochs", "1", "--batch-size", "8"]
    assert cli.main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"({n_train} train / {n_test} test images, {shape}) on cpu" in printed
    assert all((out / name).is_file() for name in FILES)
    ck = str(out / "checkpoint.npz")
    assert cli.main(["eval", "--checkpoint", ck, "--device", "cpu"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    img = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (40, 30, 3)).astype(np.uint8)).save(img)
    assert cli.main(["predict", "--checkpoint", ck, "--device", "cpu", str(img)]) == 0
    line = capsys.readouterr().out.strip()
    names = [str(i) for i in range(10)] if dataset == "mnist" else list(nc.data.CIFAR10_CLASSES)
    assert line.startswith(f"{img}: ") and line.split(": ")[1].split(" (p=")[0] in names


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_train_on_cuda_device_arrays(tmp_path, monkeypatch, capsys):
    # the CUDA path of the loop (batches, loss reads, eval, plots, checkpoint from the device)
    # with a tiny model and one batch of 2 images, so that it also runs under the simulator
    def tiny(name, c, size, k):
        conv = nc.nn.Conv2d(c, 2, 3, padding=1)
        return nc.nn.Sequential(conv, nc.nn.ReLU(), nc.nn.Flatten(), nc.nn.Linear(2 * size**2, k))

    monkeypatch.setattr(T, "build_model", tiny)
    argv = ["train", "--limit", "2", "--batch-size", "2", "--epochs", "1", "--device", "cuda"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    assert "on cuda" in capsys.readouterr().out
    ck = nc.load(tmp_path / "checkpoint.npz")
    assert isinstance(ck["model"]["0.weight"], np.ndarray) and ck["model"]["0.weight"].shape == (
        2,
        1,
        3,
        3,
    )
    assert all((tmp_path / name).is_file() for name in FILES)
    ckpt = str(tmp_path / "checkpoint.npz")
    assert cli.main(["eval", "--checkpoint", ckpt, "--device", "cuda"]) == 0
    assert "(2 images)" in capsys.readouterr().out
