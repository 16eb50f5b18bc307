"""Every CUDA kernel specialisation compiles for sm_80 and sm_90 without spills.

The compile itself is the session's one ``sass_report`` run (the ``kernel_report`` fixture of
``conftest.py``, shared with the SASS gate); ``ptx_report``'s own command runs on one small
module.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


def _ptx_report(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "numba_cnn.kernels.cuda.ptx_report", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=1500)


def _kernel_modules() -> list[str]:
    """The kernel modules that declare ``ptx_specs`` (read from the sources, not the report)."""
    import numba_cnn.kernels.cuda as pkg

    mods = [
        m.name
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_") and m.name not in ("ptx_report", "sass_report")
    ]
    assert {"conv2d", "pooling", "activation", "softmax", "gemm", "batch_norm", "dropout"} <= set(
        mods
    )
    # a helper module whose kernels another module lists declares no ptx_specs
    src = lambda m: open(os.path.join(pkg.__path__[0], m + ".py")).read()  # noqa: E731
    return [m for m in mods if "def ptx_specs" in src(m)]


def test_ptx_report_compiles_every_kernel_without_spills(kernel_report):
    mods = _kernel_modules()
    if kernel_report.returncode == 3:
        # ptxas or nvdisasm missing (the SASS report needs both): ptx_report alone, which needs
        # only NVVM and reads registers and spills where ptxas is found
        p = _ptx_report()
        if p.returncode == 3:  # no NVVM (the cu12 extra is not installed): one line says so
            assert len(p.stdout.strip().splitlines()) == 1, p.stdout[-3000:]
            pytest.skip(p.stdout.strip())
        assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
        for mod in mods:
            assert f"| {mod} |" in p.stdout, f"{mod} missing from the report"
        return
    rep = kernel_report
    assert rep.returncode == 0, rep.stdout[-6000:] + rep.stderr[-3000:]
    rows = rep.rows
    # every specialisation of every module, for both sms, compiled and assembled
    expected = set()
    for mod in mods:
        for spec in importlib.import_module(f"numba_cnn.kernels.cuda.{mod}").ptx_specs():
            expected |= {(mod, spec[0], cc) for cc in (80, 90)}
    got = {(r["module"], r["name"], r["cc"]) for r in rows}
    assert expected <= got, f"missing from the report: {sorted(expected - got)[:20]}"
    bad = [r for r in rows if r.get("error") or r.get("spill", 1)]
    why = lambda r: r.get("error") or f"{r['spill']} B spilled"  # noqa: E731
    assert not bad, "\n".join(f"{r['name']} sm_{r['cc']}: {why(r)}" for r in bad)


def test_ptx_report_command_on_one_module():
    # the command's own table and verdict, on the smallest module (4 specialisations)
    p = _ptx_report("--module", "dropout")
    if p.returncode == 3:
        assert len(p.stdout.strip().splitlines()) == 1, p.stdout[-3000:]
        pytest.skip(p.stdout.strip())
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    from numba_cnn.kernels.cuda import dropout

    n = 2 * len(dropout.ptx_specs())  # sm_80 and sm_90
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("| dropout |")]
    assert len(lines) == n and all(ln.rstrip().endswith("| ok |") for ln in lines), p.stdout
    assert f"{n} compilations, 0 failed or spilled" in p.stdout
