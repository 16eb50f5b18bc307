"""The lock around Numba's cache writes (``numba_cnn._cache_lock``): two processes saving
different entries of one cache index at the same moment keep both; without the lock they
take the same data file (the race behind numba issues #4807 / #10128)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from numba_cnn import _cache_lock

pytestmark = pytest.mark.skipif(_cache_lock.fcntl is None, reason="no fcntl (Windows)")

# Each process waits for the other (a file barrier), then saves its own entry; the index
# load sleeps so that both have read the index before either writes it.
_SAVER = textwrap.dedent(
    """
    import os, sys, time
    lock = sys.argv[3] == "1"
    if lock:
        import numba_cnn  # installs the lock
    from numba.core import caching
    path, me = sys.argv[1], sys.argv[2]
    f = caching.IndexDataCacheFile(path, "fn", "stamp")
    load = f._load_index
    def slow_load():
        out = load()
        time.sleep(0.5)
        return out
    f._load_index = slow_load
    open(os.path.join(path, "ready" + me), "w").close()
    while not all(os.path.exists(os.path.join(path, "ready" + i)) for i in "ab"):
        time.sleep(0.01)
    f.save(("sig", me), "code of " + me)
    """
)


def _race(tmp_path, lock: bool) -> dict:
    procs = [
        subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path), me, "1" if lock else "0"])
        for me in "ab"
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    from numba.core import caching

    f = caching.IndexDataCacheFile(str(tmp_path), "fn", "stamp")
    return {me: f.load(("sig", me)) for me in "ab"}


def test_two_processes_keep_both_entries(tmp_path):
    assert _race(tmp_path, lock=True) == {"a": "code of a", "b": "code of b"}


def test_without_the_lock_the_race_loses_an_entry(tmp_path):
    """The control: the same race without the lock corrupts the cache (so the test above
    can fail)."""
    assert _race(tmp_path, lock=False) != {"a": "code of a", "b": "code of b"}


def test_save_waits_for_the_lock(tmp_path):
    from numba.core import caching

    assert _cache_lock.install()
    f = caching.IndexDataCacheFile(str(tmp_path), "fn", "stamp")
    with open(f._index_path + ".lock", "ab") as fh:
        _cache_lock.fcntl.flock(fh, _cache_lock.fcntl.LOCK_EX)
        t = threading.Thread(target=f.save, args=(("sig",), "code"))
        t.start()
        time.sleep(0.3)
        assert t.is_alive() and f.load(("sig",)) is None  # blocked on the lock
    t.join(timeout=10)
    assert f.load(("sig",)) == "code"
