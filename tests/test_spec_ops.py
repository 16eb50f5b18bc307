"""SPEC.md conformance, part 2: what the functional ops return, and how they refuse bad input.

Public API only. Values are checked against plain NumPy identities that SPEC states
(db == dy.sum((0, 2, 3)), dlogits == (softmax - onehot) / N, ...), not against the kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_cnn as nc
from numba_cnn import functional as F
from numba_cnn.testing import assert_close


def rand(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def is_device(a) -> bool:
    # a Numba DeviceNDArray (the simulator's FakeCUDAArray has no __cuda_array_interface__)
    return not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


def test_package_helpers():
    assert isinstance(nc.cuda_available(), bool)
    a = rand((2, 3))
    assert nc.to_host(a) is a  # a NumPy array is returned as is
    nc.synchronize()
    if nc.cuda_available():
        d = nc.to_device(a)
        assert is_device(d)
        back = nc.to_host(d)
        assert isinstance(back, np.ndarray) and np.array_equal(back, a)
        strided = nc.to_device(rand((3, 8)))[:, ::2]  # not C-contiguous: copied once
        assert np.array_equal(nc.to_host(F.relu(strided)), np.maximum(nc.to_host(strided), 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_backward_returns(dtype):
    x, w = rand((2, 3, 6, 5), dtype), rand((4, 3, 3, 3), dtype, 1)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (2, 4, 6, 5) and y.dtype == dtype
    dy = rand(y.shape, dtype, 2)
    out = F.conv2d_backward(dy, x, w, padding=1)
    assert isinstance(out, tuple) and len(out) == 3
    dx, dw, db = out
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (4,)
    assert_close(db, dy.astype(np.float64).sum((0, 2, 3)), name="db")
    dx2, dw2, db2 = F.conv2d_backward(dy, x, w, 1, 1, need_dx=False)
    assert dx2 is None
    assert_close(dw2, dw, name="dw")


def test_conv2d_same_padding_odd_total():
    # kernel 4, dilation 1: total padding 3 -> 1 top/left, 2 bottom/right, as PyTorch
    x, w = rand((1, 2, 7, 6)), rand((3, 2, 4, 4), seed=1)
    y = F.conv2d(x, w, padding="same")
    assert y.shape == (1, 3, 7, 6)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))
    assert_close(y, F.conv2d(xp, w), name="same")
    assert F.conv2d(x, w, padding="valid").shape == (1, 3, 4, 3)


def test_max_pool2d_indices():
    x = rand((2, 3, 7, 6))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == (2, 3, 3, 3) and idx.dtype == np.int64 and idx.shape == y.shape
    # flat h*W+w per plane, as PyTorch
    planes = x.reshape(2, 3, -1)
    assert np.array_equal(np.take_along_axis(planes, idx.reshape(2, 3, -1), 2), y.reshape(2, 3, -1))
    assert not isinstance(F.max_pool2d(x, 2), tuple)
    dx = F.max_pool2d_backward(y, idx, x.shape)
    assert dx.shape == x.shape and np.count_nonzero(dx) == y.size
    dx_avg = F.avg_pool2d_backward(y, x.shape, 2)
    assert dx_avg.shape == x.shape


def test_max_pool2d_nan_propagates():
    x = rand((1, 1, 4, 4))
    x[0, 0, 1, 2] = np.nan
    y = F.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 1]) and np.isfinite(np.delete(y.ravel(), 1)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy(dtype):
    logits, labels = rand((5, 7), dtype), np.array([0, 6, 3, 3, 1], dtype=np.int32)
    loss = F.cross_entropy(logits, labels)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert_close(loss, -logp[np.arange(5), labels].mean(), name="loss")
    onehot = np.eye(7)[labels]
    assert_close(F.cross_entropy_backward(logits, labels), (np.exp(logp) - onehot) / 5, name="dz")
    assert isinstance(float(nc.to_host(loss)), float)
    for int_dtype in (np.uint8, np.int16, np.int64):  # labels: any integer dtype
        assert_close(F.cross_entropy(logits, labels.astype(int_dtype)), loss, name="labels")


def test_cross_entropy_stays_on_device():
    if not nc.cuda_available():
        pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1")
    loss = F.cross_entropy(nc.to_device(rand((3, 4))), nc.to_device(np.array([0, 3, 1])))
    assert is_device(loss) and loss.shape == ()


def test_softmax_stable_and_log_softmax():
    x = rand((3, 5)) * 1e4
    s, ls = F.softmax(x, dim=1), F.log_softmax(x, dim=-1)
    assert np.isfinite(s).all() and np.isfinite(ls).all()
    assert_close(s.sum(1), np.ones(3), name="rows")
    assert_close(np.exp(ls), s, name="exp(log_softmax)")


def test_linear_returns():
    x, w, b = rand((4, 6)), rand((3, 6), seed=1), rand((3,), seed=2)
    y = F.linear(x, w, b)
    assert_close(y, x.astype(np.float64) @ w.T + b, name="y")
    dx, dw, db = F.linear_backward(y, x, w)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (3,)
    assert F.linear_backward(y, x, w, need_dx=False)[0] is None


def test_batch_norm_updates_running_stats_in_place():
    x = rand((4, 3, 5, 2))
    rm, rv = rand((3,), seed=1), np.abs(rand((3,), seed=2)) + 0.5
    rm0, rv0 = rm.copy(), rv.copy()
    out = F.batch_norm(x, rm, rv, training=True, momentum=0.1)
    assert isinstance(out, tuple) and len(out) == 3
    xd = x.astype(np.float64)
    unbiased = xd.var((0, 2, 3), ddof=1)
    assert_close(rm, 0.9 * rm0 + 0.1 * xd.mean((0, 2, 3)), name="running_mean")
    assert_close(rv, 0.9 * rv0 + 0.1 * unbiased, name="running_var")
    dx, dweight, dbias = F.batch_norm_backward(rand(x.shape, seed=3), x, None, out[1], out[2])
    assert dx.shape == x.shape
    y, _, _ = F.batch_norm(x, rm, rv)  # eval: uses the running stats, leaves them alone
    assert_close(rm, 0.9 * rm0 + 0.1 * xd.mean((0, 2, 3)), name="running_mean unchanged")
    assert y.shape == x.shape


def test_dropout_returns_y_and_mask():
    x = rand((8, 50))
    y, mask = F.dropout(x, 0.25, rng=np.random.default_rng(0))
    assert mask.shape == x.shape
    assert_close(y, np.where(mask, x / 0.75, 0), name="inverted dropout")
    y2, mask2 = F.dropout(x, 0.25, rng=np.random.default_rng(0))
    assert np.array_equal(np.asarray(mask2), np.asarray(mask))  # seeded
    assert_close(F.dropout_backward(y, mask, 0.25), np.where(mask, y / 0.75, 0), name="dx")
    nc.manual_seed(5)  # rng=None draws from the generator nc.manual_seed seeds
    _, m1 = F.dropout(x, 0.5)
    nc.manual_seed(5)
    _, m2 = F.dropout(x, 0.5)
    assert np.array_equal(np.asarray(m1), np.asarray(m2))
    y_eval, _ = F.dropout(x, 0.5, training=False)
    assert np.array_equal(y_eval, x)


def test_dropout_p_one_drops_everything():
    # as torch: p=1 gives x * 0 (no division by zero), on every device
    x = rand((3, 7))
    x[0, 0] = np.nan  # NaN * 0 stays NaN, as torch
    devices = [np.asarray] + ([nc.to_device] if nc.cuda_available() else [])
    for on in devices:
        y, mask = F.dropout(on(x), 1.0)
        y, mask = nc.to_host(y), nc.to_host(mask)
        assert not mask.any() and np.isnan(y[0, 0]) and not np.delete(y.ravel(), 0).any()
        dx = nc.to_host(F.dropout_backward(on(x), on(mask), 1.0))
        assert np.isnan(dx[0, 0]) and not np.delete(dx.ravel(), 0).any()


# ---- error conventions: the message names the argument (and the shapes) ----

X, W = rand((2, 3, 5, 6)), rand((4, 3, 3, 3), seed=1)
LOGITS = rand((4, 10))
BAD = [
    (ValueError, r"\bx\b.*\(3, 5, 6\)", F.conv2d, (X[0], W), {}),
    (ValueError, r"x \(2, 3, 5, 6\).*weight \(4, 2, 3, 3\)", F.conv2d, (X, W[:, :2]), {}),
    (ValueError, r"kernel.*larger.*\(4, 3, 7, 3\)", F.conv2d, (X, rand((4, 3, 7, 3))), {}),
    (ValueError, "stride", F.conv2d, (X, W), {"stride": 0}),
    (ValueError, "padding", F.conv2d, (X, W), {"padding": -1}),
    (ValueError, "groups", F.conv2d, (X, W), {"groups": 2}),
    (ValueError, r"bias.*\(5,\)", F.conv2d, (X, W, np.zeros(5, np.float32)), {}),
    (TypeError, "weight.*float64.*x.*float32", F.conv2d, (X, W.astype(np.float64)), {}),
    (
        ValueError,
        r"dy.*\(2, 4, 3, 3\)",
        F.conv2d_backward,
        (np.zeros((2, 4, 3, 3), np.float32), X, W),
        {},
    ),
    (ValueError, "padding.*kernel_size", F.max_pool2d, (X, 2), {"padding": 2}),
    (ValueError, "kernel_size", F.max_pool2d, (X, 0), {}),
    (ValueError, "padding.*kernel_size", F.avg_pool2d, (X, 3), {"padding": 2}),
    (TypeError, "idx.*integer", F.max_pool2d_backward, (X, X, X.shape), {}),
    (ValueError, r"label 10.*\(4, 10\)", F.cross_entropy, (LOGITS, np.array([0, 1, 2, 10])), {}),
    (ValueError, r"labels.*\(3,\).*\(4, 10\)", F.cross_entropy, (LOGITS, np.array([0, 1, 2])), {}),
    (TypeError, "labels.*integer", F.cross_entropy, (LOGITS, np.zeros(4)), {}),
    (ValueError, r"x \(4, 10\).*weight \(3, 9\)", F.linear, (LOGITS, rand((3, 9))), {}),
    (ValueError, r"dy.*\(4, 10\).*\(3, 10\)", F.relu_backward, (LOGITS, LOGITS[:3]), {}),
    (TypeError, "x.*int32", F.relu, (LOGITS.astype(np.int32),), {}),
    (TypeError, "x.*list", F.sigmoid, ([1.0],), {}),
    (ValueError, "dim", F.softmax, (LOGITS,), {"dim": 2}),
    (
        ValueError,
        r"running_mean.*\(4,\)",
        F.batch_norm,
        (X, np.zeros(4, np.float32), np.ones(3, np.float32)),
        {},
    ),
    (ValueError, r"\bp\b", F.dropout, (X,), {"p": 1.5}),
]


@pytest.mark.parametrize(
    "exc, match, fn, args, kw", BAD, ids=[f"{b[2].__name__}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input(exc, match, fn, args, kw):
    with pytest.raises(exc, match=match):
        fn(*args, **kw)


def test_host_device_mixing_names_arguments():
    if not nc.cuda_available():
        pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1")
    d = nc.to_device
    with pytest.raises(TypeError, match="x on host.*weight on device"):
        F.conv2d(X, d(W))
    with pytest.raises(TypeError, match="logits on device.*labels on host"):
        F.cross_entropy(d(LOGITS), np.arange(4))
    with pytest.raises(TypeError, match="x on device.*weight on host"):
        F.linear(d(LOGITS), rand((3, 10)))
    with pytest.raises(TypeError, match="dy on host.*y on device"):
        F.softmax_backward(LOGITS, d(LOGITS))
    y, idx = F.max_pool2d(X, 2, return_indices=True)
    with pytest.raises(TypeError, match="dy on device.*idx on host"):
        F.max_pool2d_backward(d(y), idx, X.shape)
    with pytest.raises(TypeError, match="x on host.*running_mean on device"):
        F.batch_norm(X, d(np.zeros(3, np.float32)), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="mask is on the device.*dy is on the host"):
        F.dropout_backward(X, d(np.ones(X.shape, bool)), 0.5)
    with pytest.raises(TypeError, match="dy on device.*x on host"):
        F.conv2d_backward(d(rand((2, 4, 3, 4))), X, W)
