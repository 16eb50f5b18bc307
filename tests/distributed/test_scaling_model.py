"""The ring-allreduce model of docs/scaling.md and the bench's summary arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from numba_cnn.distributed.bench import MB, fit_ring, ring_time, summarize


@pytest.mark.parametrize("p", [2, 3, 8])
def test_fit_ring_recovers_latency_and_bandwidth(p):
    alpha, bw = 7.3e-6, 3.1e9
    sizes = [1.3 * MB, 61.0 * MB]
    times = [ring_time(s, p, alpha, bw) for s in sizes]
    a, b = fit_ring(sizes, times, p)
    assert a == pytest.approx(alpha, rel=1e-9) and b == pytest.approx(bw, rel=1e-9)


def test_ring_time_terms():
    assert ring_time(10 * MB, 1, 1e-5, 1e9) == 0.0  # one rank: nothing to exchange
    # 4 ranks: 6 latency steps, each byte crosses a link 2 * 3/4 times
    assert ring_time(8e6, 4, 2e-6, 1e9) == pytest.approx(6 * 2e-6 + 1.5 * 8e6 / 1e9)
    # the bandwidth term tends to 2 * bytes / bandwidth as P grows
    assert ring_time(1e9, 1000, 0, 1e9) == pytest.approx(2 * 0.999)


def test_summarize_medians_and_shares():
    rng = np.random.default_rng(3)

    def step_run(ranks, compute, wait, exchange):
        jitter = lambda v: list(v * (1 + 0.01 * rng.standard_normal(5)))
        return {"ranks": ranks, "batch": 64, "grad_bytes": 4 * MB, "compute_s": jitter(compute),
                "wait_s": jitter(wait), "allreduce_s": jitter(exchange)}  # fmt: skip

    alpha, bw = 2e-5, 2e9
    sizes = [0.25, 1.0, 4.0, 16.0, 64.0]
    seconds = [[ring_time(s * MB, 2, alpha, bw)] * 3 for s in sizes]
    runs = {
        "1x2": [step_run(1, 0.5, 0.0, 0.0)],
        "2x1": [step_run(2, 0.3, 0.01, 0.004), step_run(2, 0.3, 0.01, 0.004)],
        "allreduce": [{"sizes_mb": sizes, "seconds": seconds}],
    }
    s = summarize(runs)
    assert s["1x2"]["images_per_s"] == pytest.approx(128, rel=0.05)
    assert s["2x1"]["allreduce_share"] == pytest.approx(0.004 / 0.314, rel=0.05)
    assert s["model"]["alpha_s"] == pytest.approx(alpha, rel=1e-6)
    assert s["model"]["bandwidth_gb_per_s"] == pytest.approx(bw / 1e9, rel=1e-6)
    want = ring_time(4 * MB, 2, alpha, bw)
    assert s["model"]["predicted_allreduce_s"] == pytest.approx(want, rel=1e-6)
    assert s["model"]["error"] == pytest.approx(want / s["2x1"]["allreduce_s"] - 1, rel=1e-6)


def test_count_macs_of_convs_and_dense_layers():
    from numba_cnn import nn
    from numba_cnn.distributed._model import count_macs

    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),  # 5 x 7 x 9 outputs, 3*3*3 MACs each
        nn.ReLU(),
        nn.Conv2d(5, 4, (2, 3), stride=2, groups=1),  # 4 x 3 x 4 outputs, 5*2*3 each
        nn.Flatten(),
        nn.Linear(48, 6),
    )
    assert count_macs(model, (3, 7, 9)) == 5 * 7 * 9 * 27 + 4 * 3 * 4 * 30 + 48 * 6


def test_efficiency_and_break_even():
    from numba_cnn.distributed._model import break_even, efficiency

    assert efficiency(1, 1.0, 4 * MB, 1e-5, 1e9) == 1.0
    t_ar = ring_time(4 * MB, 4, 1e-5, 1e9)
    assert efficiency(4, 1.0, 4 * MB, 1e-5, 1e9) == pytest.approx(0.25 / (0.25 + t_ar))
    # comm-free steps keep halving; a huge message stops the scaling at once
    assert break_even(1.0, 0, 0, 1e9) == 1 << 20
    assert break_even(1e-3, 1e9, 1e-5, 1e9) == 1
    p = break_even(0.2, 46.8e6, 5e-6, 12.5e9)
    t = lambda q: 0.2 / q + ring_time(46.8e6, q, 5e-6, 12.5e9)
    assert t(p) < t(p // 2) and t(2 * p) >= t(p)
