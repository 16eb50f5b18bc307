"""Every layer: forward against the NumPy reference, backward (dx and parameter gradients)
gradchecked in float64, and the layer's plumbing against the functional ops."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import functional as F
from numba_cnn import nn
from numba_cnn.testing import assert_close, gradcheck, on, randn
from numba_cnn.testing import reference as R


def _bn_eval():
    bn = nn.BatchNorm2d(3, eps=1e-3)
    bn.running_mean[...] = randn((3,), seed=40)
    bn.running_var[...] = np.abs(randn((3,), seed=41)) + 0.5
    bn.weight.data[...] = randn((3,), seed=42)
    bn.bias.data[...] = randn((3,), seed=43)
    return bn.eval()


def _ref_bn(m, x):
    rm, rv = np.array(m.running_mean, np.float64), np.array(m.running_var, np.float64)
    return R.batch_norm(x, rm, rv, m.weight.data, m.bias.data, m.training, m.momentum, m.eps)[0]


def _ref_conv(m, x):
    b = m.bias.data if m.bias is not None else None
    return R.conv2d(x, m.weight.data, b, m.stride, m.padding, m.dilation, m.groups)


# (id, layer factory, input shape, reference forward on float64 inputs)
LAYERS = [
    ("conv", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 5, 4), _ref_conv),
    (
        "conv_same_groups_nobias",
        lambda: nn.Conv2d(4, 4, (3, 2), padding="same", groups=2, bias=False),
        (1, 4, 5, 6),
        _ref_conv,
    ),
    ("conv_dilated", lambda: nn.Conv2d(2, 3, 3, dilation=2), (2, 2, 7, 7), _ref_conv),
    (
        "linear",
        lambda: nn.Linear(5, 3),
        (4, 5),
        lambda m, x: R.linear(x, m.weight.data, m.bias.data),
    ),
    (
        "linear_nobias",
        lambda: nn.Linear(5, 3, bias=False),
        (1, 5),
        lambda m, x: R.linear(x, m.weight.data),
    ),
    ("maxpool", lambda: nn.MaxPool2d(2), (2, 3, 6, 5), lambda m, x: R.max_pool2d(x, 2)),
    (
        "maxpool_overlap",
        lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        (1, 2, 7, 6),
        lambda m, x: R.max_pool2d(x, 3, 2, 1, 1, True),
    ),
    ("avgpool", lambda: nn.AvgPool2d(2), (2, 3, 6, 5), lambda m, x: R.avg_pool2d(x, 2)),
    (
        "avgpool_pad",
        lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        (1, 2, 7, 6),
        lambda m, x: R.avg_pool2d(x, 3, 2, 1, False, False),
    ),
    (
        "adaptive",
        lambda: nn.AdaptiveAvgPool2d((1, 1)),
        (2, 3, 4, 5),
        lambda m, x: x.mean(axis=(2, 3), keepdims=True),
    ),
    ("relu", nn.ReLU, (2, 3, 4, 5), lambda m, x: R.relu(x)),
    ("leaky", lambda: nn.LeakyReLU(0.2), (3, 7), lambda m, x: R.leaky_relu(x, 0.2)),
    ("sigmoid", nn.Sigmoid, (2, 3, 4), lambda m, x: R.sigmoid(x)),
    ("tanh", nn.Tanh, (5, 4), lambda m, x: R.tanh(x)),
    ("softmax_dim1", lambda: nn.Softmax(dim=1), (2, 3, 4), lambda m, x: R.softmax(x, 1)),
    ("softmax", nn.Softmax, (3, 5), lambda m, x: R.softmax(x, -1)),
    ("flatten", nn.Flatten, (2, 3, 2, 2), lambda m, x: x.reshape(2, 12)),
    ("flatten_1_2", lambda: nn.Flatten(1, 2), (2, 3, 4, 5), lambda m, x: x.reshape(2, 12, 5)),
    ("batchnorm_train", lambda: nn.BatchNorm2d(3), (4, 3, 3, 2), _ref_bn),
    ("batchnorm_eval", _bn_eval, (2, 3, 3, 2), _ref_bn),
    ("dropout_eval", lambda: nn.Dropout(0.3).eval(), (3, 4), lambda m, x: x),
]
IDS = [c[0] for c in LAYERS]


@pytest.mark.parametrize("name, make, shape, ref", LAYERS, ids=IDS)
def test_forward_matches_reference(name, make, shape, ref):
    nc.manual_seed(1)
    m = make()
    x = randn(shape, seed=2)
    expected = ref(m, x.astype(np.float64))  # before the forward updates any running stats
    y = m(x)
    assert y.dtype == np.float32
    assert_close(y, expected)


def layer_gradcheck(m, x):
    """Gradcheck ``m`` w.r.t. its input and every parameter (float64)."""
    m.double()
    params = [p for _, p in m.named_parameters()]

    def set_params(ws):
        for p, w in zip(params, ws, strict=True):
            p.data = w

    def f(x, *ws):
        set_params(ws)
        return m(x)

    def backward(dy, x, *ws):
        set_params(ws)
        m.zero_grad()
        m(x)
        dx = m.backward(dy)
        return (dx, *[p.grad for p in params])

    gradcheck(f, [x, *[p.data.copy() for p in params]], backward, name=type(m).__name__)


@pytest.mark.parametrize("name, make, shape, ref", LAYERS, ids=IDS)
def test_backward_gradcheck(name, make, shape, ref):
    nc.manual_seed(3)
    layer_gradcheck(make(), randn(shape, np.float64, seed=4))


def test_sequential_gradcheck_and_need_dx():
    nc.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 4),
    )
    x = randn((2, 2, 4, 4), np.float64, seed=6)
    layer_gradcheck(model, x)
    # need_dx=False skips only the first layer's input gradient
    dy = randn((2, 4), np.float64, seed=7)
    model.zero_grad()
    model(x)
    dx = model.backward(dy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    assert model.backward(dy, need_dx=False) is None
    for g, p in zip(grads, model.parameters(), strict=True):
        assert np.array_equal(g, p.grad)
    assert dx.shape == x.shape


def test_conv_and_linear_accumulate_the_functional_gradients():
    nc.manual_seed(8)
    conv = nn.Conv2d(3, 4, 3, stride=(2, 1), padding=(1, 0), groups=1)
    x, dy = randn((2, 3, 5, 6), seed=9), randn((2, 4, 3, 4), seed=10)
    conv(x)
    dx = conv.backward(dy)
    edx, edw, edb = F.conv2d_backward(dy, x, conv.weight.data, (2, 1), (1, 0), 1, 1)
    assert_close(dx, edx)
    assert_close(conv.weight.grad, edw)
    assert_close(conv.bias.grad, edb)
    lin = nn.Linear(6, 2)
    x, dy = randn((3, 6), seed=11), randn((3, 2), seed=12)
    lin(x)
    assert lin.backward(dy, need_dx=False) is None
    _, edw, edb = F.linear_backward(dy, x, lin.weight.data)
    assert_close(lin.weight.grad, edw)
    assert_close(lin.bias.grad, edb)


def test_batchnorm_running_stats_and_counter():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    x = randn((4, 3, 2, 3), seed=13)
    bn(x)
    bn(x)
    mean = x.astype(np.float64).mean(axis=(0, 2, 3))
    var = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)  # unbiased, as PyTorch
    assert_close(bn.running_mean, mean * (1 - 0.8**2))
    assert_close(bn.running_var, 0.8**2 + var * (1 - 0.8**2))
    assert int(bn.num_batches_tracked) == 2 and bn.num_batches_tracked.dtype == np.int64
    bn.eval()
    before = bn.running_mean.copy()
    bn(x)
    assert np.array_equal(bn.running_mean, before) and int(bn.num_batches_tracked) == 2
    # momentum=None: cumulative average of the batch statistics
    cum = nn.BatchNorm2d(3, momentum=None)
    x2 = randn((4, 3, 2, 3), seed=14)
    cum(x)
    cum(x2)
    mean2 = x2.astype(np.float64).mean(axis=(0, 2, 3))
    assert_close(cum.running_mean, (mean + mean2) / 2)


def test_cross_entropy_loss():
    logits, labels = randn((5, 7), seed=15), np.array([0, 6, 3, 3, 1], np.int32)
    crit = nn.CrossEntropyLoss()
    loss = crit(logits, labels)
    assert loss.shape == () and loss.dtype == np.float32
    assert_close(loss, R.cross_entropy(logits, labels))
    d = crit.backward()
    assert_close(d, R.cross_entropy_backward(logits, labels))
    assert_close(crit.backward(2.5), 2.5 * R.cross_entropy_backward(logits, labels))


def test_dropout_training_uses_the_mask_and_is_seeded(device):
    x, dy = randn((4, 50), seed=16), randn((4, 50), seed=17)
    xd, dyd = on(device, x, dy)
    d = nn.Dropout(0.25)
    nc.manual_seed(3)
    y = d(xd)
    mask = nc.to_host(d._mask)
    assert nc._cuda.is_device_array(y) == (device == "cuda")
    assert_close(y, R.dropout_apply(x, mask, 0.25))
    assert_close(d.backward(dyd), R.dropout_backward(dy, mask, 0.25))
    dropped = nc.to_host(y) == 0
    assert 0.1 < dropped.mean() < 0.4
    nc.manual_seed(3)
    assert np.array_equal(nc.to_host(nn.Dropout(0.25)(xd)), nc.to_host(y))
    d.eval()
    assert d(xd) is xd and d.backward(dyd) is dyd


DEVICE_LAYERS = [c for c in LAYERS if not c[0].startswith(("conv", "linear"))]  # those two: in
# the training-step test


@pytest.mark.skipif(not nc.cuda_available(), reason="no GPU and no simulator")
@pytest.mark.parametrize("name, make, shape, ref", DEVICE_LAYERS, ids=[c[0] for c in DEVICE_LAYERS])
def test_layer_on_device_matches_cpu(name, make, shape, ref):
    nc.manual_seed(1)
    cpu, gpu = make(), make().to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = randn(shape, seed=2)
    y = cpu(x)
    yd = gpu(nc.to_device(x))
    assert nc._cuda.is_device_array(yd)
    assert_close(yd, y)
    dy = randn(tuple(y.shape), seed=3)
    dx = cpu.backward(dy)
    dxd = gpu.backward(nc.to_device(dy))
    assert nc._cuda.is_device_array(dxd)
    assert_close(dxd, dx)
    for (k, p), (_, pd) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        assert nc._cuda.is_device_array(pd.grad)
        assert_close(pd.grad, p.grad, name=k)
    for k, v in cpu.state_dict().items():  # running statistics updated alike
        assert_close(gpu.state_dict()[k], v, name=k)
