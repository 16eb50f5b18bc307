"""DataLoader: batch counts, drop_last, seeded shuffles, resuming mid-epoch, transforms."""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn.data import Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip


def data(n=23, c=2, h=5, w=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c, h, w), dtype=np.float32), np.arange(n, dtype=np.int64)


@pytest.mark.parametrize(
    "n, bs, drop_last, sizes",
    [(23, 5, False, [5, 5, 5, 5, 3]), (23, 5, True, [5] * 4), (20, 5, True, [5] * 4),
     (3, 8, False, [3]), (3, 8, True, []), (7, 1, False, [1] * 7)],
)  # fmt: skip
def test_batch_counts(n, bs, drop_last, sizes):
    x, y = data(n)
    loader = DataLoader(x, y, bs, shuffle=True, seed=1, drop_last=drop_last)
    assert len(loader) == len(sizes)
    batches = list(loader)
    assert [len(yb) for _, yb in batches] == sizes
    for xb, yb in batches:
        assert xb.dtype == np.float32 and xb.flags.c_contiguous
        np.testing.assert_array_equal(xb, x[yb])  # images stay with their labels


def test_no_shuffle_keeps_order():
    x, y = data()
    loader = DataLoader(x, y, 4)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in loader]), y)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in loader]), y)


def test_shuffle_is_a_permutation_new_each_epoch_and_reproducible():
    x, y = data(50)
    a = DataLoader(x, y, 8, shuffle=True, seed=7)
    b = DataLoader(x, y, 8, shuffle=True, seed=7)
    orders_a = [np.concatenate([yb for _, yb in a]) for _ in range(3)]
    orders_b = [np.concatenate([yb for _, yb in b]) for _ in range(3)]
    for oa, ob in zip(orders_a, orders_b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(np.sort(oa), y)
    assert not np.array_equal(orders_a[0], orders_a[1])
    assert not np.array_equal(orders_a[0], y)
    other = np.concatenate([yb for _, yb in DataLoader(x, y, 8, shuffle=True, seed=8)])
    assert not np.array_equal(other, orders_a[0])
    assert a.epoch == 3


def test_set_epoch_and_start_batch_resume_exactly():
    x, y = data(30)
    flip = RandomHorizontalFlip()
    a = DataLoader(x, y, 4, shuffle=True, seed=3, transform=flip)
    full = [list(a) for _ in range(3)][2]  # epoch 2
    b = DataLoader(x, y, 4, shuffle=True, seed=3, transform=flip)
    b.set_epoch(2)
    again = list(b)
    tail = list(b.epoch_batches(2, start=5))
    assert len(tail) == len(full) - 5
    for (x1, y1), (x2, y2) in zip(full, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    for (x1, y1), (x2, y2) in zip(full[5:], tail, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_seed_none_follows_manual_seed():
    x, y = data(40)
    nc.manual_seed(5)
    o1 = np.concatenate([yb for _, yb in DataLoader(x, y, 8, shuffle=True)])
    nc.manual_seed(5)
    o2 = np.concatenate([yb for _, yb in DataLoader(x, y, 8, shuffle=True)])
    np.testing.assert_array_equal(o1, o2)


def test_bad_arguments():
    x, y = data(10)
    with pytest.raises(ValueError, match=r"x \(10, 2, 5, 4\) and y \(9,\)"):
        DataLoader(x, y[:9], 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(x, y, 0)


def test_normalize_per_channel():
    x, _ = data(6, c=3)
    t = Normalize([0.1, 0.2, 0.3], [0.5, 2.0, 4.0])
    out = t(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    for c, (m, s) in enumerate([(0.1, 0.5), (0.2, 2.0), (0.3, 4.0)]):
        np.testing.assert_allclose(out[:, c], (x[:, c] - m) / s, rtol=1e-6)
    np.testing.assert_allclose(Normalize(0.5, 0.25)(x), (x - 0.5) / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="mean has 2 values but x has 3 channels"):
        Normalize([0.1, 0.2], [1.0])(x)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(0.0, [1.0, 0.0])


def test_random_crop_takes_windows_of_the_padded_image():
    x, _ = data(12, c=2, h=5, w=4)
    out = RandomCrop((4, 3), padding=1)(x, np.random.default_rng(0))
    assert out.shape == (12, 2, 4, 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (r, c)
            for r in range(xp.shape[2] - 4 + 1)
            for c in range(xp.shape[3] - 3 + 1)
            if np.array_equal(out[i], xp[i, :, r : r + 4, c : c + 3])
        ]
        assert hits, f"image {i} is not a window of its padded input"
        offsets.add(hits[0])
    assert len(offsets) > 3  # offsets vary between images
    np.testing.assert_array_equal(RandomCrop((5, 4))(x), x)  # full size, no padding
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(8, padding=1)(x)


def test_random_horizontal_flip():
    x, _ = data(40)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x), x)
    out = RandomHorizontalFlip()(x, np.random.default_rng(2))
    flipped = [np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x, strict=True)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 5 < sum(flipped) < 35
    again = RandomHorizontalFlip()(x, np.random.default_rng(2))
    np.testing.assert_array_equal(out, again)
    x_before = x.copy()
    RandomHorizontalFlip(seed=1)(x)
    np.testing.assert_array_equal(x, x_before)  # input untouched
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        RandomHorizontalFlip(1.5)


def test_compose_in_loader_is_seeded_per_batch():
    x, y = data(16, c=3, h=6, w=6)
    t = Compose([RandomCrop(6, padding=2), RandomHorizontalFlip(), Normalize(0.5, 0.5)])
    a = list(DataLoader(x, y, 4, shuffle=True, seed=0, transform=t))
    b = list(DataLoader(x, y, 4, shuffle=True, seed=0, transform=t))
    for (x1, _), (x2, _) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x1, x2)
        assert x1.min() < -0.9  # Normalize applied after the zero padding: (0 - 0.5) / 0.5
    changed = sum(not np.array_equal(xb, (x[yb] - 0.5) / 0.5) for xb, yb in a)
    assert changed >= 3


@pytest.mark.parametrize("world, bs, n", [(2, 4, 23), (3, 2, 20), (4, 3, 24), (1, 5, 23)])
@pytest.mark.parametrize("shuffle, transform", [(True, None), (False, None), (True, "crop")])
def test_ranks_split_each_one_process_batch(world, bs, n, shuffle, transform):
    x, y = data(n, c=2, h=6, w=6)
    t = Compose([RandomCrop(6, padding=2), RandomHorizontalFlip()]) if transform else None
    single = DataLoader(x, y, bs * world, shuffle=shuffle, seed=4, transform=t)
    ranks = [
        DataLoader(x, y, bs, shuffle=shuffle, seed=4, transform=t, rank=r, world_size=world)
        for r in range(world)
    ]
    full = n // (bs * world) if world > 1 else -(-n // bs)  # partial global batch dropped
    assert all(len(loader) == full for loader in ranks)
    for epoch in range(2):
        one = list(single.epoch_batches(epoch))[:full]
        per_rank = [list(loader) for loader in ranks]
        for step, (xg, yg) in enumerate(one):
            parts = [batches[step] for batches in per_rank]
            if world > 1:
                assert [len(yb) for _, yb in parts] == [bs] * world
            np.testing.assert_array_equal(np.concatenate([yb for _, yb in parts]), yg)
            np.testing.assert_array_equal(np.concatenate([xb for xb, _ in parts]), xg)
            for xb, yb in parts:
                assert xb.flags.c_contiguous and yb.flags.c_contiguous


def test_rank_loader_resumes_mid_epoch():
    x, y = data(40)
    a = DataLoader(x, y, 3, shuffle=True, seed=9, rank=1, world_size=2)
    full = list(a.epoch_batches(1))
    tail = list(a.epoch_batches(1, start=4))
    assert len(full) == 40 // 6 and len(tail) == len(full) - 4
    for (x1, y1), (x2, y2) in zip(full[4:], tail, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_rank_arguments(monkeypatch):
    x, y = data(10)
    with pytest.raises(ValueError, match="both rank and world_size or neither"):
        DataLoader(x, y, 2, rank=0)
    with pytest.raises(ValueError, match="0 <= rank < world_size, got rank=2 and world_size=2"):
        DataLoader(x, y, 2, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size=0"):
        DataLoader(x, y, 2, seed=0, rank=0, world_size=0)
    monkeypatch.setattr(nc._random, "_seed", None)  # unseeded: ranks would shuffle apart
    with pytest.raises(ValueError, match="give seed"):
        DataLoader(x, y, 2, shuffle=True, rank=0, world_size=2)
    monkeypatch.setattr(nc._random, "_seed", 1)  # nc.manual_seed on every rank: allowed
    assert len(DataLoader(x, y, 2, shuffle=True, rank=0, world_size=2)) == 2
