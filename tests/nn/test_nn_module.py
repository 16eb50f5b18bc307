"""Module machinery: PyTorch names and state dicts, load_state_dict checks, init, modes, devices."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import _cuda, nn
from numba_cnn.testing import assert_close, randn

TORCH_KEYS = [
    ("0.weight", (4, 3, 3, 3)),
    ("0.bias", (4,)),
    ("1.weight", (4,)),
    ("1.bias", (4,)),
    ("1.running_mean", (4,)),
    ("1.running_var", (4,)),
    ("1.num_batches_tracked", ()),
    ("5.weight", (5, 36)),
    ("5.bias", (5,)),
]


def small_net() -> nn.Sequential:
    # (N, 3, 6, 6) -> conv 3x3 pad 1 -> (N, 4, 6, 6) -> pool 2 -> (N, 4, 3, 3) -> 36 -> 5
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 5),
    )


def test_names_and_state_dict_keys_as_pytorch():
    model = small_net()
    assert [n for n, _ in model.named_parameters()] == [
        k for k, _ in TORCH_KEYS if "running" not in k and "num_batches" not in k
    ]
    sd = model.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == TORCH_KEYS
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    nbt = sd["1.num_batches_tracked"]
    assert nbt.dtype == np.int64 and nbt.ndim == 0 and int(nbt) == 0
    assert sd["0.weight"].dtype == np.float32
    # values are copies: editing them leaves the model alone
    sd["0.weight"][...] = 7.0
    assert not np.any(model[0].weight.data == 7.0)


def test_torch_keys_match_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(36, 5),
    )
    ours = small_net()
    tsd = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert [(k, v.shape, v.dtype) for k, v in tsd.items()] == [
        (k, v.shape, v.dtype) for k, v in ours.state_dict().items()
    ]
    # torch's weights load as they are and give torch's output
    ours.load_state_dict(tsd)
    x = randn((2, 3, 6, 6), seed=3)
    tm.eval()
    ours.eval()
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    assert_close(ours(x), expected)


def test_hand_built_pytorch_state_dict_loads():
    model = small_net()
    rng = np.random.default_rng(5)
    sd = OrderedDict()
    for k, shape in TORCH_KEYS:
        sd[k] = np.array(7, np.int64) if shape == () else rng.standard_normal(shape).astype("f4")
    sd["1.running_var"] = np.abs(sd["1.running_var"]) + 0.5
    missing, unexpected = model.load_state_dict(sd)
    assert missing == [] and unexpected == []
    got = model.state_dict()
    for k, v in sd.items():
        assert_close(got[k], v, name=k)
    assert int(model[1].num_batches_tracked) == 7
    assert model[0].weight.data.dtype == np.float32
    # loading float64 values keeps the model's float32 parameters
    model.load_state_dict({k: v.astype(np.float64) if v.ndim else v for k, v in sd.items()})
    assert model[5].weight.data.dtype == np.float32


def test_load_state_dict_rejects_missing_unexpected_and_misshaped():
    model = small_net()
    sd = model.state_dict()
    bad = dict(sd)
    del bad["0.bias"], bad["1.running_var"]
    bad["6.weight"] = np.zeros(3, np.float32)
    bad["5.weight"] = np.zeros((5, 35), np.float32)
    before = model.state_dict()
    with pytest.raises(ValueError) as err:
        model.load_state_dict(bad)
    msg = str(err.value)
    for part in ("0.bias", "1.running_var", "6.weight", "5.weight", "(5, 35)", "(5, 36)"):
        assert part in msg
    # nothing was loaded
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k])
    # strict=False reports instead, but a wrong shape is still an error
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in sd.items() if k != "0.bias"} | {"x": np.zeros(1)}, strict=False
    )
    assert missing == ["0.bias"] and unexpected == ["x"]
    with pytest.raises(ValueError, match="5.weight"):
        model.load_state_dict({"5.weight": np.zeros((36, 5), np.float32)}, strict=False)


@pytest.mark.parametrize(
    "make, fan_in",
    [
        (lambda: nn.Conv2d(3, 8, (3, 5)), 45),
        (lambda: nn.Conv2d(4, 6, 3, groups=2), 18),
        (lambda: nn.Linear(20, 7), 20),
    ],
)
def test_default_init_bounds(make, fan_in):
    nc.manual_seed(0)
    m = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) * sqrt(3/fan_in)
    for p in (m.weight.data, m.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
        assert len(np.unique(p)) == p.size  # really random
    w = m.weight.data
    # uniform on (-bound, bound): spread over the whole range, variance bound^2 / 3
    assert w.max() > 0.8 * bound and w.min() < -0.8 * bound
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.35


def test_init_is_seeded():
    nc.manual_seed(11)
    a = small_net().state_dict()
    nc.manual_seed(11)
    b = small_net().state_dict()
    nc.manual_seed(12)
    c = small_net().state_dict()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert not np.array_equal(a["0.weight"], c["0.weight"])
    assert not np.array_equal(a["5.bias"], c["5.bias"])


def test_batchnorm_init_and_buffers():
    bn = nn.BatchNorm2d(3)
    assert np.array_equal(bn.weight.data, np.ones(3)) and np.array_equal(bn.bias.data, np.zeros(3))
    assert [n for n, _ in bn.named_buffers()] == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]


def test_sequential_container():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and list(s) == [a, b, c]
    assert s[0] is a and s[-1] is c
    tail = s[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == [b, c]
    assert [n for n, _ in tail.named_parameters()] == ["2.weight", "2.bias"]  # keys kept
    with pytest.raises(IndexError):
        s[3]
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(a, "relu")
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]


def test_shared_parameters_listed_once_and_train_eval():
    lin = nn.Linear(2, 2)
    s = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(s.parameters())) == 2
    assert s.eval() is s
    assert not any(m.training for m in s.modules())
    s.train()
    assert all(m.training for m in s.modules())


def test_grads_accumulate_and_zero_grad():
    nc.manual_seed(0)
    lin = nn.Linear(4, 3)
    x, dy = randn((5, 4), seed=1), randn((5, 3), seed=2)
    assert lin.weight.grad is None
    lin(x)
    lin.backward(dy)
    g1 = lin.weight.grad.copy(), lin.bias.grad.copy()
    lin(x)
    lin.backward(dy)
    assert_close(lin.weight.grad, 2 * g1[0])
    assert_close(lin.bias.grad, 2 * g1[1])
    lin.zero_grad(set_to_none=False)
    assert np.array_equal(lin.weight.grad, np.zeros((3, 4)))
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_bad_constructor_arguments_and_misuse():
    with pytest.raises(ValueError, match="output_size=1"):
        nn.AdaptiveAvgPool2d(2)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Linear(2, 2).backward(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="device"):
        nn.Linear(2, 2).to("tpu")
    with pytest.raises(ValueError):  # the op names the mismatch
        nn.Linear(4, 2)(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3)(np.zeros((1, 2, 5, 5), np.float32))


def test_to_dtype_casts_parameters_and_float_buffers():
    model = small_net().to(np.float64)
    sd = model.state_dict()
    assert sd["0.weight"].dtype == np.float64 and sd["1.running_mean"].dtype == np.float64
    assert sd["1.num_batches_tracked"].dtype == np.int64
    model.float()
    assert model[5].weight.data.dtype == np.float32


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_to_cuda_moves_everything_and_state_dict_round_trips():
    model = small_net()
    sd = model.state_dict()
    model.to("cuda")
    for _, p in model.named_parameters():
        assert _cuda.is_device_array(p.data)
    assert _cuda.is_device_array(model[1].running_mean)
    assert isinstance(model[1].num_batches_tracked, np.ndarray)  # a host counter
    got = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in got.values())
    for k in sd:
        assert np.array_equal(got[k], sd[k])
    # load_state_dict copies onto the device
    new = {k: (v + 1 if v.dtype.kind == "f" else v) for k, v in sd.items()}
    model.load_state_dict(new)
    assert _cuda.is_device_array(model[0].weight.data)
    assert_close(model[0].weight.data, sd["0.weight"] + 1)
    model.to("cpu")
    assert isinstance(model[0].weight.data, np.ndarray)
    assert isinstance(model[1].running_var, np.ndarray)


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_grad_accumulation_and_zero_on_device():
    p = nn.Parameter(nc.to_device(randn((3, 5), seed=1)))
    g1, g2 = randn((3, 5), seed=2), randn((3, 5), seed=3)
    p.accumulate(nc.to_device(g1))
    p.accumulate(nc.to_device(g2))
    assert _cuda.is_device_array(p.grad)
    assert_close(p.grad, g1 + g2)
    m = nn.Module()
    m.p = p
    m.zero_grad(set_to_none=False)
    assert _cuda.is_device_array(p.grad)
    assert np.array_equal(nc.to_host(p.grad), np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="on cuda but the new gradient is on cpu"):
        p.accumulate(g1)


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_flatten_on_device_is_a_reshape():
    x = randn((2, 3, 2, 2), seed=4)
    f = nn.Flatten()
    y = f(nc.to_device(x))
    assert _cuda.is_device_array(y) and y.shape == (2, 12)
    assert np.array_equal(nc.to_host(y), x.reshape(2, 12))
    dx = f.backward(nc.to_device(x.reshape(2, 12)))
    assert _cuda.is_device_array(dx) and np.array_equal(nc.to_host(dx), x)


def test_attribute_registration():
    conv = nn.Conv2d(1, 1, 3, bias=False)
    assert [n for n, _ in conv.named_parameters()] == ["weight"] and conv.bias is None
    conv.bias = nn.Parameter(np.zeros(1, np.float32))
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    assert conv.bias is conv._parameters["bias"]
    with pytest.raises(TypeError, match="parameter 'weight'"):
        conv.weight = np.zeros((1, 1, 3, 3), np.float32)
    conv.bias = None
    assert [n for n, _ in conv.named_parameters()] == ["weight"] and conv.bias is None
    outer = nn.Module()
    outer.body = conv
    outer.scale = 2.0  # plain attributes stay plain
    assert [n for n, _ in outer.named_parameters()] == ["body.weight"] and outer.scale == 2.0
    with pytest.raises(AttributeError, match="nothing"):
        _ = outer.nothing


def test_init_functions():
    nc.manual_seed(2)
    w = np.empty((64, 50), np.float32)
    nn.init.kaiming_uniform_(w, nonlinearity="relu")  # bound = sqrt(2) * sqrt(3 / fan_in)
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 50)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="tanh")
    assert np.abs(w).max() <= 5.0 / 3 * math.sqrt(3.0 / 64)
    assert nn.init.fan_in_and_fan_out((8, 3, 5, 5)) == (75, 200)
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.init.calculate_gain("swish")


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_optimizer_state_follows_a_moved_model():
    from numba_cnn import optim

    lin, twin = nn.Linear(3, 2), nn.Linear(3, 2)
    twin.load_state_dict(lin.state_dict())
    opt = optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    opt_twin = optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    x, dy = randn((4, 3), seed=1), randn((4, 2), seed=2)
    for m in (lin, twin):
        m(x)
        m.backward(dy)
    opt.step()
    lin.to("cuda")
    assert _cuda.is_device_array(lin.weight.grad)
    opt.step()  # the momentum buffers move to the parameters' device
    opt_twin.step()
    opt_twin.step()
    assert all(_cuda.is_device_array(s["momentum_buffer"]) for s in opt.state.values())
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["momentum_buffer"], np.ndarray)
    for k, v in twin.state_dict().items():
        assert_close(lin.state_dict()[k], v, name=k)
