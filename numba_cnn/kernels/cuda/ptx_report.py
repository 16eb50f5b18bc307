"""Compile every CUDA kernel specialisation for real GPUs, without one.

    python -m numba_cnn.kernels.cuda.ptx_report [--cc 80 90] [--markdown FILE]

The simulator accepts kernels that a GPU compiler rejects (run-time-sized local or shared
arrays, Python objects) and hides register spills. This command compiles each kernel that the
library launches, as listed by each kernel module's ``ptx_specs()``, with
``numba.cuda.compile_ptx`` once, for the lowest compute capability asked for (PTX is forward
compatible), and, for each one asked for, where ``ptxas`` is found (the ``cu12``/``cu13``
extras' wheel first, then the PATH, then ``/usr/local/cuda*``), assembles the PTX with
``ptxas -v`` to read registers, shared memory, stack and spill bytes.
It exits 1 on a compile error or a spill, 3 (one line, no table) when NVVM is missing.
``sass_report`` goes further: the instruction mix of each kernel's loops.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from numba_cnn.kernels.cuda import _toolchain

_RE_REGS = re.compile(r"Used (\d+) registers")
_RE_SMEM = re.compile(r"(\d+) bytes smem")
_RE_STACK = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)


@dataclass
class Row:
    module: str
    name: str
    sig: str
    cc: int
    regs: int | None = None
    smem: int | None = None
    stack: int | None = None
    spill: int | None = None
    error: str = ""


def kernel_modules() -> list[str]:
    """Every module of ``numba_cnn.kernels.cuda`` that declares ``ptx_specs``."""
    import numba_cnn.kernels.cuda as pkg

    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name in ("ptx_report", "sass_report"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "ptx_specs"):
            names.append(info.name)
    return names


def _ptxas(ptx: str, cc: int) -> tuple[int, int, int, int] | str:
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        for exe in _toolchain.candidates("ptxas"):  # the declared wheel first
            p = subprocess.run(
                [exe, "-v", f"-arch=sm_{cc}", src, "-o", os.path.join(d, "k.cubin")],
                capture_output=True,
                text=True,
            )
            if p.returncode == 0:
                break
    if p.returncode != 0:
        return "ptxas: " + (p.stderr.strip().splitlines() or ["failed"])[-1]
    out = p.stderr + p.stdout
    regs = _RE_REGS.search(out)
    smem = _RE_SMEM.search(out)
    st = _RE_STACK.search(out)
    return (
        int(regs.group(1)) if regs else 0,
        int(smem.group(1)) if smem else 0,
        int(st.group(1)) if st else 0,
        (int(st.group(2)) + int(st.group(3))) if st else 0,
    )


def _pin_mlir_cc(cc: int) -> None:
    """Shim, ``NUMBA_CNN_CUDA_BACKEND=mlir`` with numba-cuda-mlir 0.6.x only: its
    ``compile_ptx`` asks the device for its compute capability even when given ``cc`` (the
    linker target in ``numba_cuda_mlir.tools.resolve_gpu_target``), which fails without a GPU,
    and 0.6 has no option for it. Preset that lookup's cache (the private module global
    ``tools._cached_cc``) to the ``cc`` asked for. Confined to this report; the library never
    touches private attributes; other versions are left alone."""
    from numba_cnn import _cuda

    if _cuda.BACKEND != "mlir":
        return
    import numba_cuda_mlir
    from numba_cuda_mlir import tools

    if numba_cuda_mlir.__version__.startswith("0.6.") and hasattr(tools, "_cached_cc"):
        tools._cached_cc = (cc // 10, cc % 10)


def collect(ccs: list[int], modules: list[str] | None = None) -> list[Row]:
    from numba_cnn._cuda import cuda

    have_ptxas = _toolchain.find("ptxas") is not None
    rows = []
    for mname in modules or kernel_modules():
        mod = importlib.import_module(f"numba_cnn.kernels.cuda.{mname}")
        for spec in mod.ptx_specs():  # (name, fn, sig) or (name, fn, sig, compile options)
            name, fn, sig = spec[:3]
            opts = dict(spec[3]) if len(spec) > 3 and spec[3] else {}
            pyfunc = getattr(fn, "py_func", fn)
            # PTX once, for the lowest compute capability asked for; ptxas assembles it for
            # every sm (PTX is forward compatible): half the compile time of one PTX per cc
            ptx_cc = min(ccs)
            _pin_mlir_cc(ptx_cc)
            try:
                ptx, _ = cuda.compile_ptx(pyfunc, sig, cc=(ptx_cc // 10, ptx_cc % 10), **opts)
                err = None
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            for cc in ccs:
                row = Row(mname, name, sig, cc)
                if err is not None:
                    row.error = err
                elif have_ptxas:
                    r = _ptxas(ptx, cc)
                    if isinstance(r, str):
                        row.error = r
                    else:
                        row.regs, row.smem, row.stack, row.spill = r
                rows.append(row)
    return rows


def _short_sig(sig: str) -> str:
    s = sig.replace("float32", "f32").replace("float64", "f64").replace("int64", "i64")
    return s.replace(" ", "")


def markdown(rows: list[Row]) -> str:
    lines = [
        "| module | kernel | signature | sm | regs | smem B | stack B | spill B | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        status = r.error or ("ok" if not r.spill else "SPILL")
        fmt = lambda v: "-" if v is None else str(v)
        lines.append(
            f"| {r.module} | {r.name} | `{_short_sig(r.sig)}` | {r.cc} | {fmt(r.regs)} | "
            f"{fmt(r.smem)} | {fmt(r.stack)} | {fmt(r.spill)} | {status} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", type=int, nargs="+", default=[80, 90], help="compute capabilities")
    ap.add_argument("--module", nargs="*", help="only these kernel modules")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args(argv)

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        # the simulator cannot compile PTX: run again without it
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        cmd = [sys.executable, "-m", "numba_cnn.kernels.cuda.ptx_report", *(argv or sys.argv[1:])]
        return subprocess.run(cmd, env=env).returncode

    nvvm = _toolchain.nvvm_error()
    if nvvm:  # one line instead of a traceback for every kernel
        print(f"ptx_report: NVVM cannot load ({nvvm}); install it with {_toolchain.INSTALL_HINT}")
        return 3
    rows = collect(args.cc, args.module)
    table = markdown(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if _toolchain.find("ptxas") is None:
        print(f"\nno ptxas: PTX only, no register/spill figures ({_toolchain.INSTALL_HINT})")
    bad = [r for r in rows if r.error or r.spill]
    print(f"\n{len(rows)} compilations, {len(bad)} failed or spilled")
    if not rows:
        print("no kernels found")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
