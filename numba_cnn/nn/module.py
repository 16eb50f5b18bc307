"""``Module`` and ``Parameter``: the layer API (as ``torch.nn``; ``Sequential`` is in
``container``), with an explicit backward instead of autograd.

Each layer's ``forward`` keeps what its ``backward`` needs; ``backward(dy)`` returns ``dx`` and
accumulates each parameter's gradient into ``.grad``. Gradients start as ``None`` (as in PyTorch):
the first backward stores its gradient array, later ones add to it, and ``zero_grad()`` sets
them back to ``None`` (or to zeros with ``set_to_none=False``).

>>> import numpy as np, numba_cnn as nc
>>> from numba_cnn import nn
>>> _ = nc.manual_seed(0)
>>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
>>> [name for name, _ in model.named_parameters()]
['0.weight', '0.bias', '2.weight', '2.bias']
>>> y = model(np.ones((5, 4), np.float32))
>>> model.backward(np.ones_like(y), need_dx=False) is None
True
>>> model[0].weight.grad.shape
(3, 4)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _cuda

__all__ = ["Parameter", "Module"]


def _place(a: Any, device: str | None, dtype: Any = None) -> Any:
    """``a`` (NumPy or device array) on ``device`` (None: where it is) with ``dtype``."""
    if a is None:
        return None
    on_dev = _cuda.is_device_array(a)
    if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
        a = np.asarray(_cuda.to_host(a)).astype(dtype)
        if on_dev and device is None:
            device = "cuda"
    if device == "cuda":
        return _cuda.to_device(a)
    if device == "cpu":
        return np.ascontiguousarray(_cuda.to_host(a))
    return a


def _check_device(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ValueError(f'device must be "cpu" or "cuda", got {device!r}')
    if device == "cuda" and not _cuda.available():
        raise RuntimeError("to('cuda'): no CUDA GPU is available")
    return device


class Parameter:
    """A trainable array (``.data``, NumPy or device array) and its gradient ``.grad``."""

    __slots__ = ("data", "grad")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.grad: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def device(self) -> str:
        return "cuda" if _cuda.is_device_array(self.data) else "cpu"

    def numel(self) -> int:
        return int(np.prod(self.data.shape, dtype=np.int64))

    def accumulate(self, g: Any) -> None:
        """``grad += g`` (``g`` is stored as is when there is no gradient yet)."""
        if g is None:
            return
        if self.grad is None:
            self.grad = g
        else:
            from . import _grad

            _grad.add_(self.grad, g)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device={self.device!r})"


class Module:
    """Base class: parameters, buffers and sub-modules registered by attribute assignment."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() first")
        params, bufs, mods = self._parameters, self._buffers, self._modules
        if isinstance(value, (Parameter, Module)):
            for store in (params, bufs, mods):
                store.pop(name, None)
            self.__dict__.pop(name, None)  # a plain attribute would shadow the registration
            (params if isinstance(value, Parameter) else mods)[name] = value
        elif name in params or name in mods:
            if value is not None:
                kind = "parameter" if name in params else "module"
                raise TypeError(
                    f"cannot assign {type(value).__name__} as {kind} {name!r} "
                    f"(a {'Parameter' if kind == 'parameter' else 'Module'} or None expected)"
                )
            (params if name in params else mods)[name] = None
        elif name in bufs:
            bufs[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, value: Any) -> None:
        """A non-trainable array saved in ``state_dict`` and moved by ``to()``."""
        self._buffers[name] = value

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy: Any, *, need_dx: bool = True) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from (m for m in self._modules.values() if m is not None)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``("0.weight", p), ...`` in PyTorch's order; shared parameters once."""
        seen: set[int] = set()
        for mp, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mp}.{name}" if mp else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for mp, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{name}" if mp else name), b

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (``None``, or zeros with ``set_to_none=False``)."""
        from . import _grad

        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                _grad.zero_(p.grad)

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- placement ---------------------------------------------------------------------------
    def to(self, device: Any = None, dtype: Any = None) -> Module:
        """Move parameters, gradients and buffers to ``"cpu"`` or ``"cuda"`` and/or cast
        float arrays to ``dtype`` (``model.to("cuda")``, ``model.to(np.float64)``)."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        if device is not None:
            _check_device(device)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = _place(p.data, device, dtype)
                    p.grad = _place(p.grad, device, dtype)
            for name, b in m._buffers.items():
                # float buffers follow the parameters; counters (int64) stay on the host
                if b is not None and np.dtype(b.dtype).kind == "f":
                    m._buffers[name] = _place(b, device, dtype)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def float(self) -> Module:
        return self.to(dtype=np.float32)

    def double(self) -> Module:
        return self.to(dtype=np.float64)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers under PyTorch's keys, as NumPy copies."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mp, m in self.named_modules():
            pre = f"{mp}." if mp else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[pre + name] = np.array(_cuda.to_host(p.data), copy=True)
            for name, b in m._buffers.items():
                if b is not None:
                    out[pre + name] = np.array(_cuda.to_host(b), copy=True)
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> tuple[list, list]:
        """Copy ``state_dict`` (PyTorch keys, NumPy-convertible values) into this module,
        onto the device and dtype each entry already has. Missing or unexpected keys (with
        ``strict``) and wrongly shaped values raise ``ValueError`` listing all of them.
        Returns ``(missing_keys, unexpected_keys)``."""
        slots: dict[str, tuple[Module, str, str]] = {}
        for mp, m in self.named_modules():
            pre = f"{mp}." if mp else ""
            for kind in ("_parameters", "_buffers"):
                for name, v in getattr(m, kind).items():
                    if v is not None:
                        slots[pre + name] = (m, kind, name)
        given = {str(k): v for k, v in state_dict.items()}
        missing = [k for k in slots if k not in given]
        unexpected = [k for k in given if k not in slots]
        values: dict[str, np.ndarray] = {}
        wrong = []
        for key, (m, kind, name) in slots.items():
            if key not in given:
                continue
            cur = getattr(m, kind)[name]
            cur_arr = cur.data if kind == "_parameters" else cur
            v = np.asarray(_cuda.to_host(given[key]))
            if v.shape != tuple(cur_arr.shape):
                wrong.append(f"{key}: got shape {v.shape}, expected {tuple(cur_arr.shape)}")
            values[key] = v
        problems = []
        if missing and strict:
            problems.append(f"missing keys {missing}")
        if unexpected and strict:
            problems.append(f"unexpected keys {unexpected}")
        if wrong:
            problems.append("wrong shapes: " + "; ".join(wrong))
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + ", ".join(problems))
        for key, v in values.items():
            m, kind, name = slots[key]
            cur = getattr(m, kind)[name]
            dst = cur.data if kind == "_parameters" else cur
            v = np.ascontiguousarray(v, dtype=dst.dtype)
            if _cuda.is_device_array(dst):
                dst.copy_to_device(v)
            else:
                np.copyto(dst, v)
        return missing, unexpected

    # -- printing ----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"
