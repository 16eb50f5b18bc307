"""``Optimizer`` base: parameter groups, per-parameter state on the parameter's device,
``zero_grad``, and PyTorch-layout ``state_dict`` / ``load_state_dict``.

``state_dict()`` is ``{"state": {index: {name: NumPy array | number}}, "param_groups":
[{hyperparameters..., "params": [index, ...]}]}`` with parameters numbered in group order, as
``torch.optim.Optimizer.state_dict`` (Adam's ``step`` is a 0-d float32 array, as PyTorch's
tensor).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _cuda
from ..nn.module import Parameter
from ..ops._common import kernels, zeros

__all__ = ["Optimizer"]


def _device(a: Any) -> str:
    return "cuda" if _cuda.is_device_array(a) else "cpu"


class Optimizer:
    """Base class; subclasses implement ``_update(items, group, K)``: one update of every
    ``(parameter, state)`` in ``items`` (all of one device and dtype, each with a gradient)
    with the kernel module ``K``, whose ``*_multi`` kernels take them all in one launch."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[Parameter, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameters or of dicts, got a Parameter")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group (``{"params": [...], "lr": ...}``); missing options take the defaults."""
        group = dict(group)
        ps = group.get("params")
        ps = [ps] if isinstance(ps, Parameter) else list(ps or [])
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: params must be Parameters, got {type(p).__name__}"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps) or len({id(p) for p in ps}) != len(ps):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all parameters (``None``, or zeros with ``set_to_none=False``)."""
        from ..nn import _grad

        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    _grad.zero_(p.grad)

    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            batches: dict[tuple[str, str], list[tuple[Parameter, dict]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if _device(p.grad) != p.device or np.dtype(p.grad.dtype) != p.dtype:
                    raise TypeError(
                        f"{type(self).__name__}.step: parameter {p.shape} is {p.dtype} on "
                        f"{p.device} but its gradient is {p.grad.dtype} on {_device(p.grad)}"
                    )
                state = self.state.setdefault(p, {})
                for k, v in state.items():  # follow a parameter moved by Module.to()
                    if hasattr(v, "shape") and (
                        _device(v) != p.device or np.dtype(v.dtype) != p.dtype
                    ):
                        state[k] = _on_param(_cuda.to_host(v), p)
                batches.setdefault((p.device, p.dtype.str), []).append((p, state))
            for (device, _), items in batches.items():
                self._update(items, group, kernels(device, "optim"))
        return loss

    def _update(self, items: list[tuple[Parameter, dict]], group: dict, K: Any) -> None:
        raise NotImplementedError

    # -- state dict --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            saved = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            saved["params"] = ids
            groups.append(saved)
        state = {}
        for p, s in self.state.items():
            if id(p) in index and s:
                state[index[id(p)]] = {k: _to_numpy(v) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state; arrays go to each parameter's device and dtype."""
        try:
            saved_groups = state_dict["param_groups"]
            saved_state = state_dict["state"]
        except (KeyError, TypeError) as e:
            raise ValueError(
                "optimizer state_dict must have 'state' and 'param_groups' entries"
            ) from e
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Parameter] = {}
        for i, (g, sg) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"parameter group {i}: loaded state dict has {len(sg['params'])} "
                    f"parameters, this optimizer has {len(g['params'])}"
                )
            by_index.update(zip((int(k) for k in sg["params"]), g["params"], strict=True))
        new_state: dict[Parameter, dict[str, Any]] = {}
        for k, s in saved_state.items():
            if int(k) not in by_index:
                raise ValueError(f"loaded optimizer state for unknown parameter index {k}")
            p = by_index[int(k)]
            entry = {}
            for name, v in s.items():
                if name == "step":
                    entry[name] = int(round(float(np.asarray(v))))
                elif v is None or np.ndim(v) == 0:
                    entry[name] = v
                else:
                    v = np.asarray(_cuda.to_host(v))
                    if v.shape != p.shape:
                        raise ValueError(
                            f"optimizer state {name!r} of parameter {k} has shape {v.shape}, "
                            f"the parameter has shape {p.shape}"
                        )
                    entry[name] = _on_param(v, p)
            new_state[p] = entry
        for g, sg in zip(self.param_groups, saved_groups, strict=True):
            for key, v in sg.items():
                if key != "params":
                    g[key] = tuple(v) if key == "betas" else v
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _to_numpy(v: Any) -> Any:
    if _cuda.is_device_array(v):
        return _cuda.to_host(v)
    if isinstance(v, np.ndarray):
        return v.copy()
    return v


def _on_param(v: np.ndarray, p: Parameter) -> Any:
    """A copy of ``v`` with ``p``'s dtype on ``p``'s device."""
    v = np.array(v, dtype=p.dtype, copy=True, order="C")
    return _cuda.to_device(v) if p.device == "cuda" else v


def empty_like(p: Parameter) -> Any:
    if p.device == "cuda":
        return _cuda.cuda.device_array(p.shape, dtype=p.dtype)
    return np.empty(p.shape, dtype=p.dtype)


def zeros_like(p: Parameter) -> Any:
    return zeros(p.shape, p.dtype, p.device)  # on the GPU a fill kernel: no upload
