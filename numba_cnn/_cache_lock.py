"""A file lock around Numba's on-disk cache writes, so that processes compiling at once
(``pytest -n 2``, MPI ranks on their first run) cannot corrupt the cache.

Numba saves a compiled function by reading the cache index, taking the first free data-file
number, then writing the index and the data file. Two processes that compile different
specialisations of one function at the same time both take the same number: one's machine
code then sits under the other's signature, and the next process that loads it crashes
(seen here: a segfault in the GEMM after a two-worker test run; numba issues #4807 and
#10128, still open, where a file lock was the maintainers' suggested fix). ``install`` wraps
``IndexDataCacheFile.save`` in an exclusive ``flock`` on ``<index>.lock`` next to the index;
loads need none (Numba writes both files to a temporary name and renames them). Where
``fcntl`` is missing (Windows) Numba is left as it is.
"""

from __future__ import annotations

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def install() -> bool:
    """Wrap Numba's cache save in the lock (once per process); False where it cannot."""
    if fcntl is None:
        return False
    from numba.core import caching

    cls = caching.IndexDataCacheFile
    if getattr(cls.save, "_numba_cnn_lock", False):
        return True
    unlocked = cls.save

    def save(self, key, data):
        with open(self._index_path + ".lock", "ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            return unlocked(self, key, data)

    save._numba_cnn_lock = True
    save.__wrapped__ = unlocked
    cls.save = save
    return True


INSTALLED = install()
