"""The SASS each kernel compiles to, for sm_80 and sm_90, without a GPU.

    python -m numba_cnn.kernels.cuda.sass_report [--cc 80,90] [--kernel NAME ...] [--json]
        [--sass all|gemm]

For every specialisation in every kernel module's ``ptx_specs()``: ``compile_ptx`` ->
``ptxas -v -arch=sm_XX`` -> ``nvdisasm -c``, then ``_sass`` finds the loops. The hot loop is the
innermost loop holding FMAs (the one with the most); the K-slice step is the smallest loop
around it that holds a ``BAR``; inner loops of the slice count by their trip count when the
SASS shows it (else once, flagged ``~``). Reported: that mix, the FMA share of both, registers,
shared memory, spills and theoretical occupancy at the block size the module declares
(a 5th ``ptx_specs`` element, ``BLOCK_THREADS[name]``, or the first ``launch_bounds`` of the
compile options; 256 otherwise, flagged ``*``).
FMA means FFMA in float32 kernels, DFMA in float64 ones. Exit 1 on a compile error, 3 when
NVVM, ptxas or nvdisasm is missing.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from numba_cnn.kernels.cuda import _sass, _toolchain
from numba_cnn.kernels.cuda._occupancy import occupancy
from numba_cnn.kernels.cuda.ptx_report import (
    _RE_REGS,
    _RE_SMEM,
    _RE_STACK,
    _pin_mlir_cc,
    kernel_modules,
)

DEFAULT_THREADS = 256
_cache: dict[str, dict] = {}  # sha1(ptx, cc) -> assembled figures, per run (per process)


def specs(mod) -> list[tuple[str, object, str, dict, int | None]]:
    """``(name, fn, sig, options, threads)`` of a module's ``ptx_specs()`` (3 to 5 items)."""
    block = getattr(mod, "BLOCK_THREADS", {})
    out = []
    for s in mod.ptx_specs():
        name, fn, sig = s[:3]
        opts = dict(s[3]) if len(s) > 3 and s[3] else {}
        threads = s[4] if len(s) > 4 else block.get(name)
        lb = opts.get("launch_bounds")
        if threads is None and lb:  # launch bounds name the block size the kernel is built for
            threads = lb if isinstance(lb, int) else lb[0]
        out.append((name, getattr(fn, "py_func", fn), sig, opts, threads))
    return out


def _select(name: str, patterns: list[str] | None) -> bool:
    if not patterns:
        return True
    return any(
        fnmatch.fnmatch(name, p) if any(c in p for c in "*?[") else p in name for p in patterns
    )


def _entry_section(text: str) -> str:
    """The disassembly of the kernel entry (a cubin may also hold device functions)."""
    parts = text.split("\t.section\t.text.")
    entry = [p for p in parts[1:] if "STO_CUDA_ENTRY" in p]
    return entry[0] if entry else text


def analyse_sass(text: str) -> dict:
    """Hot-loop and K-slice figures of one kernel's ``nvdisasm -c`` text."""
    instrs = _sass.parse(_entry_section(text))
    loops = _sass.find_loops(instrs)
    hot, slc = _sass.hot_and_slice(instrs, loops)
    hmix, _ = _sass.mix(instrs, hot, weighted=False)
    smix, known = _sass.mix(instrs, slc, weighted=True)
    hn, sn = sum(hmix.values()), sum(smix.values())
    return {
        "loops": sum(1 for _ in _sass.walk(loops)),
        "hot": hmix if hot else None,
        "hot_n": hn,
        "hot_fma_pct": round(100 * hmix["fma"] / hn, 1) if hn else None,
        "slice": smix if slc else None,
        "slice_n": sn,
        "slice_fma_pct": round(100 * smix["fma"] / sn, 1) if sn else None,
        "slice_trips_known": known,
        "slice_is_hot": slc is hot and hot is not None,
        "calls": sum(1 for i in instrs if _sass.classify(i) == "call"),
    }


