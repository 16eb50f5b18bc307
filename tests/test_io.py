"""nc.save / nc.load: nested round trips, atomic writes, corrupt and foreign files."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numba_cnn as nc
from numba_cnn import _cuda
from numba_cnn import io as ncio
from numba_cnn.testing import randn


def checkpoint():
    return {
        "model": {
            "0.weight": randn((4, 3, 3, 3), seed=1),
            "0.bias": randn((4,), np.float64, seed=2),
            "1.num_batches_tracked": np.array(12, np.int64),
            "a/b": np.arange(3, dtype=np.uint8),  # a separator inside a key
            "a%2Fb": np.arange(4, dtype=np.int16),  # what the escaped form would look like
        },
        "optimizer": {
            "state": {
                0: {"step": np.array(3.0, np.float32), "exp_avg": randn((4,), seed=3)},
                1: {"momentum_buffer": randn((2, 2), seed=4)},
            },
            "param_groups": [
                {
                    "lr": 0.01,
                    "betas": (0.9, 0.999),
                    "params": [0, 1],
                    "nesterov": False,
                    "initial_lr": None,
                }
            ],
        },
        "epoch": 7,
        "best": float("nan"),
        "big": 2**70,
        "scalar": np.float32(1.5),
        "name": "lenet — ü",
        "1": "string key one",
        1: "int key one",
        "empty": {},
        "history": [0.5, [1, 2], (), "x"],
        "flags": np.array([True, False]),
    }


def assert_same(a, b, path="root"):
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        assert [type(k) for k in a] == [type(k) for k in b], path
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}/{i}")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, path


def test_round_trip_nested_checkpoint(tmp_path):
    obj = checkpoint()
    path = tmp_path / "ck.npz"
    nc.save(obj, path)
    back = nc.load(path)
    assert_same(obj, back)
    assert isinstance(back["optimizer"]["state"][0]["step"], np.ndarray)  # 0-d stays an array
    assert back["optimizer"]["state"][0]["step"].ndim == 0
    assert list(back["optimizer"]["state"]) == [0, 1]  # int keys stay ints
    # readable as a plain npz too, arrays named by their path
    with np.load(path) as z:
        assert "model/0.weight" in z.files and "optimizer/state/1/momentum_buffer" in z.files
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temp file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    os.chmod(path, 0o640)
    nc.save({"x": 1}, path)
    assert os.stat(path).st_mode & 0o777 == 0o640  # overwriting keeps the file's permissions


def test_model_state_dict_round_trip(tmp_path):
    from numba_cnn import nn

    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    nc.save(m.state_dict(), str(tmp_path / "m.npz"))
    m2 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    m2.load_state_dict(nc.load(str(tmp_path / "m.npz")))
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert k == k2 and v.dtype == v2.dtype and np.array_equal(v, v2)


def test_unsaveable_object_leaves_old_file_intact(tmp_path):
    path = tmp_path / "ck.npz"
    nc.save({"epoch": 1}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="set"):
        nc.save({"epoch": 2, "bad": {1, 2}}, path)
    with pytest.raises(TypeError, match="object"):
        nc.save({"epoch": 2, "bad": np.array([None, 1])}, path)
    with pytest.raises(TypeError, match="keys"):
        nc.save({(1, 2): 3}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_crash_mid_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    nc.save({"w": np.ones(3)}, path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk on fire")

    monkeypatch.setattr(ncio.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        nc.save({"w": np.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]  # the temp file was removed
    monkeypatch.undo()

    def half_write(f, **members):  # dies after writing part of the archive
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ncio.np, "savez", half_write)
    with pytest.raises(KeyboardInterrupt):
        nc.save({"w": np.zeros(10)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]
    monkeypatch.undo()
    assert_same(nc.load(path), {"w": np.ones(3)})


def test_corrupt_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.npz"
    nc.save(checkpoint(), good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(2000))
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    flipped = tmp_path / "flipped.npz"  # one corrupted byte inside an array member
    b = bytearray(data)
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("model/0.weight.npy")
    b[info.header_offset + 200] ^= 0xFF
    flipped.write_bytes(bytes(b))
    bad_manifest = tmp_path / "bad_manifest.npz"
    np.savez(bad_manifest, __numba_cnn_manifest__=np.frombuffer(b"{not json", np.uint8))
    missing_member = tmp_path / "missing_member.npz"
    manifest = b'{"format": "numba_cnn.save", "version": 1, "root": {"t": "array", "k": "w"}}'
    np.savez(missing_member, __numba_cnn_manifest__=np.frombuffer(manifest, np.uint8))

    for p in (truncated, noise, empty, foreign, flipped, bad_manifest, missing_member):
        with pytest.raises(ValueError) as err:
            nc.load(p)
        assert str(p) in str(err.value), err.value
    with pytest.raises(FileNotFoundError):
        nc.load(tmp_path / "nope.npz")


@pytest.mark.skipif(not _cuda.available(), reason="no GPU and no simulator")
def test_device_arrays_are_saved_as_host_arrays(tmp_path):
    x = randn((3, 4), seed=7)
    nc.save({"x": nc.to_device(x)}, tmp_path / "d.npz")
    back = nc.load(tmp_path / "d.npz")["x"]
    assert isinstance(back, np.ndarray) and np.array_equal(back, x)


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=3),
    ),
)
_trees = st.recursive(
    _leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-3, 3)), kids, max_size=4),
    ),
    max_leaves=12,
)


def test_keys_with_nul_and_escape_characters(tmp_path):
    """A NUL in a key (found by the property test below: zipfile cuts member names at NUL),
    "/" and "%" in keys all round-trip."""
    obj = {"\x00": np.float32(0.5), "a\x00b": np.arange(3.0), "a/b": 1, "%2F": np.ones(2)}
    nc.save(obj, tmp_path / "k.npz")
    assert_same(obj, nc.load(tmp_path / "k.npz"))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=_trees)
def test_round_trip_property(obj, tmp_path):
    path = tmp_path / "p.npz"
    nc.save(obj, path)
    assert_same(obj, nc.load(path))


class _ArrayLike:
    """A tensor-like with ``__array__`` only (as a PyTorch CPU tensor has)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class _DLPackOnly:
    """A tensor-like with DLPack only (a JAX or PyTorch tensor also speaks it)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class _Broken:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")


def test_save_accepts_tensor_likes(tmp_path):
    from collections import OrderedDict

    w, b = randn((4, 3, 3, 3), seed=11), randn((4,), np.float64, seed=12)
    steps = np.array(7, np.int64)
    state = OrderedDict(
        [("0.weight", _ArrayLike(w)), ("0.bias", _DLPackOnly(b)), ("1.n", _ArrayLike(steps))]
    )
    nc.save(state, tmp_path / "torch_like.npz")
    back = nc.load(tmp_path / "torch_like.npz")
    assert_same(back, {"0.weight": w, "0.bias": b, "1.n": steps})
    model = nc.nn.Sequential(nc.nn.Conv2d(3, 4, 3))
    model.load_state_dict({k: back[k] for k in ("0.weight", "0.bias")})
    np.testing.assert_array_equal(model[0].weight.data, w)
    with pytest.raises(TypeError, match=r"_Broken at model/x to a NumPy array \(__array__: Can't"):
        nc.save({"model": {"x": _Broken()}}, tmp_path / "broken.npz")
    assert not (tmp_path / "broken.npz").exists()


def test_foreign_files_say_not_a_checkpoint_without_pickle_advice(tmp_path):
    from PIL import Image

    png = tmp_path / "digit.png"
    Image.new("L", (8, 8)).save(png)
    npy = tmp_path / "array.npy"
    np.save(npy, np.ones(3))
    pickled = tmp_path / "objects.npz"  # a manifest beside an object array: never unpickled
    manifest = b'{"format": "numba_cnn.save", "version": 1, "root": {"t": "array", "k": "w"}}'
    np.savez(
        pickled,
        __numba_cnn_manifest__=np.frombuffer(manifest, np.uint8),
        w=np.array([{"a": 1}], dtype=object),
    )
    for p in (png, npy, pickled):
        with pytest.raises(ValueError) as err:
            nc.load(p)
        msg = str(err.value)
        assert "not a numba_cnn checkpoint" in msg and str(p) in msg, msg
        assert "allow_pickle" not in msg, msg
