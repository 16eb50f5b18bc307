"""Optimizers as ``torch.optim`` (same signatures, same update rules) and their schedulers.

>>> import numpy as np
>>> from numba_cnn import nn, optim
>>> model = nn.Linear(3, 2)
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> _ = model(np.ones((4, 3), np.float32))
>>> _ = model.backward(np.ones((4, 2), np.float32))
>>> opt.step(); opt.zero_grad()
>>> model.weight.grad is None
True
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
