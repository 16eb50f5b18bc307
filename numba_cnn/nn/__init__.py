"""Layers as ``torch.nn``, with explicit ``backward`` (see ``numba_cnn.nn.module``).

>>> import numpy as np, numba_cnn as nc
>>> from numba_cnn import nn
>>> _ = nc.manual_seed(0)
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
>>> crit = nn.CrossEntropyLoss()
>>> x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
>>> loss = crit(model(x), np.array([3, 7]))
>>> _ = model.backward(crit.backward(), need_dx=False)
>>> model[0].weight.grad.shape
(4, 1, 3, 3)
"""

from . import init, utils
from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .container import Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss
from .module import Module, Parameter
from .normalization import BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Conv2d",
    "Linear",
    "Flatten",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Dropout",
    "BatchNorm2d",
    "CrossEntropyLoss",
    "init",
    "utils",
]
