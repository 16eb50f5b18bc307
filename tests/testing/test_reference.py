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


# ---- forwards against hand-computed cases or an independent formulation -----------------------


def conv_direct(x, w, b, stride, pad, dil, groups):
    """The textbook 7-loop sum over a zero-padded input (pad = (top, bottom, left, right))."""
    xp = np.pad(x, ((0, 0), (0, 0), pad[:2], pad[2:]))
    n, _, hp, wp = xp.shape
    k, cg, r_, s_ = w.shape
    p = (hp - dil[0] * (r_ - 1) - 1) // stride[0] + 1
    q = (wp - dil[1] * (s_ - 1) - 1) // stride[1] + 1
    y = np.zeros((n, k, p, q))
    for b_ in range(n):
        for kk in range(k):
            g = kk // (k // groups)
            for i in range(p):
                for j in range(q):
                    acc = 0.0 if b is None else b[kk]
                    for c in range(cg):
                        for r in range(r_):
                            for s in range(s_):
                                hh, ww = i * stride[0] + r * dil[0], j * stride[1] + s * dil[1]
                                acc += w[kk, c, r, s] * xp[b_, g * cg + c, hh, ww]
                    y[b_, kk, i, j] = acc
    return y


def test_conv2d_1x1x3x3_by_hand():
    x, w = rnd(1, 1, 3, 3, seed=21), rnd(1, 1, 2, 2, seed=22)
    y = R.conv2d(x, w)
    assert y.shape == (1, 1, 2, 2)
    for i in range(2):
        for j in range(2):
            expected = sum(
                w[0, 0, r, s] * x[0, 0, i + r, j + s] for r in range(2) for s in range(2)
            )
            assert_close(y[0, 0, i, j], expected)


@pytest.mark.parametrize(
    "xs, ws, kw, pad",
    [
        ((2, 3, 5, 6), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 2)), (1, 1, 2, 2)),
        ((1, 4, 6, 5), (4, 2, 2, 3), dict(groups=2, dilation=(2, 1)), (0, 0, 0, 0)),
        ((1, 3, 5, 4), (3, 1, 3, 3), dict(groups=3, padding="same"), (1, 1, 1, 1)),
        # even kernel, "same": total padding 1 -> 0 on top/left, 1 at the bottom/right
        ((1, 2, 4, 5), (3, 2, 2, 2), dict(padding="same"), (0, 1, 0, 1)),
        # dilated even kernel: total 2*(4-1)=6 -> 3/3; odd kernel 3 dilation 1 -> 1/1
        ((1, 1, 7, 6), (2, 1, 4, 3), dict(padding="same", dilation=(2, 1)), (3, 3, 1, 1)),
        # odd totals: kernel 4 -> 3 = 1 top + 2 bottom; kernel 2 -> 1 = 0 left + 1 right
        ((1, 1, 5, 6), (1, 1, 4, 2), dict(padding="same"), (1, 2, 0, 1)),
    ],
)
def test_conv2d_matches_direct_sum(xs, ws, kw, pad):
    x, w, b = rnd(*xs, seed=23), rnd(*ws, seed=24), rnd(ws[0], seed=25)
    stride = np.broadcast_to(kw.get("stride", 1), 2)
    dil = np.broadcast_to(kw.get("dilation", 1), 2)
    y = R.conv2d(x, w, b, **kw)
    assert_close(y, conv_direct(x, w, b, stride, pad, dil, kw.get("groups", 1)))
    if kw.get("padding") == "same":
        assert y.shape[2:] == x.shape[2:]


def test_conv2d_same_needs_stride_1():
    with pytest.raises(ValueError, match="same"):
        R.conv2d(rnd(1, 1, 4, 4), rnd(1, 1, 2, 2), stride=2, padding="same")


# (H, kernel, stride, padding, ceil_mode) -> output size; PyTorch's rule by hand:
# out = ceil_or_floor((H + 2p - k) / s) + 1, and with ceil_mode drop the last window if it would
# start at or past H + p (inside the right padding).
POOL_SIZES = [
    (5, 2, 2, 0, False, 2),
    (5, 2, 2, 0, True, 3),  # (5-2)/2 = 1.5 -> 2, +1
    (4, 3, 2, 1, True, 3),  # (4+2-3)/2 = 1.5 -> 2, +1; last start 4 < 4+1
    (7, 3, 2, 1, True, 4),  # (7+2-3)/2 = 3 exactly
    (5, 2, 3, 1, True, 2),  # ceil((5+2-2)/3) + 1 = 3, but start 2*3 = 6 >= 5+1: dropped
    (3, 2, 2, 0, True, 2),
]


@pytest.mark.parametrize("h, k, s, p, ceil, out", POOL_SIZES)
def test_pool_output_sizes(h, k, s, p, ceil, out):
    x = rnd(1, 2, h, h + 1, seed=26)
    assert R.max_pool2d(x, k, s, p, ceil_mode=ceil).shape[2] == out
    assert R.avg_pool2d(x, k, s, p, ceil_mode=ceil).shape[2] == out


