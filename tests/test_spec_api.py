"""SPEC.md conformance, part 1: every public name exists with the signature SPEC gives.

Signatures are written as in SPEC.md. Each SPEC parameter must appear, in order, with the
same default and kind (keyword-only after ``*``); extra trailing parameters are allowed only
with a default (PyTorch's extras such as ``BatchNorm2d(affine=True)`` or ``Flatten(start_dim)``).
Only the public API is used: ``import numba_cnn as nc`` and its submodules.
"""

from __future__ import annotations

import ast
import inspect

import pytest

import numba_cnn as nc
from numba_cnn import data, nn, optim
from numba_cnn import functional as F

P = inspect.Parameter

PACKAGE = {
    "cuda_available": "",
    "to_device": "a",
    "to_host": "a",
    "synchronize": "",
    "manual_seed": "s",
    "save": "obj, path",
    "load": "path",
}

FUNCTIONAL = {
    "conv2d": "x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1",
    "conv2d_backward": "dy, x, weight, stride=1, padding=0, dilation=1, groups=1, *, need_dx=True",
    "max_pool2d": "x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, "
    "return_indices=False",
    "max_pool2d_backward": "dy, idx, x_shape",
    "avg_pool2d": "x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True",
    "avg_pool2d_backward": "dy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False, "
    "count_include_pad=True",
    "relu": "x",
    "relu_backward": "dy, x",
    "leaky_relu": "x, negative_slope=0.01",
    "leaky_relu_backward": "dy, x",
    "sigmoid": "x",
    "sigmoid_backward": "dy, y",
    "tanh": "x",
    "tanh_backward": "dy, y",
    "softmax": "x, dim=-1",
    "log_softmax": "x, dim=-1",
    "softmax_backward": "dy, y, dim=-1",
    "log_softmax_backward": "dy, y, dim=-1",
    "cross_entropy": "logits, labels",
    "cross_entropy_backward": "logits, labels",
    "linear": "x, weight, bias=None",
    "linear_backward": "dy, x, weight, *, need_dx=True",
    "batch_norm": "x, running_mean, running_var, weight=None, bias=None, training=False, "
    "momentum=0.1, eps=1e-5",
    "batch_norm_backward": "dy, x, weight, save_mean, save_invstd",
    "dropout": "x, p=0.5, training=True, *, rng=None",
    "dropout_backward": "dy, mask, p",
}

LAYERS = {
    "Conv2d": "in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, "
    "bias=True",
    "MaxPool2d": "kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False",
    "AvgPool2d": "kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True",
    "AdaptiveAvgPool2d": "output_size",
    "ReLU": "",
    "LeakyReLU": "negative_slope=0.01",
    "Sigmoid": "",
    "Tanh": "",
    "Flatten": "",
    "Linear": "in_features, out_features, bias=True",
    "Dropout": "p=0.5",
    "BatchNorm2d": "num_features, eps=1e-5, momentum=0.1",
    "Softmax": "dim=-1",
    "Sequential": "*modules",
    "CrossEntropyLoss": "",
}

MODULE_METHODS = {
    "forward": "self, *args",
    "__call__": "self, *args",
    "backward": "self, dy, *, need_dx=True",
    "parameters": "self",
    "named_parameters": "self",
    "zero_grad": "self",
    "train": "self",
    "eval": "self",
    "to": "self",
    "state_dict": "self",
    "load_state_dict": "self, state_dict",
}

OPTIMIZERS = {
    # SPEC writes `SGD(params, lr, ...)`; PyTorch 2.x gives lr a default of 1e-3, kept here.
    "SGD": "params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False",
    "Adam": "params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0",
    "AdamW": "params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2",
}

OTHERS = {
    "optim.lr_scheduler.StepLR": (optim.lr_scheduler.StepLR, "optimizer, step_size, gamma=0.1"),
    "optim.lr_scheduler.CosineAnnealingLR": (
        optim.lr_scheduler.CosineAnnealingLR,
        "optimizer, T_max",
    ),
    "nn.utils.clip_grad_norm_": (nn.utils.clip_grad_norm_, "parameters, max_norm"),
    "data.load_digits": (data.load_digits, ""),
    "data.load_mnist": (data.load_mnist, "path"),
    "data.load_cifar10": (data.load_cifar10, "path"),
    "data.DataLoader": (
        data.DataLoader,
        "x, y, batch_size, shuffle=False, seed=None, drop_last=False, transform=None",
    ),
    "data.Normalize": (data.Normalize, "mean, std"),
    # SPEC writes RandomCrop(size, padding); as torchvision, padding is optional (0 = none)
    "data.RandomCrop": (data.RandomCrop, "size, padding=0"),
    "data.RandomHorizontalFlip": (data.RandomHorizontalFlip, "p=0.5"),
}

_NODEFAULT = P.empty


def parse(spec: str) -> list[tuple[str, object, inspect._ParameterKind]]:
    """'a, b=1, *, c=None' -> [(name, default, kind), ...] as SPEC.md writes signatures."""
    args = ast.parse(f"def f({spec}): pass").body[0].args
    pos = [(a.arg, _NODEFAULT, P.POSITIONAL_OR_KEYWORD) for a in args.args]
    for i, d in enumerate(args.defaults, len(pos) - len(args.defaults)):
        pos[i] = (pos[i][0], ast.literal_eval(d), pos[i][2])
    if args.vararg:
        pos.append((args.vararg.arg, _NODEFAULT, P.VAR_POSITIONAL))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        pos.append((a.arg, _NODEFAULT if d is None else ast.literal_eval(d), P.KEYWORD_ONLY))
    return pos


def assert_signature(fn, spec: str, *, positional_names: bool = True) -> None:
    params = list(inspect.signature(fn).parameters.values())
    want = parse(spec)
    assert len(params) >= len(want), f"{fn}: {params} is shorter than SPEC's ({spec})"
    for (name, default, kind), p in zip(want, params[: len(want)], strict=True):
        if positional_names or kind != P.POSITIONAL_OR_KEYWORD or default is not _NODEFAULT:
            assert p.name == name, f"{fn}: parameter {p.name!r} where SPEC has {name!r}"
        assert p.kind == kind, f"{fn}: {name} is {p.kind.description}, SPEC: {kind.description}"
        assert p.default == default, f"{fn}: {name}={p.default!r}, SPEC: {default!r}"
    for p in params[len(want) :]:
        ok = p.default is not _NODEFAULT or p.kind in (P.VAR_KEYWORD, P.VAR_POSITIONAL)
        assert ok, f"{fn}: extra parameter {p.name} without a default"


@pytest.mark.parametrize("name", sorted(PACKAGE))
def test_package(name):
    # parameter names of these one-argument helpers are not part of the contract
    assert_signature(getattr(nc, name), PACKAGE[name], positional_names=False)


def test_version():
    parts = nc.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2]), nc.__version__


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional(name):
    assert_signature(getattr(F, name), FUNCTIONAL[name])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers(name):
    cls = getattr(nn, name)
    assert issubclass(cls, nn.Module)
    assert_signature(cls, LAYERS[name])


@pytest.mark.parametrize("name", sorted(MODULE_METHODS))
def test_module_methods(name):
    assert_signature(getattr(nn.Module, name), MODULE_METHODS[name])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers(name):
    cls = getattr(optim, name)
    assert_signature(cls, OPTIMIZERS[name])
    for method in ("step", "zero_grad", "state_dict", "load_state_dict"):
        assert callable(getattr(cls, method)), f"{name}.{method}"


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_others(name):
    fn, spec = OTHERS[name]
    assert_signature(fn, spec)
