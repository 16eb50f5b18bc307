"""``numba-cnn`` with a record of which rank writes what: ``mpiexec -n P python _cli_spy.py LOG
train ...`` appends "<what> <rank>" to LOG for every checkpoint, metrics file and plot set."""

from __future__ import annotations

import os
import sys

from numba_cnn import cli, plots
from numba_cnn import train as T


def spy(what: str, fn):
    def wrapped(*args, **kwargs):
        with open(LOG, "a") as f:
            f.write(f"{what} {os.environ.get('PMI_RANK', 'none')}\n")
        return fn(*args, **kwargs)

    return wrapped


if __name__ == "__main__":
    LOG = sys.argv[1]
    T.save = spy("checkpoint", T.save)
    T._write_csv = spy("metrics", T._write_csv)
    plots.plot_all = spy("plots", plots.plot_all)
    sys.exit(cli.main(sys.argv[2:]))