def assemble(ptx: str, cc: int, tmp: str, disasm: bool = True) -> dict:
    """ptxas resource figures and (``disasm``) the SASS analysis of one PTX, cached per run."""
    key = hashlib.sha1(f"{cc}\n{disasm}\n{ptx}".encode()).hexdigest()
    if key in _cache:
        return _cache[key]
    src, cubin = os.path.join(tmp, key + ".ptx"), os.path.join(tmp, key + ".cubin")
    with open(src, "w") as f:
        f.write(ptx)
    err = ""
    for ptxas in _toolchain.candidates("ptxas"):  # the declared wheel first; fall back on error
        p = subprocess.run(
            [ptxas, "-v", f"-arch=sm_{cc}", src, "-o", cubin], capture_output=True, text=True
        )
        if p.returncode == 0:
            break
        err = "ptxas: " + (p.stderr.strip().splitlines() or ["failed"])[-1][:200]
    else:
        return {"error": err or "ptxas not found"}
    info = p.stderr + p.stdout
    st = _RE_STACK.search(info)
    res = {
        "regs": int(m.group(1)) if (m := _RE_REGS.search(info)) else 0,
        "smem": int(m.group(1)) if (m := _RE_SMEM.search(info)) else 0,
        "stack": int(st.group(1)) if st else 0,
        "spill": int(st.group(2)) + int(st.group(3)) if st else 0,
    }
    if not disasm:  # nvdisasm costs about 0.5 s of start-up a call, whatever the kernel's size
        _cache[key] = res
        return res
    d = subprocess.run(
        [_toolchain.find("nvdisasm") or "nvdisasm", "-c", cubin], capture_output=True, text=True
    )
    if d.returncode != 0:
        return {
            **res,
            "error": "nvdisasm: " + (d.stderr.strip().splitlines() or ["failed"])[-1][:200],
        }
    res.update(analyse_sass(d.stdout))
    _cache[key] = res
    return res


