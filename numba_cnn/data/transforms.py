"""Batch transforms for ``DataLoader``: ``Normalize``, ``RandomCrop``, ``RandomHorizontalFlip``.

A transform takes a whole NCHW float batch and returns a new array (the input is never
modified). Random transforms draw from the ``rng`` the DataLoader hands them (one generator per
batch, derived from the loader's seed, the epoch and the batch number, so every epoch differs
and every run repeats); called on their own they use a generator seeded by their ``seed``.

>>> import numpy as np
>>> x = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
>>> t = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), Normalize(0.5, 0.25)])
>>> t(x, np.random.default_rng(1)).shape
(4, 3, 8, 8)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip"]


def _check_batch(name: str, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        shape = getattr(x, "shape", None)
        raise ValueError(f"{name}: x must be an NCHW NumPy batch, got shape {shape}")


class Compose:
    """Apply transforms in order: ``Compose([RandomCrop(32, 4), Normalize(m, s)])``."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel; ``mean``/``std`` are numbers or one per channel."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError("Normalize: mean and std must be numbers or 1-D sequences")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_batch("Normalize", x)
        c = x.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(f"Normalize: {name} has {v.size} values but x has {c} channels")
        mean = self.mean.astype(x.dtype).reshape(1, -1, 1, 1)
        std = self.std.astype(x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Zero-pad by ``padding`` then crop a random ``size`` window, independently per image."""

    def __init__(self, size: int | tuple[int, int], padding: int = 0, *, seed=None) -> None:
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        self.padding = int(padding)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be positive, got {size}")
        if self.padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self._rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_batch("RandomCrop", x)
        rng = self._rng if rng is None else rng
        n, c, h, w = x.shape
        p, (th, tw) = self.padding, self.size
        if th > h + 2 * p or tw > w + 2 * p:
            raise ValueError(
                f"RandomCrop: crop {self.size} is larger than the padded image "
                f"({h + 2 * p}, {w + 2 * p}) of x {x.shape}"
            )
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        top = rng.integers(0, h + 2 * p - th + 1, size=n)
        left = rng.integers(0, w + 2 * p - tw + 1, size=n)
        rows = (top[:, None] + np.arange(th))[:, None, :, None]  # (n, 1, th, 1)
        cols = (left[:, None] + np.arange(tw))[:, None, None, :]  # (n, 1, 1, tw)
        img = np.arange(n)[:, None, None, None]
        chan = np.arange(c)[None, :, None, None]
        return np.ascontiguousarray(xp[img, chan, rows, cols])

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, *, seed=None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_batch("RandomHorizontalFlip", x)
        rng = self._rng if rng is None else rng
        flip = rng.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"
