"""What a new user meets first: numbered run folders and the --overwrite guard, --epochs 0,
--version, bench's usage line, predict's conversion notes, a file that is not a checkpoint,
the compiling-kernels notice and a progress bar whose ETA leaves the compile out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import numba_cnn as nc
from numba_cnn import cli
from numba_cnn import train as T

SMALL = ["--limit", "96", "--batch-size", "16", "--seed", "3", "--device", "cpu"]


def train(out: Path, *extra: str) -> int:
    return cli.main(["train", *SMALL, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run2(tmp_path_factory) -> Path:
    """A finished 1-epoch run (named as in test_cli.py, whose tests these were)."""
    out = tmp_path_factory.mktemp("run1")
    assert train(out, "--epochs", "1") == 0
    return out


def test_predict_says_what_conversion_it_applied(run2, tmp_path, capsys):
    rng = np.random.default_rng(5)
    rgb = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)).save(rgb)
    rgba = tmp_path / "sticker.png"
    Image.fromarray(rng.integers(0, 256, (10, 12, 4)).astype(np.uint8)).save(rgba)
    grey = tmp_path / "grey.png"
    Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8)).save(grey)
    argv = ["predict", "--checkpoint", str(run2 / "checkpoint.npz"), "--device", "cpu"]
    assert cli.main([*argv, str(rgb), str(rgba), str(grey)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("[converted RGB 64x48 -> grey 8x8]")
    assert lines[1].endswith("[converted RGBA 12x10 -> grey 8x8, transparency over black]")
    assert "[" not in lines[2]  # already an 8x8 grey image: nothing to say
    assert cli.main([*argv, "--invert", str(grey)]) == 0
    assert capsys.readouterr().out.strip().endswith("[inverted]")
    # transparent pixels are background: black, or white before --invert
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (200, 10, 10, 0)).save(clear)
    assert np.all(cli.load_image(clear, 1, 8) == 0.0)
    assert np.all(cli.load_image(clear, 1, 8, invert=True) == 0.0)
    ink = cli.load_image(grey, 1, 8, invert=True)
    np.testing.assert_allclose(ink, 1.0 - cli.load_image(grey, 1, 8), atol=1e-6)


def test_checkpoint_that_is_not_one(tmp_path, capsys):
    png = tmp_path / "digit.png"
    Image.new("L", (8, 8)).save(png)
    for cmd in (
        ["predict", "--checkpoint", str(png), str(png)],
        ["eval", "--checkpoint", str(png)],
    ):
        assert cli.main(cmd) == 2
        err = capsys.readouterr().err
        assert "not a numba_cnn checkpoint" in err and str(png) in err
        assert "pickle" not in err


def test_runs_are_never_replaced_silently(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny = ["train", "--limit", "32", "--batch-size", "16", "--epochs", "1", "--device", "cpu"]
    for _ in range(3):  # no --out: a new numbered folder each time
        assert cli.main(tiny) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["digits-lenet", "digits-lenet-2", "digits-lenet-3"]
    assert "to runs/digits-lenet-3" in capsys.readouterr().out
    # an --out holding a checkpoint is refused, naming --resume and --overwrite
    first = tmp_path / "runs" / "digits-lenet" / "checkpoint.npz"
    before = first.read_bytes()
    assert cli.main([*tiny, "--seed", "9", "--out", "runs/digits-lenet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert first.read_bytes() == before
    resumed = ["train", "--resume", str(first), "--epochs", "2"]
    assert cli.main([*resumed, "--out", "runs/digits-lenet-2"]) == 2  # someone else's run
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*tiny, "--seed", "9", "--out", "runs/digits-lenet", "--overwrite"]) == 0
    assert first.read_bytes() != before and nc.load(first)["settings"]["seed"] == 9
    assert cli.main(resumed) == 0  # --resume continues into its own folder
    assert nc.load(first)["epoch"] == 2


def test_epochs_must_be_positive(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "0") == 2
    assert "--epochs: must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.npz").exists()


def test_version_and_bench_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"numba-cnn {nc.__version__}"
    if cli.bench_candidates()[-1].is_file():  # a source checkout: the real benchmarks/run.py
        assert cli.main(["bench", "--help"]) == 0
        assert capsys.readouterr().out.startswith("usage: numba-cnn bench")


def test_compile_notice_only_when_slow(monkeypatch):
    import time

    said: list[str] = []
    monkeypatch.setattr(T, "_notice_shown", False)
    with T.compile_notice(said.append, after=0.5):
        pass  # quick (a warm cache): nothing said
    with T.compile_notice(said.append, after=0.05):
        time.sleep(0.3)
    with T.compile_notice(said.append, after=0.05):
        time.sleep(0.3)  # said once a process
    assert said == [T.COMPILE_NOTICE]


def test_slow_first_step_says_compiling_and_keeps_a_sane_eta(
    tmp_path, monkeypatch, capsys, wrap_step
):
    import re
    import time

    monkeypatch.setattr(T, "_notice_shown", False)
    wrap_step(1, lambda: time.sleep(1.5))  # as long as a first compile
    assert train(tmp_path, "--epochs", "1") == 0
    out, err = capsys.readouterr()
    assert T.COMPILE_NOTICE in out
    rates = [float(v) for v in re.findall(r"([0-9.]+)s/batch", err)]
    assert all(r < 1.0 for r in rates), rates  # the compile is not counted as a batch
