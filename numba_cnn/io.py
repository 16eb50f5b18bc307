"""``nc.save`` / ``nc.load``: nested dicts, lists and tuples of arrays, numbers, strings and
None (model and optimizer ``state_dict``s, whole checkpoints) in one ``.npz`` file.

Arrays are stored as the npz members (named after their path, e.g. ``model/0.weight``); the
structure and every scalar live in a JSON manifest stored beside them, so dict keys that were
ints (optimizer state) come back as ints, 0-d arrays stay arrays and numbers stay numbers. No
pickle anywhere. Array-likes from other libraries (a PyTorch ``state_dict``'s tensors, JAX or
CuPy arrays) are saved as NumPy arrays: anything with DLPack (``__dlpack__``) or
``__array__``, and device arrays through ``__cuda_array_interface__``. The file is written
to a temporary file in the same directory, flushed, fsync'ed and renamed over the target:
an interrupted save leaves the old file intact.

>>> import os, tempfile, numpy as np, numba_cnn as nc
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> nc.save({"epoch": 3, "model": {"w": np.ones(2, np.float32)}, "opt": {0: {"step": 1.5}}}, path)
>>> ck = nc.load(path)
>>> ck["epoch"], ck["model"]["w"].dtype, ck["opt"][0]
(3, dtype('float32'), {'step': 1.5})
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from . import _cuda

__all__ = ["save", "load"]

_MANIFEST = "__numba_cnn_manifest__"
_FORMAT = "numba_cnn.save"
_VERSION = 1


def _escape(key: str) -> str:
    # "/" separates path parts in member names; escape it (and the escape char) in keys, and
    # NUL, at which zipfile cuts a member name when reading
    return key.replace("%", "%25").replace("/", "%2F").replace("\x00", "%00")


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _name(self, path: str) -> str:
        name, n = path or "root", 1
        while name in self.arrays or name == _MANIFEST:
            name, n = f"{path}%{n}", n + 1  # "%" followed by a digit never comes from _escape
        return name

    def node(self, obj: Any, path: str) -> dict[str, Any]:
        if obj is None:
            return {"t": "none"}
        if isinstance(obj, bool):
            return {"t": "bool", "v": obj}
        if isinstance(obj, int):
            return {"t": "int", "v": obj}
        if isinstance(obj, float):
            return {"t": "float", "v": obj}
        if isinstance(obj, str):
            return {"t": "str", "v": obj}
        if _cuda.is_device_array(obj):
            obj = _cuda.to_host(obj)
        if not isinstance(obj, (np.ndarray, np.generic, dict, list, tuple)) and (
            hasattr(obj, "__dlpack__") or hasattr(obj, "__array__")
        ):
            obj = _as_numpy(obj, path)
        if isinstance(obj, np.generic):
            return {"t": "scalar", "k": self._array(np.asarray(obj), path)}
        if isinstance(obj, np.ndarray):
            return {"t": "array", "k": self._array(obj, path)}
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
                    raise TypeError(
                        f"save: dict keys must be str or int, got {type(k).__name__} at "
                        f"{path or '<root>'}"
                    )
                key = {"t": "str", "v": k} if isinstance(k, str) else {"t": "int", "v": int(k)}
                sub = f"{path}/{_escape(str(k))}" if path else _escape(str(k))
                items.append([key, self.node(v, sub)])
            return {"t": "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            sub = lambda i: f"{path}/{i}" if path else str(i)
            return {"t": kind, "items": [self.node(v, sub(i)) for i, v in enumerate(obj)]}
        raise TypeError(f"save: cannot save a {type(obj).__name__} at {path or '<root>'}")

    def _array(self, a: np.ndarray, path: str) -> str:
        if a.dtype.hasobject or a.dtype.kind not in "biufcUSM?":
            raise TypeError(f"save: array at {path or '<root>'} has unsupported dtype {a.dtype}")
        name = self._name(path)
        self.arrays[name] = a
        return name


def _as_numpy(obj: Any, path: str) -> np.ndarray:
    """A tensor-like (DLPack first: zero-copy, then ``__array__``) as a NumPy array."""
    errors = []
    if hasattr(obj, "__dlpack__"):
        try:
            return np.from_dlpack(obj)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            errors.append(f"DLPack: {e}")
    if hasattr(obj, "__array__"):
        try:
            return np.asarray(obj)
        except (TypeError, ValueError, RuntimeError) as e:
            errors.append(f"__array__: {e}")
    raise TypeError(
        f"save: cannot convert the {type(obj).__name__} at {path or '<root>'} to a NumPy "
        f"array ({'; '.join(errors)})"
    )


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file in the same directory, fsync,
    rename). Device arrays are copied to the host first; other libraries' tensors are taken
    through DLPack or ``__array__`` (so ``nc.save(torch_model.state_dict(), path)`` works)."""
    path = os.fspath(path)
    w = _Writer()
    root = w.node(obj, "")
    manifest = json.dumps({"format": _FORMAT, "version": _VERSION, "root": root})
    members = dict(w.arrays)
    members[_MANIFEST] = np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _file_mode(path: str) -> int:
    """The existing file's permissions, else what ``open()`` would give a new file."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def load(path: str | os.PathLike) -> Any:
    """Read what ``save`` wrote. A corrupt, truncated or foreign file raises ``ValueError``
    naming the file (a missing one ``FileNotFoundError``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    if not zipfile.is_zipfile(path):  # checked first: np.load would try it as a pickle
        raise ValueError(
            f"load: {path!r} is not a numba_cnn checkpoint (not an .npz archive, which is what "
            "numba_cnn.save writes)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            if _MANIFEST not in z.files:
                raise ValueError("no numba_cnn manifest (not written by numba_cnn.save)")
            meta = json.loads(bytes(z[_MANIFEST]).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise ValueError("unrecognised manifest")
            if meta.get("version") != _VERSION:
                raise ValueError(f"unsupported format version {meta.get('version')!r}")
            arrays = {k: z[k] for k in z.files if k != _MANIFEST}
            return _build(meta["root"], arrays)
    except ValueError as e:
        why = str(e)
        if "pickle" in why:  # never loaded; say so without NumPy's allow_pickle advice
            why = "it holds pickled Python objects, which numba_cnn never loads"
        raise ValueError(f"load: {path!r} is not a numba_cnn checkpoint: {why}") from e
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"load: {path!r} is corrupt or not a numba_cnn checkpoint ({type(e).__name__}: {e})"
        ) from e


def _build(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    t = node["t"]
    if t == "none":
        return None
    if t in ("bool", "int", "float", "str"):
        v = node["v"]
        want = {"bool": bool, "int": int, "float": (float, int), "str": str}[t]
        if not isinstance(v, want):
            raise ValueError(f"manifest {t} entry holds {type(v).__name__}")
        return float(v) if t == "float" else v
    if t in ("array", "scalar"):
        k = node["k"]
        if k not in arrays:
            raise ValueError(f"array {k!r} listed in the manifest is missing")
        return arrays[k][()] if t == "scalar" else arrays[k]
    if t == "dict":
        return {_build(k, arrays): _build(v, arrays) for k, v in node["items"]}
    if t == "list":
        return [_build(v, arrays) for v in node["items"]]
    if t == "tuple":
        return tuple(_build(v, arrays) for v in node["items"])
    raise ValueError(f"unknown manifest entry type {t!r}")