def analyse_module(
    mname: str, ccs: list[int], patterns: list[str] | None, sass: str = "all"
) -> list[dict]:
    """One row per (kernel specialisation, cc) of one kernel module; ``sass="gemm"``
    disassembles only its ``GEMM_KERNELS`` (the others get ptxas's figures alone)."""
    from numba_cnn._cuda import cuda

    mod = importlib.import_module(f"numba_cnn.kernels.cuda.{mname}")
    gemm = getattr(mod, "GEMM_KERNELS", set())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn, sig, opts, threads in specs(mod):
            if not _select(name, patterns):
                continue
            ptx_cc = min(ccs)  # PTX once, assembled by ptxas for every sm (as ptx_report)
            _pin_mlir_cc(ptx_cc)  # NUMBA_CNN_CUDA_BACKEND=mlir: no device lookup
            try:
                ptx, _ = cuda.compile_ptx(fn, sig, cc=(ptx_cc // 10, ptx_cc % 10), **opts)
                err = None
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            for cc in ccs:
                row = {"module": mname, "name": name, "cc": cc, "gemm": name in gemm}
                row["threads"] = threads or DEFAULT_THREADS
                row["threads_default"] = threads is None
                if err is not None:
                    rows.append({**row, "error": err})
                    continue
                row.update(assemble(ptx, cc, tmp, sass == "all" or name in gemm))
                if "regs" in row and "error" not in row:
                    row.update(occupancy(row["regs"], row["smem"], row["threads"], cc))
                rows.append(row)
    return rows


def collect(
    ccs: list[int], patterns: list[str] | None = None, jobs: int = 1, sass: str = "all"
) -> list[dict]:
    """Rows of every module, ``jobs`` modules compiled at once (one process each)."""
    from tqdm import tqdm

    mods = kernel_modules()
    rows: list[dict] = []
    bar = tqdm(total=len(mods), desc="sass_report", unit="module", file=sys.stderr, leave=False)
    todo = list(mods)
    if jobs > 1 and len(mods) > 1:
        try:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as ex:
                futs = {ex.submit(analyse_module, m, ccs, patterns, sass): m for m in mods}
                for f in as_completed(futs):
                    rows += f.result()
                    todo.remove(futs[f])
                    bar.update()
        except Exception as e:  # noqa: BLE001 - a broken pool: finish the rest in this process
            print(f"process pool failed ({type(e).__name__}); going on serially", file=sys.stderr)
    for m in todo:
        rows += analyse_module(m, ccs, patterns, sass)
        bar.update()
    bar.close()
    order = {m: i for i, m in enumerate(mods)}
    return sorted(rows, key=lambda r: order[r["module"]])  # stable: ptx_specs order inside


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def markdown(rows: list[dict]) -> str:
    """One line per (kernel, cc): resources, occupancy, hot-loop and K-slice mix."""
    lines = [
        "| kernel | sm | threads | regs | smem B | spill B | blocks/SM (occ %) | hot instr | "
        "hot FMA % | hot LDS .32/.64/.128 | hot LDG/STS/int/bra/BAR/CALL/other | "
        "slice instr | slice FMA % | CALL slice/all |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"**{r['name']}**" if r.get("gemm") else r["name"]
        if "error" in r:
            lines.append(f"| {name} | {r['cc']} | {r['error']} |" + " |" * 11)
            continue
        thr = f"{r['threads']}{'*' if r['threads_default'] else ''}"
        occ = f"{r['blocks_per_sm']} ({r['occupancy_pct']:.0f}, {r['occupancy_limit']})"
        h, s = r.get("hot"), r.get("slice")  # absent where not disassembled (--sass gemm)
        lds = f"{h['lds32']}/{h['lds64']}/{h['lds128']}" if h else "-"
        keys = ("ldg", "sts", "int", "branch", "bar", "call", "other")
        rest = "/".join(str(h[k]) for k in keys) if h else "-"
        flag = "" if r.get("slice_trips_known", True) else "~"
        flag += "=" if r.get("slice_is_hot") else ""
        lines.append(
            f"| {name} | {r['cc']} | {thr} | {r['regs']} | {r['smem']} | {r['spill']} | {occ} | "
            f"{r['hot_n'] if h else '-'} | {_pct(r.get('hot_fma_pct'))} | {lds} | "
            f"{rest} | {str(r['slice_n']) + flag if s else '-'} | "
            f"{_pct(r.get('slice_fma_pct'))} | {s['call'] if s else '-'}/{r.get('calls', '-')} |"
        )
    return "\n".join(lines)


LEGEND = (
    "bold: the module's GEMM_KERNELS; threads*: no BLOCK_THREADS entry, 256 assumed; "
    "slice instr~: an inner loop's trip count is not readable from the SASS, counted once; "
    "slice instr=: the K-slice step is the hot loop itself (inner reduction unrolled)"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", nargs="+", default=["80,90"], help="compute capabilities: 80,90")
    ap.add_argument(
        "--kernel", nargs="+", help="only kernels whose name contains (or matches) these"
    )
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--from-json", help="render the rows of an earlier --json run, no compiling")
    jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ap.add_argument("--jobs", type=int, default=jobs or 1, help="modules compiled at once")
    ap.add_argument(
        "--sass",
        choices=("all", "gemm"),
        default="all",
        help="disassemble every kernel, or only the GEMM-like ones (the others: ptxas figures)",
    )
    args = ap.parse_args(argv)
    ccs = [int(c) for a in args.cc for c in a.split(",") if c.strip()]

    if args.from_json:
        with open(args.from_json) as f:
            rows = [r for r in json.load(f) if _select(r["name"], args.kernel) and r["cc"] in ccs]
        print(markdown(rows) + "\n\n" + LEGEND)
        return 0
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        # the simulator cannot compile PTX: run again without it
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        cmd = [sys.executable, "-m", "numba_cnn.kernels.cuda.sass_report", *(argv or sys.argv[1:])]
        return subprocess.run(cmd, env=env).returncode
    gone = _toolchain.missing()
    if gone:
        print(f"sass_report: {gone}")
        return 3
    rows = collect(ccs, args.kernel, args.jobs, args.sass)
    if args.json:
        print(json.dumps(rows, indent=1), flush=True)
    table = markdown(rows)
    if not args.json:
        print(table + "\n\n" + LEGEND)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n\n" + LEGEND + "\n")
    bad = [r for r in rows if "error" in r]
    print(f"\n{len(rows)} kernels analysed, {len(bad)} failed", file=sys.stderr)
    if not rows:
        print("no kernels matched", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
