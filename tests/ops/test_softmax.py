"""softmax/log_softmax and cross-entropy: forward/backward against the NumPy reference on both
devices, any rank and dim, stability, NaN, gradchecks, properties, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_cnn._cuda as _cuda
from numba_cnn import functional as F
from numba_cnn.testing import check, gradcheck, host, on, randn
from numba_cnn.testing import reference as R

f32, f64 = np.float32, np.float64

# (shape, dim, dtype): ranks 1-4, last, first, middle and negative dims, reduced lengths above
# the CUDA block (16 threads under the simulator, 128 on a GPU), more lines than blocks
CASES = [
    ((37,), 0, f32),
    ((5, 9), -1, f64),
    ((5, 9), 0, f32),
    ((1, 7), 1, f32),
    ((3, 19, 2), 1, f64),
    ((2, 3, 5), -2, f32),
    ((2, 3, 4, 5), 1, f32),
    ((2, 3, 4, 5), -1, f64),
    ((1, 2, 3, 3), 0, f64),
    ((2, 2, 3, 4), 2, f32),
]
# CUDA lines per block (32 threads under the simulator, 128 on a GPU; threads per line = the
# power of two at or above D): 1 line, odd line counts, lines of 1, 10, 33 and 1000 elements,
# more line groups than blocks (block-stride), interleaved groups for inner > 1
ROW_CASES = [
    ((1, 10), -1, f32),
    ((1, 10), -1, f64),
    ((7, 1), -1, f32),
    ((37, 10), -1, f64),
    ((37, 10), -1, f32),
    ((5, 33), -1, f32),
    ((3, 33), 1, f64),
    ((3, 1000), -1, f32),
    ((2, 1000), -1, f64),
    ((3, 5, 7), 1, f32),
    ((2, 3, 33), 1, f64),
    ((9, 3, 5), 0, f32),
]
# CPU only: the line kernel's inner blocks of 256 (outer=2, D=3, inner=300 -> 2 blocks), long rows
CPU_CASES = [
    ((2, 3, 300), 1, f32),
    ((2, 3, 300), -3, f64),
    ((4, 1000), -1, f32),
    ((3, 517), 1, f64),
]
SOFTMAX = [
    (F.softmax, F.softmax_backward, R.softmax, R.softmax_backward),
    (F.log_softmax, F.log_softmax_backward, R.log_softmax, R.log_softmax_backward),
]


def _fwd_bwd(device, fns, x, dim, seed=3):
    fwd, bwd, rfwd, rbwd = fns
    y = check(fwd, rfwd, x, device=device, dim=dim)
    dy = randn(x.shape, x.dtype, seed=seed)
    check(bwd, rbwd, dy, y, device=device, dim=dim)


@pytest.mark.parametrize("shape,dim,dt", CASES)
@pytest.mark.parametrize("fns", SOFTMAX, ids=["softmax", "log_softmax"])
def test_softmax(device, fns, shape, dim, dt):
    _fwd_bwd(device, fns, randn(shape, dt, seed=1, scale=2.0), dim)


@pytest.mark.parametrize("shape,dim,dt", ROW_CASES)
@pytest.mark.parametrize("fns", SOFTMAX, ids=["softmax", "log_softmax"])
def test_softmax_rows_per_block(device, fns, shape, dim, dt):
    _fwd_bwd(device, fns, randn(shape, dt, seed=6, scale=3.0), dim)


@pytest.mark.parametrize("shape,dim,dt", CPU_CASES)
@pytest.mark.parametrize("fns", SOFTMAX, ids=["softmax", "log_softmax"])
def test_softmax_large_cpu(fns, shape, dim, dt):
    _fwd_bwd("cpu", fns, randn(shape, dt, seed=2, scale=4.0), dim)


@pytest.mark.parametrize("dt", [f32, f64])
@pytest.mark.parametrize("dim", [-1, 0])
def test_stable_for_huge_logits(device, dt, dim):
    x = randn((4, 6), dt, seed=4, scale=1e4)
    x[0] = 1e4  # a constant row: softmax exactly uniform
    x[1, :] = -1e4
    for fns in SOFTMAX:
        _fwd_bwd(device, fns, x, dim)
    y = host(F.softmax(on(device, x), dim=-1))
    np.testing.assert_allclose(y[0], 1 / 6, rtol=1e-6)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("dt", [f32, f64])
def test_nan_poisons_its_slice_only(device, dt):
    x = randn((3, 5, 4), dt, seed=5)
    x[1, 2, 3] = np.nan
    for fwd, _, rfwd, _ in SOFTMAX:
        for dim in (1, -1):
            got = check(fwd, rfwd, x, device=device, dim=dim)
            assert np.isnan(got).sum() == x.shape[dim]  # the one slice through the NaN


def test_non_contiguous_input(device):
    x = randn((6, 5), f32, seed=13).T  # a transposed view
    check(F.softmax, R.softmax, x, device=device, dim=0)
    logits = randn((9, 4), f64, seed=14)[::2]
    labels = np.arange(10)[::2] % 4
    check(F.cross_entropy, R.cross_entropy, logits, labels, device=device)


def test_dim_zero_size(device):
    e = np.zeros((3, 0), dtype=f32)
    assert host(F.softmax(on(device, e))).shape == (3, 0)
    assert host(F.log_softmax(on(device, e), dim=0)).shape == (3, 0)


# ---- cross-entropy ---------------------------------------------------------------------------

# (N, C, label dtype, logits dtype, logits scale): batch 1, C above the block, huge logits
CE_CASES = [
    (1, 10, np.int64, f32, 1.0),
    (6, 37, np.int32, f64, 3.0),
    (5, 3, np.uint8, f32, 1e4),
    (7, 1, np.int64, f64, 1.0),
    (9, 20, np.int16, f32, 10.0),
    (3, 130, np.uint64, f64, 1e4),
    (37, 10, np.int64, f32, 3.0),  # CUDA: more rows than one block takes (two launches)
    (11, 33, np.int32, f64, 2.0),
    (4, 1000, np.int64, f32, 5.0),
    (33, 1, np.int64, f64, 1.0),
]


@pytest.mark.parametrize("N,C,lt,dt,scale", CE_CASES)
def test_cross_entropy(device, N, C, lt, dt, scale):
    logits = randn((N, C), dt, seed=N + C, scale=scale)
    labels = np.random.default_rng(C).integers(0, C, N).astype(lt)
    loss = F.cross_entropy(*on(device, logits, labels))
    assert loss.shape == () and _cuda.is_device_array(loss) == (device == "cuda")
    assert host(loss).dtype == dt
    check(F.cross_entropy, R.cross_entropy, logits, labels, device=device)
    check(F.cross_entropy_backward, R.cross_entropy_backward, logits, labels, device=device)


@pytest.mark.parametrize("N,C,dt", [(9, 10, f32), (37, 10, f64), (3, 1000, f64), (70, 1, f32)])
def test_cross_entropy_fused_mean_same_bits(monkeypatch, N, C, dt):
    # one-block (rows + mean in one launch) and two-launch paths sum in the same order
    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    from numba_cnn.kernels.cuda import softmax as K

    logits = randn((N, C), dt, seed=N, scale=3.0)
    labels = np.random.default_rng(C).integers(0, C, N)
    a = host(F.cross_entropy(*on("cuda", logits, labels)))
    monkeypatch.setattr(K, "FUSE_GROUPS", 0 if K.FUSE_GROUPS else 1 << 20)
    b = host(F.cross_entropy(*on("cuda", logits, labels)))
    assert a.tobytes() == b.tobytes()
    check(F.cross_entropy, R.cross_entropy, logits, labels, device="cuda")


def test_cross_entropy_big_batch_cpu():
    logits = randn((256, 1000), f32, seed=8, scale=5.0)
    labels = np.random.default_rng(8).integers(0, 1000, 256)
    check(F.cross_entropy, R.cross_entropy, logits, labels, device="cpu")
    check(F.cross_entropy_backward, R.cross_entropy_backward, logits, labels, device="cpu")


def test_cross_entropy_matches_log_softmax(device):
    logits = randn((4, 7), f64, seed=9)
    labels = np.array([6, 0, 3, 3])
    lp = host(F.log_softmax(on(device, logits), dim=1))
    loss = float(host(F.cross_entropy(*on(device, logits, labels))))
    assert loss == pytest.approx(-lp[np.arange(4), labels].mean(), rel=1e-12)
    g = host(F.cross_entropy_backward(*on(device, logits, labels)))
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-15)


def test_cross_entropy_bad_label_values(device):
    logits = randn((3, 5), f32, seed=10)
    for bad, value in [(np.array([0, 5, 1]), 5), (np.array([0, -1, 4]), -1)]:
        if device == "cpu":
            with pytest.raises(ValueError, match=rf"label {value} \(labels\[1\]\).*C = 5"):
                F.cross_entropy(logits, bad)
            with pytest.raises(ValueError, match=rf"label {value} .*C = 5"):
                F.cross_entropy_backward(logits, bad)
        else:  # documented: no host sync on the GPU, the bad row turns NaN instead
            loss = host(F.cross_entropy(*on(device, logits, bad)))
            assert np.isnan(loss)
            g = host(F.cross_entropy_backward(*on(device, logits, bad)))
            assert np.isnan(g[1]).all() and np.isfinite(g[[0, 2]]).all()
    if device == "cuda":  # a uint64 label beyond int64 stays out of range after the cast
        lab = np.array([0, 2**63 + 1, 1], dtype=np.uint64)
        assert np.isnan(host(F.cross_entropy(*on(device, logits, lab))))


# ---- gradient checks (CPU, float64) ----------------------------------------------------------


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), -1), ((2, 3, 4), 1), ((3, 2, 2), 0)])
def test_gradcheck_softmax(shape, dim):
    x = randn(shape, f64, seed=11)
    gradcheck(
        lambda x: F.softmax(x, dim),
        [x],
        lambda dy, x: (F.softmax_backward(dy, F.softmax(x, dim), dim),),
        name="softmax",
    )
    gradcheck(
        lambda x: F.log_softmax(x, dim),
        [x],
        lambda dy, x: (F.log_softmax_backward(dy, F.log_softmax(x, dim), dim),),
        name="log_softmax",
    )


@pytest.mark.parametrize("N,C", [(1, 3), (4, 5)])
def test_gradcheck_cross_entropy(N, C):
    logits = randn((N, C), f64, seed=12, scale=2.0)
    labels = np.random.default_rng(N).integers(0, C, N).astype(np.int32)
    gradcheck(
        F.cross_entropy,
        [logits, labels],
        lambda dy, lg, lab: (dy * F.cross_entropy_backward(lg, lab), None),
        wrt=[0],
    )


# ---- properties (CPU) ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    dt=st.sampled_from([f32, f64]),
    scale=st.sampled_from([0.1, 3.0, 300.0]),
)
def test_property_softmax(shape, data, dt, scale):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(shape, dt, seed=data.draw(st.integers(0, 10_000)), scale=scale)
    y = check(F.softmax, R.softmax, x, device="cpu", dim=dim)
    check(F.log_softmax, R.log_softmax, x, device="cpu", dim=dim)
    tol = 1e-5 if dt == f32 else 1e-12
    np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=tol)
    shift = F.softmax((x + dt(scale)).astype(dt), dim=dim)  # shift invariance
    np.testing.assert_allclose(shift, y, rtol=1e-3 if dt == f32 else 1e-9, atol=1e-6)


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input(device):
    x = on(device, randn((2, 3), f32))
    lab = on(device, np.array([0, 2]))
    with pytest.raises(TypeError, match="softmax: x must be a NumPy array"):
        F.softmax([[1.0, 2.0]])
    with pytest.raises(TypeError, match="float32 or float64"):
        F.log_softmax(on(device, np.arange(4)))
    with pytest.raises(ValueError, match="dim 2 is out of range for a 2-D input"):
        F.softmax(x, dim=2)
    with pytest.raises(ValueError, match="dim -3 is out of range"):
        F.log_softmax_backward(x, x, dim=-3)
    with pytest.raises(TypeError, match="dim must be an int"):
        F.softmax(x, dim=1.0)
    with pytest.raises(TypeError, match="y has dtype float64 but dy has dtype float32"):
        F.softmax_backward(x, on(device, randn((2, 3), f64)))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 3\), expected \(3, 2\)"):
        F.softmax_backward(x, on(device, randn((3, 2), f32)))
    with pytest.raises(ValueError, match=r"logits must be 2-D \(N, C\), got shape \(2, 3, 1\)"):
        F.cross_entropy(on(device, randn((2, 3, 1), f32)), lab)
    with pytest.raises(ValueError, match=r"labels must be 1-D \(N,\), got shape \(2, 1\)"):
        F.cross_entropy(x, on(device, np.array([[0], [2]])))
    with pytest.raises(ValueError, match=r"labels has shape \(3,\) but logits has shape \(2, 3\)"):
        F.cross_entropy_backward(x, on(device, np.array([0, 1, 2])))
    with pytest.raises(TypeError, match="labels must be an integer array, got dtype float32"):
        F.cross_entropy(x, on(device, np.array([0.0, 2.0], dtype=f32)))
    with pytest.raises(TypeError, match="labels must be a NumPy array"):
        F.cross_entropy(x, [0, 2])
    with pytest.raises(ValueError, match=r"logits of shape \(0, 3\) is empty"):
        F.cross_entropy(on(device, np.zeros((0, 3), f32)), on(device, np.zeros(0, np.int64)))
    if device == "cuda":
        with pytest.raises(TypeError, match="mix host and device"):
            F.cross_entropy(x, np.array([0, 2]))


@pytest.mark.parametrize("N,C", [(9, 10), (37, 10), (200, 10), (3, 1000), (11, 1000)])
def test_cross_entropy_cuda_launches(monkeypatch, N, C):
    # a batch of <= FUSE_GROUPS line groups: one launch; more: rows then mean; no copies
    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    import os
    import sys

    from numba_cnn.kernels.cuda import softmax as K
    from numba_cnn.ops import _common

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    from step_counter import count_device_work

    monkeypatch.setattr(_common, "POISON", False)  # poisoning uploads NaNs: not production
    fused = -(-N // (K.THREADS >> K.group_shift(C))) <= K.FUSE_GROUPS
    logits, labels = on("cuda", randn((N, C), f32, seed=N), np.arange(N) % C)
    with count_device_work() as c:
        F.cross_entropy(logits, labels)
    assert dict(c.names) == ({"ce_rows": 1} if fused else {"ce_rows": 1, "ce_mean": 1})
    assert c.copies == 0


@pytest.mark.parametrize("shape,dim", [((3, 5), -1), ((2, 3, 4), 1), ((1, 33), -1)])
def test_gradcheck_softmax_cuda(shape, dim):
    # float64 central differences through the CUDA kernels (groups of lines per block)
    if not _cuda.available():
        pytest.skip("no GPU and no simulator")
    x = randn(shape, f64, seed=15)
    for fwd, bwd in ((F.softmax, F.softmax_backward), (F.log_softmax, F.log_softmax_backward)):
        gradcheck(
            lambda x, fwd=fwd: host(fwd(on("cuda", x), dim)),
            [x],
            lambda dy, x, fwd=fwd, bwd=bwd: (
                host(bwd(on("cuda", dy), fwd(on("cuda", x), dim), dim)),
            ),
            name=f"{fwd.__name__} cuda",
        )
    logits = randn((4, 5), f64, seed=16, scale=2.0)
    labels = np.array([4, 0, 2, 2])
    gradcheck(
        lambda lg, lab: host(F.cross_entropy(*on("cuda", lg, lab))),
        [logits, labels],
        lambda dy, lg, lab: (dy * host(F.cross_entropy_backward(*on("cuda", lg, lab))), None),
        wrt=[0],
        name="cross_entropy cuda",
    )
