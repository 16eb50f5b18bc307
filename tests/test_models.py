"""Model builders: output shapes for each data set's input, LeNet-5's shape, a training step."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import nn
from numba_cnn.models import build_model, conv_layers, lenet, vgg_small


@pytest.mark.parametrize(
    "name, c, size, k",
    [("lenet", 1, 8, 10), ("lenet", 1, 28, 10), ("lenet", 3, 32, 10), ("lenet", 1, 17, 4),
     ("vgg", 3, 32, 10), ("vgg", 1, 8, 7), ("vgg", 3, 9, 3)],
)  # fmt: skip
def test_output_shapes(name, c, size, k):
    nc.manual_seed(0)
    model = build_model(name, c, size, k).eval()
    x = np.random.default_rng(0).random((3, c, size, size), dtype=np.float32)
    y = model(x)
    assert y.shape == (3, k) and y.dtype == np.float32 and np.isfinite(y).all()


def test_lenet5_shape_for_mnist_and_cifar():
    for c, size in [(1, 28), (3, 32)]:
        m = lenet(c, size, 10)
        convs = [conv for _, conv in conv_layers(m)]
        assert [conv.weight.shape for conv in convs] == [(6, c, 5, 5), (16, 6, 5, 5)]
        dense = [mod for mod in m if isinstance(mod, nn.Linear)]
        assert [d.weight.shape for d in dense][1:] == [(84, 120), (10, 84)]
    assert lenet(1, 28, 10)[-5].weight.shape == (120, 400)  # 16 x 5 x 5, as LeNet-5
    assert lenet(3, 32, 10)[-5].weight.shape == (120, 400)  # 32 unpadded: 28, 14, 10, 5
    assert lenet(1, 8, 10)[0].weight.shape == (32, 1, 3, 3)


def test_vgg_is_conv_bn_relu_blocks():
    m = vgg_small(3, 32, 10)
    kinds = [type(mod).__name__ for mod in m]
    assert kinds[:7] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["MaxPool2d"]
    assert kinds.count("MaxPool2d") == 3 and kinds[-3:] == [
        "AdaptiveAvgPool2d",
        "Flatten",
        "Linear",
    ]
    assert len(conv_layers(m)) == 6


def test_unknown_model_and_tiny_image():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", 1, 8, 10)
    with pytest.raises(ValueError, match="image_size must be >= 4"):
        lenet(1, 3, 10)


@pytest.mark.parametrize("name", ["lenet", "vgg"])
def test_one_training_step_lowers_the_loss(name):
    nc.manual_seed(1)
    model = build_model(name, 1, 8, 10)
    opt = nc.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 16)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        losses.append(float(crit(model(x), y)))
        assert model.backward(crit.backward(), need_dx=False) is None
        opt.step()
    assert losses[-1] < losses[0]
