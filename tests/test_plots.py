"""The run's PNG plots say what they show: whole-epoch ticks, a colour scale on the filters,
the image's label and the prediction on the feature maps, how many maps are left out."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import plots
from numba_cnn.models import build_model


@pytest.fixture
def figures(monkeypatch):
    """Every figure saved by ``plots``, captured (texts, axes) before it is closed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    seen: list[dict] = []
    save = Figure.savefig

    def capture(fig, *a, **k):
        fig.canvas.draw()
        seen.append(
            {
                "suptitle": fig._suptitle.get_text() if fig._suptitle else "",
                "titles": [t for ax in fig.axes for t in (ax.get_title(), ax.get_title("left"))],
                "axes": fig.axes,
                "xticks": [list(ax.get_xticks()) for ax in fig.axes],
                "ylabels": [ax.get_ylabel() for ax in fig.axes],
            }
        )
        return save(fig, *a, **k)

    monkeypatch.setattr(Figure, "savefig", capture)
    return seen


def test_epoch_ticks_are_whole_numbers(tmp_path, figures):
    h = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4], "test_loss": [0.9, 0.6, 0.5],
         "test_acc": [0.7, 0.8, 0.9]}  # fmt: skip
    plots.plot_curves(h, tmp_path / "curves.png")
    (fig,) = figures
    for ticks in fig["xticks"]:
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_filters_share_one_colour_scale(tmp_path, figures):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    plots.plot_filters(w, tmp_path / "filters.png")
    (fig,) = figures
    assert "weight" in fig["ylabels"]  # the colour bar's axis
    images = [im for ax in fig["axes"] for im in ax.get_images()]
    assert len(images) == 6
    m = float(np.abs(w).max())
    for im in images:  # one symmetric scale for all: colours compare across filters
        assert im.get_clim() == pytest.approx((-m, m))
    figures.clear()
    plots.plot_filters(rng.standard_normal((4, 3, 3, 3)), tmp_path / "rgb.png")
    assert "RGB" in figures[0]["suptitle"]


def test_feature_maps_name_label_prediction_and_hidden_maps(tmp_path, figures):
    nc.manual_seed(0)
    model = build_model("lenet", 1, 8, 10).eval()  # 32 and 64 maps: 16 of each shown
    image = np.random.default_rng(1).random((1, 8, 8), dtype=np.float32)
    k = int(model(image[None]).argmax())
    classes = [f"c{i}" for i in range(10)]
    plots.plot_feature_maps(model, image, tmp_path / "fm.png", label=3, classes=classes)
    (fig,) = figures
    assert f"label c3, predicted c{k} (p=" in fig["suptitle"]
    titles = " | ".join(fig["titles"])
    assert "first 16 of 32 maps shown" in titles and "first 16 of 64 maps shown" in titles
