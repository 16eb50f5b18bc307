"""The cost model of ``docs/scaling.md``: ring allreduce time, a model's gradient bytes and
training FLOPs, and the efficiency of P data-parallel ranks at a fixed global batch."""

from __future__ import annotations

import numpy as np

MB = 1 << 20

#: ResNet-18 (He et al. 2016, Table 1): 11.69 M parameters, 1.8 G multiply-adds per 224x224
#: image; not a model of this library, so its figures are quoted rather than counted.
RESNET18 = {"params": 11_689_512, "macs_per_image": 1.82e9}


def ring_time(nbytes: float, p: int, alpha: float, bandwidth: float) -> float:
    """Ring allreduce of ``nbytes`` over ``p`` ranks: ``2 (p-1)`` latency-bound steps and
    ``2 (p-1)/p * nbytes`` through each link (reduce-scatter, then all-gather)."""
    if p < 2:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / bandwidth


def fit_ring(sizes: list[float], times: list[float], p: int) -> tuple[float, float]:
    """``(alpha, bandwidth)`` of the ring model through two measured ``(bytes, seconds)``."""
    (s0, s1), (t0, t1) = sizes, times
    k = 2 * (p - 1) / p
    bandwidth = k * (s1 - s0) / (t1 - t0)
    alpha = (t0 - k * s0 / bandwidth) / (2 * (p - 1))
    return alpha, bandwidth


def count_macs(model, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of a ``Sequential`` of convs and dense layers on one
    image of ``shape`` (C, H, W), found by running it once and reading each layer's output."""
    from .. import nn

    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    macs = 0
    for layer in model.eval():
        y = layer(x)
        if isinstance(layer, nn.Conv2d):
            _, c_out, p, q = y.shape
            r, s = layer.kernel_size
            macs += c_out * p * q * (layer.in_channels // layer.groups) * r * s
        elif isinstance(layer, nn.Linear):
            macs += layer.in_features * layer.out_features
        x = y
    return int(macs)


def efficiency(p: int, step_compute: float, nbytes: float, alpha: float, bandwidth: float) -> float:
    """Speed of ``p`` ranks over one rank, divided by ``p``, at a fixed global batch that one
    rank computes in ``step_compute`` seconds (no overlap of the allreduce with compute)."""
    return step_compute / (p * (step_compute / p + ring_time(nbytes, p, alpha, bandwidth)))


def break_even(step_compute: float, nbytes: float, alpha: float, bandwidth: float) -> int:
    """The rank count beyond which a step gets slower again (``step_compute / p`` stops paying
    for the growing ``2 (p-1) alpha`` and ``2 (p-1)/p`` terms); at most 1 << 20."""
    best, best_t = 1, step_compute
    p = 2
    while p <= 1 << 20:
        t = step_compute / p + ring_time(nbytes, p, alpha, bandwidth)
        if t >= best_t:
            break
        best, best_t = p, t
        p *= 2
    return best


#: (name, bandwidth B/s, alpha s) of the links in the worked example (typical, not measured)
NETWORKS = (("10 GbE", 1.25e9, 50e-6), ("100 Gb/s InfiniBand", 12.5e9, 5e-6))


def model_sizes() -> dict[str, tuple[int, float]]:
    """``{name: (parameters, forward multiply-adds per image)}`` of LeNet-5 (28x28), the CIFAR
    net (``vgg_small``, 3x32x32) and ResNet-18 (224x224, quoted)."""
    from ..models import build_model

    out = {}
    for name, args, shape in (("LeNet-5", ("lenet", 1, 28, 10), (1, 28, 28)),
                              ("CIFAR net", ("vgg", 3, 32, 10), (3, 32, 32))):  # fmt: skip
        model = build_model(*args)
        out[name] = (sum(p.numel() for p in model.parameters()), float(count_macs(model, shape)))
    out["ResNet-18"] = (RESNET18["params"], RESNET18["macs_per_image"])
    return out


def scaling_table(flops_per_s: float, batch: int, ranks=(2, 8, 64)) -> list[dict]:
    """Per model and network: gradient bytes, one rank's step (``6 * MACs * batch`` FLOPs at
    ``flops_per_s``), the allreduce and the efficiency at each of ``ranks``, the break-even."""
    rows = []
    for name, (params, macs) in model_sizes().items():
        nbytes, compute = 4.0 * params, 6.0 * macs * batch / flops_per_s
        for net, bw, alpha in NETWORKS:
            row = {"model": name, "grad_mb": nbytes / MB, "network": net, "step_1": compute}
            for p in ranks:
                row[f"allreduce_{p}"] = ring_time(nbytes, p, alpha, bw)
                row[f"eff_{p}"] = efficiency(p, compute, nbytes, alpha, bw)
            row["break_even"] = break_even(compute, nbytes, alpha, bw)
            rows.append(row)
    return rows
