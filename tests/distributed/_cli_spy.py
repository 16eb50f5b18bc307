"""``numba-cnn`` with a record of which rank writes what: ``mpiexec -n P python _cli_spy.py LOG
train ...`` appends "<what> <rank>" to LOG for every checkpoint, metrics file and plot set.
With ``SPY_SIGINT_AT=k`` rank 1 alone sends itself a SIGINT (a Ctrl-C) in its k-th step."""

from __future__ import annotations

import os
import signal
import sys

from numba_cnn import cli, distributed, plots
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
    at = int(os.environ.get("SPY_SIGINT_AT", "0"))
    if at and os.environ.get("PMI_RANK") == "1":
        allreduce, steps = distributed.allreduce_gradients, []

        def interrupted(model):
            steps.append(1)
            if len(steps) == at:
                os.kill(os.getpid(), signal.SIGINT)
            allreduce(model)

        distributed.allreduce_gradients = interrupted
    sys.exit(cli.main(sys.argv[2:]))