def test_max_pool2d_by_hand():
    x = rnd(2, 3, 4, 6, seed=27)
    y, idx = R.max_pool2d(x, 2, return_indices=True)
    blocks = x.reshape(2, 3, 2, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 2, 3, 4)
    assert_close(y, blocks.max(-1))
    a = blocks.argmax(-1)  # 0..3 within the 2x2 window
    ph, pw = np.meshgrid(np.arange(2), np.arange(3), indexing="ij")
    assert_close(idx, (2 * ph + a // 2) * 6 + 2 * pw + a % 2)
    assert idx.dtype == np.int64 and y.dtype == np.float64


def test_max_pool2d_padding_is_minus_infinity():
    x = -np.abs(rnd(1, 1, 3, 3, seed=28)) - 1  # all negative: zero padding would win
    y = R.max_pool2d(x, 3, stride=1, padding=1)
    assert_close(y[0, 0, 0, 0], x[0, 0, :2, :2].max())


def test_max_pool2d_nan_propagates():
    x = rnd(1, 2, 4, 4, seed=29)
    x[0, 0, 1, 2] = np.nan
    x[0, 1, 3, 0] = np.nan
    x[0, 1, 3, 1] = np.nan  # two NaNs in one window: PyTorch reports the last one scanned
    y, idx = R.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 1 * 4 + 2
    assert np.isnan(y[0, 1, 1, 0]) and idx[0, 1, 1, 0] == 3 * 4 + 1
    assert np.isnan(y).sum() == 2


def test_max_pool2d_backward_accumulates_overlaps():
    x = rnd(1, 1, 4, 4, seed=30)
    x[0, 0, 1, 1] = 10.0  # the maximum of every 3x3 window holding it (centres rows/cols 0..2)
    y, idx = R.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    dy = rnd(*y.shape, seed=31)
    dx = R.max_pool2d_backward(dy, idx, x.shape)
    assert_close(dx[0, 0, 1, 1], dy[0, 0, :3, :3].sum())
    assert_close(dx.sum(), dy.sum())


def test_avg_pool2d_divisors_by_hand():
    x = rnd(1, 1, 3, 3, seed=32)
    v = x[0, 0]
    # k=2, s=2, p=1: windows cover rows/cols {-1,0} and {1,2}
    y = R.avg_pool2d(x, 2, 2, 1, count_include_pad=True)[0, 0]
    assert_close(y, [[v[0, 0] / 4, v[0, 1:].sum() / 4], [v[1:, 0].sum() / 4, v[1:, 1:].sum() / 4]])
    y = R.avg_pool2d(x, 2, 2, 1, count_include_pad=False)[0, 0]
    assert_close(y, [[v[0, 0], v[0, 1:].mean()], [v[1:, 0].mean(), v[1:, 1:].mean()]])
    # ceil_mode, no padding: the last window (row/col 2..3) hangs past the input; its part
    # outside the (padded) input counts in neither divisor
    for cip in (True, False):
        y = R.avg_pool2d(x, 2, 2, 0, ceil_mode=True, count_include_pad=cip)[0, 0]
        assert_close(y, [[v[:2, :2].mean(), v[:2, 2].mean()], [v[2, :2].mean(), v[2, 2]]])


def test_avg_pool2d_ceil_divisor_counts_padding_not_overhang():
    x = rnd(1, 1, 4, 4, seed=33)
    v = x[0, 0]
    # k=3, s=2, p=1, ceil: 3 windows starting at -1, 1, 3; the last covers rows 3, 4(pad), 5(out)
    y = R.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)[0, 0]
    assert y.shape == (3, 3)
    assert_close(y[2, 2], v[3, 3] / 4)  # divisor 2x2: row/col 3 and the padding row/col 4
    assert_close(y[0, 2], v[:2, 3].sum() / 6)  # rows -1..1 (3) x cols 3..4 (2)
    y = R.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)[0, 0]
    assert_close(y[2, 2], v[3, 3])
    assert_close(y[0, 2], v[:2, 3].mean())


