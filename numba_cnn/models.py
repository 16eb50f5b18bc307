"""Model builders sized for the input: ``lenet`` (LeNet-style) and ``vgg_small`` (VGG-style),
and ``from_checkpoint``: a ``numba-cnn train`` checkpoint as a model.

>>> import numpy as np, numba_cnn as nc
>>> _ = nc.manual_seed(0)
>>> model = build_model("lenet", in_channels=1, image_size=8, num_classes=10)
>>> model.eval()(np.zeros((2, 1, 8, 8), np.float32)).shape
(2, 10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from . import nn

__all__ = ["lenet", "vgg_small", "build_model", "from_checkpoint", "MODELS", "conv_layers"]


def _out(size: int, k: int, p: int) -> int:
    return size + 2 * p - k + 1


def lenet(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> nn.Sequential:
    """A LeNet-style net: two conv-batchnorm-relu-maxpool blocks, then two or three dense layers.

    Images of 16 pixels and more get LeNet-5's shape (5x5 convs with 6 and 16 filters, dense
    120-84; 28x28 inputs are padded by 2 as in the original); smaller ones (the 8x8 digits)
    get 3x3 "same" convs with 32 and 64 filters and a 128-unit dense layer.

    >>> lenet(1, 28, 10)[-1]
    Linear(in_features=84, out_features=10, bias=True)
    """
    if image_size < 4:
        raise ValueError(f"lenet: image_size must be >= 4, got {image_size}")
    if image_size < 16:
        (c1, c2), k, (p1, p2), hidden = (32, 64), 3, (1, 1), (128,)
    else:
        (c1, c2), k, (p1, p2), hidden = (6, 16), 5, (2 if image_size <= 28 else 0, 0), (120, 84)
    s = _out(image_size, k, p1) // 2
    s = _out(s, k, p2) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, c1, k, padding=p1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, k, padding=p2),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    features = c2 * s * s
    for h in hidden:
        layers += [nn.Linear(features, h), nn.ReLU()]
        features = h
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def vgg_small(
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    widths: Sequence[int] = (32, 64, 128),
) -> nn.Sequential:
    """A small VGG-style net: per width two 3x3 conv-batchnorm-relu layers and a 2x2 max-pool
    (while the image is at least 2 pixels), then global average pooling and one dense layer.

    >>> vgg_small(3, 32, 10)[-1]
    Linear(in_features=128, out_features=10, bias=True)
    """
    layers: list[nn.Module] = []
    c, s = in_channels, image_size
    for w in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        if s >= 2:
            layers.append(nn.MaxPool2d(2))
            s //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


MODELS = {"lenet": lenet, "vgg": vgg_small}


def build_model(name: str, in_channels: int, image_size: int, num_classes: int) -> nn.Sequential:
    """``MODELS[name](in_channels, image_size, num_classes)``; names ``"lenet"``, ``"vgg"``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](int(in_channels), int(image_size), int(num_classes))


def from_checkpoint(path: str | os.PathLike, *, device: str = "cpu") -> nn.Sequential:
    """The model of a ``numba-cnn train`` checkpoint with its trained weights, in eval mode,
    on ``device`` (``"cpu"`` or ``"cuda"``). The run's settings, class names among them, are
    in ``nc.load(path)["settings"]``.

    >>> model = from_checkpoint("runs/digits-lenet/checkpoint.npz")  # doctest: +SKIP
    >>> model(x_test[:4]).argmax(1)  # doctest: +SKIP
    """
    from .train import read_checkpoint  # train imports this module

    ckpt = read_checkpoint(path)
    s = ckpt["settings"]
    model = build_model(s["model"], s["in_channels"], s["image_size"], s["num_classes"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The model's ``Conv2d`` layers with their names, in order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
