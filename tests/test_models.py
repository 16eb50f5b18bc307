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


def test_from_checkpoint_rebuilds_the_trained_model(tmp_path):
    from numba_cnn.models import from_checkpoint

    nc.manual_seed(2)
    model = build_model("lenet", 1, 8, 10)
    opt = nc.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    rng = np.random.default_rng(3)
    x, y = rng.random((8, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 8)
    crit(model(x), y)  # one step: weights and batch-norm running stats move off their init
    model.backward(crit.backward(), need_dx=False)
    opt.step()
    settings = {"model": "lenet", "in_channels": 1, "image_size": 8, "num_classes": 10}
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}
    nc.save({**ckpt, "settings": settings}, tmp_path / "checkpoint.npz")

    nc.manual_seed(99)  # a different init: everything must come from the file
    back = from_checkpoint(tmp_path / "checkpoint.npz")
    assert isinstance(back, nn.Module) and not back.training
    assert all(not m.training for m in back.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(back(x), model.eval()(x))

    nc.save({"w": np.ones(2)}, tmp_path / "other.npz")
    with pytest.raises(ValueError, match="not a numba-cnn training checkpoint"):
        from_checkpoint(tmp_path / "other.npz")


def test_no_gpu_errors_are_friendly():
    """Without a GPU (and without the simulator), nc.to_device and model.cuda() raise a
    RuntimeError saying so, not Numba's CudaSupportError."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, numba_cnn as nc\n"
        "if nc.cuda_available(): raise SystemExit(3)\n"
        "for f in (lambda: nc.to_device(np.ones(2)), lambda: nc.nn.Linear(2, 2).cuda()):\n"
        "    try:\n"
        "        f()\n"
        "    except RuntimeError as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode == 3:
        pytest.skip("a CUDA GPU is available here")
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 2 and all("no CUDA GPU is available" in line for line in lines), lines
