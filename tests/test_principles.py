"""``numba-cnn principles --quick``: the JSON's structure, types and ranges, the figures; and
hand-computed cases of the receptive-field, ECE and zero-fill shift helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numba_cnn import cli, nn
from numba_cnn.principles import (
    expected_calibration_error,
    measured_receptive_fields,
    receptive_fields,
)
from numba_cnn.principles._common import shift


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("principles")
    assert cli.main(["principles", "--quick", "--out", str(out)]) == 0
    return out, json.loads((out / "principles.json").read_text())


def is_fraction(v) -> bool:
    return isinstance(v, float) and 0.0 <= v <= 1.0


def test_json_keys_types_and_ranges(quick):
    _, r = quick
    ps = r["parameter_sharing"]
    assert type(ps["conv_params"]) is int and type(ps["dense_params"]) is int
    # 1x8x8 -> 16x8x8: conv 16*1*3*3 + 16; dense 64*1024 + 1024
    assert (ps["conv_params"], ps["dense_params"]) == (160, 66560)
    assert is_fraction(ps["conv_accuracy"]) and is_fraction(ps["dense_accuracy"])
    # the conv written out as a dense matrix: same outputs, only 144 distinct weights
    assert ps["equivalent_dense_max_abs_error"] < 1e-5
    assert ps["equivalent_dense_distinct_values"] == 16 * 9

    tr = r["translation"]
    assert tr["shifts"] == [0, 1, 2, 3]
    for k in ("mlp", "cnn_no_pool", "cnn_pool"):
        assert len(tr[k]) == 4 and all(is_fraction(v) for v in tr[k]), k
        assert tr[k][0] > 0.5, k  # trained: far above chance on unshifted images
    # conv is shift-equivariant away from the border; a shift does change the raw maps
    assert max(tr["feature_change"]["conv1_realigned"]) < 1e-5
    assert tr["feature_change"]["conv1"][1] > 0.05

    h = r["hierarchy"]
    assert h["receptive_field"] == [3, 5, 10]
    assert all(type(v) is int for v in h["receptive_field"])
    assert h["receptive_field_measured"] == h["receptive_field"]

    for act in ("relu", "sigmoid", "tanh"):
        a = r["activations"][act]
        assert isinstance(a["final_loss"], float) and 0 < a["final_loss"] < 10, act
        assert isinstance(a["first_layer_grad_norm"], float) and a["first_layer_grad_norm"] > 0
    # sigmoid's gradient reaching the first layer is orders of magnitude below ReLU's
    acts = r["activations"]
    assert acts["sigmoid"]["first_layer_grad_norm"] < 0.1 * acts["relu"]["first_layer_grad_norm"]

    sm = r["softmax"]
    assert is_fraction(sm["ece"])
    assert sm["loss_at_p"]["0.5"] == pytest.approx(math.log(2), abs=1e-5)
    assert sum(sm["bins"]["count"]) == r["meta"]["test_images"]

    assert isinstance(r["seconds"], float) and r["seconds"] > 0
    assert r["quick"] is True


def test_figures_are_real_pngs(quick):
    out, r = quick
    assert len(r["figures"]) >= 8
    for name in r["figures"]:
        with Image.open(out / name) as im:
            assert im.format == "PNG", name
            assert im.size[0] >= 500 and im.size[1] >= 300, (name, im.size)
            a = np.asarray(im.convert("L"), dtype=np.float64)
        assert a.std() > 5 and len(np.unique(a)) > 20, name  # not blank


def test_receptive_fields_hand_computed():
    # conv3 p1 -> rf 3; conv3 p1 -> 5; pool2 -> 6 (jump 2); conv3 p1 -> 6 + 2*2 = 10
    m = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 3, 3, padding=1),
    )
    r = receptive_fields(m)
    assert [g["rf"] for g in r] == [3, 5, 10]
    assert [g["jump"] for g in r] == [1, 1, 2]
    assert [g["start"] for g in r] == [-1, -2, -4]
    assert measured_receptive_fields(m) == [3, 5, 10]
    # stride 2 then dilation 2: 5; then 5 + (2*(3-1)) * 2 = 13
    m2 = nn.Sequential(nn.Conv2d(1, 2, 5, stride=2, padding=2), nn.Conv2d(2, 2, 3, dilation=2))
    r2 = receptive_fields(m2)
    assert [g["rf"] for g in r2] == [5, 13]
    assert [g["start"] for g in r2] == [-2, -2]
    assert measured_receptive_fields(m2) == [5, 13]


def test_ece_hand_computed():
    probs = np.array(
        [
            [0.95, 0.03, 0.02],  # conf 0.95, right
            [0.04, 0.04, 0.92],  # conf 0.92, wrong (label 0)
            [0.20, 0.65, 0.15],  # conf 0.65, right
            [0.25, 0.20, 0.55],  # conf 0.55, right
        ]
    )
    labels = np.array([0, 0, 1, 2])
    ece, bins = expected_calibration_error(probs, labels, n_bins=10)
    # bin (0.9,1]: 2 of 4, acc 0.5, conf 0.935; (0.6,0.7]: acc 1, conf .65; (0.5,0.6]: 1, .55
    expected = 0.5 * abs(0.5 - 0.935) + 0.25 * abs(1 - 0.65) + 0.25 * abs(1 - 0.55)
    assert ece == pytest.approx(expected, abs=1e-12) and expected == pytest.approx(0.4175)
    assert bins["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    assert bins["accuracy"][9] == 0.5 and bins["accuracy"][0] is None
    # calibrated: 4 predictions at 0.75 of which 3 are right
    p = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(p, np.array([0, 0, 0, 1]))[0] == pytest.approx(0.0)


def test_shift_zero_fill_no_wraparound():
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    y = shift(x, 1, -2)  # one row down, two columns left
    assert y[0, 0, 0].tolist() == [0, 0, 0, 0]
    assert y[0, 0, 1:, :2].tolist() == x[0, 0, :3, 2:].tolist()
    assert not y[0, 0, :, 2:].any()
    assert not shift(x, 4, 0).any()