def test_activations_by_hand():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    dy = rnd(5, seed=34)
    assert_close(R.relu(x), [0, 0, 0, 0.5, 3.0])
    assert_close(R.relu_backward(dy, x), dy * [0, 0, 0, 1, 1])  # 0 at x == 0
    assert_close(R.leaky_relu(x, 0.1), [-0.2, -0.05, 0, 0.5, 3.0])
    assert_close(R.sigmoid(x), 1 / (1 + np.exp(-x)))
    assert_close(R.tanh(x), (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1))
    big = np.array([-1000.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert_close(R.sigmoid(big), [0.0, 1.0])


def test_softmax_stable_and_normalised():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1.0, 2.0, 3.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, ly = R.softmax(x), R.log_softmax(x)
    assert_close(y[0], [1.0, 0.0, 0.0])
    assert_close(y[1], [1 / 3] * 3)
    assert_close(ly[0], [0.0, -2e4, -1e4])
    e = np.exp([1.0, 2.0, 3.0])
    assert_close(y[2], e / e.sum())
    z = rnd(3, 4, 5, seed=35)
    assert_close(R.softmax(z, 1).sum(1), np.ones((3, 5)))
    assert_close(np.exp(R.log_softmax(z, 0)), R.softmax(z, 0))


def test_cross_entropy_by_hand():
    logits, labels = rnd(4, 3, seed=36), np.array([2, 0, 1, 2], dtype=np.int64)
    loss = R.cross_entropy(logits, labels)
    assert loss.shape == () and loss.dtype == np.float64
    picked = np.exp(logits[np.arange(4), labels]) / np.exp(logits).sum(1)
    assert_close(loss, -np.log(picked).mean())
    onehot = np.eye(3)[labels]
    assert_close(R.cross_entropy_backward(logits, labels), (R.softmax(logits) - onehot) / 4)


def test_batch_norm_running_stats_and_eval():
    x = rnd(3, 2, 4, 5, seed=37) * 3 + 2
    rm, rv = rnd(2, seed=38), np.array([0.7, 1.9])
    rm0, rv0 = rm.copy(), rv.copy()
    y, sm, si = R.batch_norm(x, rm, rv, training=True, momentum=0.3, eps=1e-4)
    per_c = x.transpose(1, 0, 2, 3).reshape(2, -1)
    assert_close(sm, per_c.mean(1))
    assert_close(si, 1 / np.sqrt(per_c.var(1) + 1e-4))
    assert_close(rm, 0.7 * rm0 + 0.3 * per_c.mean(1))  # updated in place
    assert_close(rv, 0.7 * rv0 + 0.3 * per_c.var(1, ddof=1))  # with the unbiased variance
    assert_close(y.mean((0, 2, 3)), np.zeros(2), atol=1e-12)
    w, b = rnd(2, seed=39), rnd(2, seed=40)
    rm1, rv1 = rm.copy(), rv.copy()
    y, sm, si = R.batch_norm(x, rm, rv, w, b, training=False, eps=1e-4)
    assert_close(rm, rm1)  # eval leaves them alone
    assert_close(rv, rv1)
    assert_close(si, 1 / np.sqrt(rv + 1e-4))
    sm[:] = 0  # save_mean is a copy
    assert_close(rm, rm1)
    expected = (x - rm[None, :, None, None]) / np.sqrt(rv + 1e-4)[None, :, None, None]
    assert_close(y, expected * w[None, :, None, None] + b[None, :, None, None])


def test_dropout_by_hand():
    x, mask = rnd(3, 4, seed=41), (np.random.default_rng(42).random((3, 4)) < 0.5).astype(np.uint8)
    assert_close(R.dropout_apply(x, mask, 0.25), np.where(mask == 1, x / 0.75, 0.0))
    assert_close(R.dropout_backward(x, mask, 0.25), np.where(mask == 1, x / 0.75, 0.0))
    assert_close(R.dropout_apply(x, np.zeros_like(mask), 1.0), np.zeros((3, 4)))


def test_outputs_are_float64():
    x32 = rnd(1, 2, 4, 4, seed=43).astype(np.float32)
    w32 = rnd(2, 2, 3, 3, seed=44).astype(np.float32)
    for out in (R.conv2d(x32, w32), R.max_pool2d(x32, 2), R.avg_pool2d(x32, 2), R.relu(x32)):
        assert out.dtype == np.float64


# ---- EXTRA, only when PyTorch is installed (never a dependency): the same ops in torch ----------


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_extra_references_match_torch_when_installed():
    torch = pytest.importorskip("torch")  # an extra check; everything above runs without torch
    TF = torch.nn.functional
    T = torch.from_numpy
    x, w, b = rnd(2, 4, 6, 7, seed=50), rnd(6, 2, 3, 2, seed=51), rnd(6, seed=52)
    for kw in [
        dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
        dict(padding="same", groups=2),
    ]:
        assert_close(R.conv2d(x, w, b, **kw), TF.conv2d(T(x), T(w), T(b), **kw).numpy())
    for kw in [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=2)]:
        y, idx = R.max_pool2d(x, **kw, return_indices=True)
        yt, it = TF.max_pool2d(T(x), **kw, return_indices=True)
        assert_close(y, yt.numpy())
        assert_close(idx, it.numpy())
        for cip in (True, False):
            yt = TF.avg_pool2d(T(x), **kw, count_include_pad=cip).numpy()
            assert_close(R.avg_pool2d(x, **kw, count_include_pad=cip), yt)
    rm, rv = rnd(4, seed=53), np.random.default_rng(54).random(4) + 0.5
    rmt, rvt = T(rm.copy()), T(rv.copy())
    for training in (True, False):
        yt = TF.batch_norm(T(x), rmt, rvt, T(b[:4]), T(w[:4, 0, 0, 0]), training, 0.2, 1e-3)
        y = R.batch_norm(x, rm, rv, b[:4], w[:4, 0, 0, 0], training, 0.2, 1e-3)[0]
        assert_close(y, yt.numpy())
        assert_close(rm, rmt.numpy())
        assert_close(rv, rvt.numpy())
    labels = np.array([1, 0, 4])
    logits = rnd(3, 5, seed=55)
    assert_close(R.cross_entropy(logits, labels), TF.cross_entropy(T(logits), T(labels)).numpy())
