"""``DataLoader``: mini-batches of NumPy arrays with a reproducible per-epoch shuffle.

Epoch ``e`` is shuffled by ``default_rng([seed, e])`` and batch ``b`` of it is transformed
with ``default_rng([seed, e, b])``, so each epoch differs, a rerun with the same seed repeats
every batch, and a resumed run (``set_epoch`` / ``epoch_batches(e, start=b)``) continues
exactly where the interrupted one stopped.

With ``rank`` and ``world_size`` (data-parallel training, see ``numba_cnn.distributed``)
``batch_size`` is the per-rank batch: step ``t`` of rank ``r`` is the ``r``-th of
``world_size`` equal slices of step ``t`` of the one-process loader whose batch is
``batch_size * world_size`` (same seed, same shuffle, same transform draws), so the union over
ranks is exactly the one-process run. With ``world_size > 1`` the last partial global batch is
dropped, so every rank always holds an equal slice.
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
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
            raise ValueError(
                f"DataLoader: x and y need the same number of samples, got x {x.shape} "
                f"and y {y.shape}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        if seed is None:
            if self.world_size > 1 and _random._seed is None and (shuffle or transform is not None):
                raise ValueError(
                    "DataLoader: with world_size > 1 give seed (or call nc.manual_seed with "
                    "the same seed on every rank) so that all ranks shuffle alike"
                )
            seed = int(_random.generator().integers(2**63))
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size * self.world_size
        return n // b if self.drop_last or self.world_size > 1 else -(-n // b)

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
        bs, n = self.batch_size, len(self.x)
        mine = slice(self.rank * bs, (self.rank + 1) * bs)  # this rank's part of a global batch
        for b in range(int(start), len(self)):
            lo, hi = b * bs * self.world_size, min((b + 1) * bs * self.world_size, n)
            sel = slice(lo, hi) if order is None else order[lo:hi]
            if self.transform is None:
                sel = (
                    slice(lo + mine.start, min(lo + mine.stop, hi)) if order is None else sel[mine]
                )
                xb, yb = self.x[sel], self.y[sel]
            else:  # transform the global batch, as one process would, then take the slice
                rng = np.random.default_rng([self.seed, int(epoch), b])
                xb, yb = self.transform(self.x[sel], rng)[mine], self.y[sel][mine]
            yield np.ascontiguousarray(xb), np.ascontiguousarray(yb)


def _check_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``, ``(0, 1)`` when both are None."""
    if rank is None and world_size is None:
        return 0, 1
    if rank is None or world_size is None:
        raise ValueError(
            f"DataLoader: give both rank and world_size or neither, got rank={rank} "
            f"and world_size={world_size}"
        )
    rank, world_size = int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"DataLoader: need 0 <= rank < world_size, got rank={rank} and world_size={world_size}"
        )
    return rank, world_size
