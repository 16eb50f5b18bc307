"""``DataLoader``: mini-batches of NumPy arrays with a reproducible per-epoch shuffle.

Epoch ``e`` is shuffled by ``default_rng([seed, e])`` and batch ``b`` of it is transformed
with ``default_rng([seed, e, b])``, so each epoch differs, a rerun with the same seed repeats
every batch, and a resumed run (``set_epoch`` / ``epoch_batches(e, start=b)``) continues
exactly where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .. import _random

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``(xb, yb)`` NumPy batches of ``x`` and ``y``.

    ``shuffle`` reorders the samples every epoch (seeded by ``seed``; ``None`` draws one from
    the library's generator, see ``nc.manual_seed``); ``drop_last`` skips a last, smaller
    batch; ``transform(xb, rng)`` (e.g. ``Normalize``) is applied to each batch of ``x``.
    Each ``iter()`` runs the next epoch (``loader.epoch`` counts them).

    >>> import numpy as np
    >>> x, y = np.zeros((10, 1, 4, 4), np.float32), np.arange(10)
    >>> loader = DataLoader(x, y, batch_size=4, shuffle=True, seed=0)
    >>> len(loader), [len(yb) for _, yb in loader]
    (3, [4, 4, 2])
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        transform: Callable | None = None,
    ) -> None:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
            raise ValueError(
                f"DataLoader: x and y need the same number of samples, got x {x.shape} "
                f"and y {y.shape}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        if seed is None:
            seed = int(_random.generator().integers(2**63))
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch ``epoch`` (as when resuming a run)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_batches(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch`` (identity without ``shuffle``)."""
        n = len(self.x)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(n)

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of ``epoch`` from batch number ``start`` on (does not touch ``epoch``)."""
        order = self.order(epoch) if self.shuffle else None
        for b in range(int(start), len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(self.x))
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                xb = self.transform(xb, np.random.default_rng([self.seed, int(epoch), b]))
            yield np.ascontiguousarray(xb), np.ascontiguousarray(yb)
