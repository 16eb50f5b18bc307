"""batch_norm / batch_norm_backward against the NumPy reference, on the CPU and the CUDA kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numba_cnn import functional as F
from numba_cnn._cuda import available
from numba_cnn.testing import assert_close, check, gradcheck, host, on, randn
from numba_cnn.testing import reference as R

F32, F64 = np.float32, np.float64


def _inputs(shape, dtype, affine=True, seed=0):
    C = shape[1]
    x = randn(shape, dtype, seed, scale=2.0) + dtype(0.5)
    rm = randn((C,), dtype, seed + 1)
    rv = (np.random.default_rng(seed + 2).random(C) + 0.5).astype(dtype)
    w = randn((C,), dtype, seed + 3) if affine else None
    b = randn((C,), dtype, seed + 4) if affine else None
    return x, rm, rv, w, b


# options covered pairwise: shape x dtype x training x affine
CASES = [
    ((4, 3, 5, 6), F32, True, True),
    ((4, 3, 5, 6), F64, False, False),
    ((7, 5), F32, False, True),
    ((7, 5), F64, True, False),
    ((1, 2, 3, 3), F32, True, False),  # batch 1: statistics over H*W only
    ((3, 2, 9), F64, True, True),  # (N, C, L)
    ((2, 33, 1, 2), F32, False, False),
]


@pytest.mark.parametrize("shape,dtype,training,affine", CASES)
def test_batch_norm_forward(device, shape, dtype, training, affine):
    x, rm, rv, w, b = _inputs(shape, dtype, affine)
    rm_d, rv_d = on(device, rm.copy(), rv.copy())
    x_d, w_d, b_d = on(device, x, w, b)
    got = host(F.batch_norm(x_d, rm_d, rv_d, w_d, b_d, training, momentum=0.3, eps=1e-3))
    exp = R.batch_norm(x, rm, rv, w, b, training, momentum=0.3, eps=1e-3)  # updates rm, rv
    for i, (g, e) in enumerate(zip(got, exp, strict=True)):
        assert g.dtype == dtype
        assert_close(g, e, name=f"batch_norm[{i}]")
    assert_close(host(rm_d), rm, name="running_mean")
    assert_close(host(rv_d), rv, name="running_var")


@pytest.mark.parametrize("shape,dtype", [((3, 4, 2, 3), F32), ((5, 3), F64)])
def test_batch_norm_no_running_stats(device, shape, dtype):
    x, _, _, w, b = _inputs(shape, dtype, seed=3)
    check(F.batch_norm, R.batch_norm, x, None, None, w, b, training=True, device=device)


def test_batch_norm_large_mean(device):
    # two passes keep the variance of values far from zero
    x = randn((8, 2, 4, 4), F32, 5) + F32(100.0)
    _, rm, rv, w, b = _inputs((8, 2), F32)
    check(F.batch_norm, R.batch_norm, x, rm, rv, w, b, training=True, device=device)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_nan_propagates(device, training):
    x, rm, rv, w, b = _inputs((3, 2, 2, 3), F32, seed=4)
    x[1, 0, 1, 2] = np.nan  # training: all of channel 0 becomes NaN; eval: that element only
    check(F.batch_norm, R.batch_norm, x, rm, rv, w, b, training=training, device=device)


@pytest.mark.parametrize("shape,dtype,training,affine", CASES)
def test_batch_norm_backward(device, shape, dtype, training, affine):
    x, rm, rv, w, _ = _inputs(shape, dtype, affine, seed=1)
    _, mean, invstd = R.batch_norm(x, rm, rv, training=training)
    mean, invstd = mean.astype(dtype), invstd.astype(dtype)
    dy = randn(shape, dtype, seed=9)
    check(
        F.batch_norm_backward,
        R.batch_norm_backward,
        dy,
        x,
        w,
        mean,
        invstd,
        training=training,
        device=device,
    )


# CUDA: several blocks per channel (32 threads x 2 elements per block under the simulator, at
# most 4 chunks; 256 x 8 and 32 on a GPU): chunks that do not divide N*L, L = 1, long planes
SPLIT_CASES = [
    ((5, 3, 7, 9), F32, True, True),  # 315 per channel: 4 chunks of 79 (last 78)
    ((5, 3, 7, 9), F64, False, True),
    ((130, 2), F64, True, False),  # L = 1: 2 chunks of 65
    ((3, 2, 1, 47), F32, True, False),  # 141 per channel: 2 chunks of 71 and 70
    ((2, 1, 11, 13), F64, False, False),
]


@pytest.mark.parametrize("shape,dtype,training,affine", SPLIT_CASES)
def test_batch_norm_split_channels(device, shape, dtype, training, affine):
    x, rm, rv, w, b = _inputs(shape, dtype, affine, seed=11)
    rm_d, rv_d = on(device, rm.copy(), rv.copy())
    got = F.batch_norm(on(device, x), rm_d, rv_d, *on(device, w, b), training, momentum=0.2)
    exp = R.batch_norm(x, rm, rv, w, b, training, momentum=0.2)
    for i, (g, e) in enumerate(zip(got, exp, strict=True)):
        assert_close(host(g), e, name=f"batch_norm[{i}]")
    assert_close(host(rm_d), rm, name="running_mean")
    assert_close(host(rv_d), rv, name="running_var")
    dy = randn(shape, dtype, seed=12)
    mean, invstd = host(got[1]), host(got[2])
    args = (dy, x, w, mean, invstd)
    check(F.batch_norm_backward, R.batch_norm_backward, *args, training=training, device=device)


@pytest.mark.parametrize("which", ["running_mean", "running_var"])
def test_batch_norm_one_running_stat(device, which):
    x, rm, rv, w, b = _inputs((3, 2, 4, 5), F32, seed=13)
    given = {"running_mean": rm, "running_var": rv}[which]
    stat = on(device, given.copy())
    kw = {which: stat, "running_mean" if which == "running_var" else "running_var": None}
    got = F.batch_norm(on(device, x), weight=on(device, w), bias=on(device, b), training=True, **kw)
    exp = R.batch_norm(x, **{k: (given if v is stat else None) for k, v in kw.items()},
                       weight=w, bias=b, training=True)  # fmt: skip
    assert_close(host(got[0]), exp[0], name="y")
    assert_close(host(stat), given, name=which)


def test_batch_norm_gradcheck_cuda_split(monkeypatch):
    # float64 central differences through the CUDA kernels with 2 chunks per channel: 66
    # values, 2 chunks of 33 (more than the 32 threads of a simulator block: a thread takes a
    # second value), the first ending inside the second sample. One channel (the gradcheck
    # costs inputs x launches; test_batch_norm_split_channels checks several channels split)
    if not available():
        pytest.skip("no GPU and no simulator")
    from numba_cnn.kernels.cuda import batch_norm as K

    monkeypatch.setattr(K, "EPT", 1)
    monkeypatch.setattr(K, "MAX_SPLITS", 2)
    x, _, _, w, b = _inputs((3, 1, 2, 11), F64, seed=14)
    assert K.split(3, 22) == (33, 2) or K.TPB > 32

    def f(x, w, b):
        return host(F.batch_norm(on("cuda", x), None, None, *on("cuda", w, b), True)[0])

    def backward(dy, x, w, b):
        xd, wd = on("cuda", x, w)
        _, mean, invstd = F.batch_norm(xd, None, None, wd, on("cuda", b), training=True)
        return tuple(host(g) for g in F.batch_norm_backward(on("cuda", dy), xd, wd, mean, invstd))

    gradcheck(f, (x, w, b), backward, name="batch_norm cuda train")


def _bn_train(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True)[0]


def _bn_train_backward(dy, x, w, b):
    _, mean, invstd = F.batch_norm(x, None, None, w, b, training=True)
    return F.batch_norm_backward(dy, x, w, mean, invstd, training=True)


@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (4, 3)])
def test_batch_norm_gradcheck_training(shape):
    x, _, _, w, b = _inputs(shape, F64, seed=2)
    gradcheck(_bn_train, (x, w, b), _bn_train_backward, name=f"batch_norm train {shape}")


def test_batch_norm_gradcheck_training_no_affine():
    x = randn((2, 3, 2, 2), F64, 4)

    def backward(dy, x):
        _, mean, invstd = F.batch_norm(x, None, None, training=True)
        return F.batch_norm_backward(dy, x, None, mean, invstd)[:1]

    gradcheck(lambda x: F.batch_norm(x, None, None, training=True)[0], (x,), backward)


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (3, 4)])
def test_batch_norm_gradcheck_eval(shape):
    x, rm, rv, w, b = _inputs(shape, F64, seed=6)

    def f(x, w, b):
        return F.batch_norm(x, rm, rv, w, b, training=False)[0]

    def backward(dy, x, w, b):
        _, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=False)
        return F.batch_norm_backward(dy, x, w, mean, invstd, training=False)

    gradcheck(f, (x, w, b), backward, name=f"batch_norm eval {shape}")


def test_batch_norm_strided_running_stats_cpu():
    x, _, _, w, b = _inputs((4, 3, 2, 2), F32)
    store = randn((6,), F32, 8)
    rm, rv = store[::2], np.abs(store[1::2]) + F32(0.5)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    F.batch_norm(x, rm, rv, w, b, training=True)
    R.batch_norm(x, rm_ref, rv_ref, w, b, training=True)
    assert_close(rm, rm_ref, name="running_mean")
    assert_close(store[::2], rm_ref, name="running_mean storage")


@settings(max_examples=25, deadline=None)
@given(
    N=st.integers(1, 5),
    C=st.integers(1, 6),
    H=st.integers(1, 4),
    W=st.integers(2, 5),
    training=st.booleans(),
    affine=st.booleans(),
    f64=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_property(N, C, H, W, training, affine, f64, seed):
    dtype = F64 if f64 else F32
    x, rm, rv, w, b = _inputs((N, C, H, W), dtype, affine, seed)
    rm2, rv2 = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training, momentum=0.2)
    exp = R.batch_norm(x, rm2, rv2, w, b, training, momentum=0.2)
    for g, e, name in zip(
        (y, mean, invstd, rm, rv), (*exp, rm2, rv2), "y mean invstd rm rv".split(), strict=True
    ):
        assert_close(g, e, name=name)
    dy = randn(x.shape, dtype, seed + 5)
    check(
        F.batch_norm_backward,
        R.batch_norm_backward,
        dy,
        x,
        w,
        mean,
        invstd,
        training=training,
        device="cpu",
    )


X = randn((4, 3, 2, 2), F32, 1)
V3 = randn((3,), F32, 2)
POS3 = np.abs(V3) + F32(0.5)


@pytest.mark.parametrize(
    "args,kw,exc,match",
    [
        ((randn((4,), F32), None, None), {"training": True}, ValueError, r"x must be 2-D or"),
        ((randn((2, 3, 2, 2, 2), F32), None, None), {}, ValueError, r"got shape \(2, 3, 2, 2, 2\)"),
        (
            (X, randn((4,), F32), POS3),
            {},
            ValueError,
            r"running_mean has shape \(4,\), expected \(3,\)",
        ),
        ((X, V3, randn((3, 1), F32)), {}, ValueError, r"running_var has shape \(3, 1\)"),
        (
            (X, V3, POS3, randn((2,), F32)),
            {},
            ValueError,
            r"weight has shape \(2,\).*x \(4, 3, 2, 2\)",
        ),
        ((X, V3, POS3, V3, randn((5,), F32)), {}, ValueError, r"bias has shape \(5,\)"),
        ((X, V3, POS3), {"eps": 0.0}, ValueError, "eps must be positive"),
        ((X, V3, POS3), {"eps": -1e-5}, ValueError, "eps must be positive"),
        ((X, V3, POS3), {"eps": "1e-5"}, TypeError, "eps must be a real number"),
        ((X, V3, POS3), {"momentum": None}, TypeError, "momentum must be a real number"),
        ((randn((1, 3), F32), None, None), {"training": True}, ValueError, "more than 1 value"),
        ((randn((1, 3, 1, 1), F32), V3, POS3), {"training": True}, ValueError, "more than 1 value"),
        ((X, None, None), {"training": False}, ValueError, "must be given when training=False"),
        ((X, V3.astype(F64), POS3), {}, TypeError, "running_mean has dtype float64"),
        ((X.astype(np.int64), None, None), {"training": True}, TypeError, "x must be float32"),
    ],
)
def test_batch_norm_bad_input(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        F.batch_norm(*args, **kw)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((randn((4, 3, 2, 1), F32), X, V3, V3, POS3), ValueError, r"dy has shape \(4, 3, 2, 1\)"),
        ((X, X, randn((2,), F32), V3, POS3), ValueError, r"weight has shape \(2,\)"),
        ((X, X, V3, randn((4,), F32), POS3), ValueError, r"save_mean has shape \(4,\)"),
        ((X, X, V3, V3, None), TypeError, "save_invstd must be an array"),
        ((X, X[:, :, 0], V3, V3, POS3), ValueError, r"dy has shape \(4, 3, 2, 2\) but x has shape"),
        ((X, X, V3, V3, POS3.astype(F64)), TypeError, "save_invstd has dtype float64"),
    ],
)
def test_batch_norm_backward_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        F.batch_norm_backward(*args)


@pytest.mark.skipif(not available(), reason="no GPU and no simulator")
def test_batch_norm_strided_running_stats_cuda():
    store = on("cuda", np.abs(randn((6,), F32, 8)) + F32(0.5))
    with pytest.raises(ValueError, match="running_var must be contiguous"):
        F.batch_norm(on("cuda", X), on("cuda", V3), store[::2], training=True)


@pytest.mark.skipif(not available(), reason="no GPU and no simulator")
def test_batch_norm_mixed_devices():
    with pytest.raises(TypeError, match="running_mean on device"):
        F.batch_norm(X, on("cuda", V3), POS3, training=True)


def _counter():
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    from step_counter import count_device_work

    return count_device_work


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_cuda_launches(monkeypatch, affine):
    # training forward 2 launches (statistics, apply + running update), eval 1, backward 2;
    # no host<->device copy (weight/bias None upload nothing)
    if not available():
        pytest.skip("no GPU and no simulator")
    from numba_cnn.ops import _common

    monkeypatch.setattr(_common, "POISON", False)  # poisoning uploads NaNs: not production
    count = _counter()
    x, rm, rv, w, b = _inputs((5, 3, 7, 9), F32, affine, seed=15)
    x, rm, rv = on("cuda", x, rm, rv)
    w, b = (on("cuda", w, b)) if affine else (None, None)
    with count() as c:
        _, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=True)
    assert dict(c.names) == {"bn_partial": 1, "bn_apply": 1} and c.copies == 0
    with count() as c:
        F.batch_norm(x, rm, rv, w, b, training=False)
    assert dict(c.names) == {"bn_apply": 1} and c.copies == 0
    with count() as c:
        F.batch_norm_backward(x, x, w, mean, invstd)
    assert dict(c.names) == {"bn_bwd_partial": 1, "bn_bwd_apply": 1} and c.copies == 0
