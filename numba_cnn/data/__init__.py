"""Data sets and batching: ``load_digits`` (embedded), ``load_mnist``, ``load_cifar10``,
``DataLoader`` and its transforms.

Every loader returns ``(x_train, y_train, x_test, y_test)``: x NCHW float32 in [0, 1], y int64.

>>> from numba_cnn.data import DataLoader, load_digits
>>> x_train, y_train, x_test, y_test = load_digits()
>>> xb, yb = next(iter(DataLoader(x_train, y_train, batch_size=32, shuffle=True, seed=0)))
>>> xb.shape, yb.dtype
((32, 1, 8, 8), dtype('int64'))
"""

from .cifar import CIFAR10_CLASSES, load_cifar10
from .digits import load_digits
from .loader import DataLoader
from .mnist import load_mnist
from .transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip

__all__ = [
    "load_digits",
    "load_mnist",
    "load_cifar10",
    "CIFAR10_CLASSES",
    "DataLoader",
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
]
