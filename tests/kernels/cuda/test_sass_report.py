"""The SASS report: its parser on hand-written SASS, and the GEMM-like kernels' instruction mix.

The parser tests need no CUDA tool. The threshold test reads the GEMM-like kernels' rows of the
session's one ``sass_report`` run over every kernel for sm_80 and sm_90 (the ``kernel_report``
fixture of ``conftest.py``, shared with the PTX test; NVVM, ptxas and nvdisasm from the ``cu12``
extra) and skips only when one is missing.
"""

from __future__ import annotations

import pytest

from numba_cnn.kernels.cuda import _sass
from numba_cnn.kernels.cuda._occupancy import occupancy
from numba_cnn.kernels.cuda.sass_report import analyse_sass

#: the floor each float32 GEMM-like kernel must reach, sm_80 and sm_90. Measured 2026-11-30 on
#: the first-generation kernels (conv fwd/data/weight, gemm nt/nn/tn): hot 32.7-41.0 % FMA,
#: slice 0.8-7.8 % (their 16-step inner loop has no readable trip count, so it counts once),
#: 92-125 registers, 2 blocks/SM at 256 threads, scalar LDS only, no spill, no CALL in the hot
#: loop. Issue 7's targets: hot >= 80, slice >= 70, vector LDS, <= 128 registers.
THRESHOLDS = {
    # FMA share of the innermost FMA loop and of one K-slice step (inner loops by trip count),
    # per block tile: the one GEMM core unrolls its slice, so the two are the same loop. The
    # floors sit just under the shares reached on 2026-11-30 (sm_80/sm_90, docs/kernels.md):
    # 128x128 66-78 %, 128x64 57-70 %, 64x32 38-58 % (small tiles gather more per FMA).
    "fma_pct_min_by_tile": {"128x128": 64.0, "128x64": 55.0, "64x32": 36.0},
    "fma_pct_min": 32.7,  # a GEMM-like kernel on none of these tiles (the first generation)
    "hot_lds_vector_pct_min": 100.0,  # share of the hot loop's LDS that are .64 or .128
    "regs_max": 128,  # registers a thread (launch bounds cap the core's kernels at 128)
    "spill_max": 0,  # spill bytes
    "hot_calls_max": 0,  # CALL instructions in the hot loop
    "blocks_per_sm_min": 2,  # resident blocks at the module's block size
}

#: the GEMM-like kernels of a module that declares no GEMM_KERNELS (the first generation)
FALLBACK_GEMM = ("conv2d_fwd_", "conv2d_bwd_data_", "conv2d_bwd_weight_float", "gemm_n", "gemm_t")


def _line(addr: int, text: str) -> str:
    return f"        /*{addr:04x}*/                   {text} ;"


def _kernel(body: list[str]) -> str:
    """nvdisasm-like text of one entry: ``.L`` labels on their own line, 16-byte addresses."""
    out = ['\t.section\t.text.k,"ax",@progbits', '        .other  k,@"STO_CUDA_ENTRY"']
    addr = 0
    for b in body:
        if b.startswith(".L"):
            out.append(b)
        else:
            out.append(_line(addr, b))
            addr += 16
    return "\n".join(out)


# outer loop: global loads, shared stores, barrier, an inner 4-trip loop (counter from 0 by 1
# to 4), barrier; then an unknown-trip loop (counter from a kernel argument)
SNIPPET = _kernel(
    [
        "MOV R20, RZ",
        ".L_x_0:",
        "LDG.E R4, desc[UR4][R2.64]",
        "STS [R5], R4",
        "BAR.SYNC.DEFER_BLOCKING 0x0",
        "MOV R6, RZ",
        ".L_x_1:",
        "LDS.128 R8, [R7]",
        "LDS.64 R12, [R7+0x10]",
        "LDS R14, [R7+0x20]",
        "FFMA R16, R8, R12, R16",
        "FFMA R17, R9, R13, R17",
        "FFMA R18, R10, R14, R18",
        "FFMA R19, R11, R14, R19",
        "IADD3 R6, R6, 0x1, RZ",
        "ISETP.NE.AND P1, PT, R6, 0x4, PT",
        "@P1 BRA `(.L_x_1)",
        "BAR.SYNC.DEFER_BLOCKING 0x0",
        "IADD3 R20, R20, 0x1, RZ",
        "ISETP.NE.AND P0, PT, R20, 0x3, PT",
        "@P0 BRA `(.L_x_0)",
        "ULDC UR6, c[0x0][0x210]",
        "MOV R21, UR6",
        ".L_x_2:",
        "FFMA R16, R16, R16, R16",
        "IADD3 R21, R21, -0x1, RZ",
        "ISETP.NE.AND P2, PT, R21, RZ, PT",
        "@P2 BRA `(.L_x_2)",
        "EXIT",
        ".L_x_3:",
        "BRA `(.L_x_3)",
    ]
)


def test_parser_finds_nested_loops_and_trip_counts():
    instrs = _sass.parse(SNIPPET)
    assert len(instrs) == 27
    loops = _sass.find_loops(instrs)
    flat = list(_sass.walk(loops))
    assert [(lp.head, lp.tail, lp.trips) for lp in flat] == [
        (0x10, 0x120, 3),  # outer: 0, 1, 2 -> exits at 3
        (0x50, 0xE0, 4),  # inner: 1, 2, 3, 4
        (0x150, 0x180, None),  # counter loaded from a kernel argument
        (0x1A0, 0x1A0, None),  # the trailing self-branch
    ]
    assert flat[1] in flat[0].children


def test_parser_hot_loop_slice_and_lds_widths():
    instrs = _sass.parse(SNIPPET)
    hot, slc = _sass.hot_and_slice(instrs, _sass.find_loops(instrs))
    assert (hot.head, slc.head) == (0x50, 0x10)
    hmix, known = _sass.mix(instrs, hot, weighted=False)
    assert (hmix["lds128"], hmix["lds64"], hmix["lds32"]) == (1, 1, 1)
    assert (hmix["fma"], hmix["int"], hmix["branch"], sum(hmix.values())) == (4, 2, 1, 10)
    # the slice: 8 own instructions + 10 inner ones x 4 trips
    smix, known = _sass.mix(instrs, slc, weighted=True)
    assert known and sum(smix.values()) == 8 + 40 and smix["fma"] == 16
    assert (smix["bar"], smix["ldg"], smix["sts"]) == (2, 1, 1)


def test_unknown_trip_count_counts_once_and_says_so():
    text = SNIPPET.replace("MOV R6, RZ", "MOV R6, UR9")  # inner counter no longer a constant
    instrs = _sass.parse(text)
    _, slc = _sass.hot_and_slice(instrs, _sass.find_loops(instrs))
    smix, known = _sass.mix(instrs, slc, weighted=True)
    assert not known and sum(smix.values()) == 18
    r = analyse_sass(text)
    assert r["slice_trips_known"] is False and r["hot_fma_pct"] == 40.0


def test_calls_and_down_counters():
    div = "CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64)"  # a real subroutine call
    r = analyse_sass(SNIPPET.replace("FFMA R17, R9, R13, R17", div))
    assert r["calls"] == 1 and r["hot"]["call"] == 1
    # sm_80 ptxas leaves loops with a predicated CALL.REL.NOINC to the next label: a branch
    jump = SNIPPET.replace("FFMA R17, R9, R13, R17", "@!P1 CALL.REL.NOINC `(.L_x_3)")
    r = analyse_sass(jump)
    assert r["calls"] == 0 and r["hot"]["call"] == 0 and r["hot"]["branch"] == 2
    down = SNIPPET.replace("ULDC UR6, c[0x0][0x210]", "NOP").replace("MOV R21, UR6", "MOV R21, 0x5")
    lp = [x for x in _sass.walk(_sass.find_loops(_sass.parse(down))) if x.head == 0x150]
    assert lp[0].trips == 5


def test_occupancy_matches_the_calculator():
    # 94 or 125 registers at 256 threads: 2 blocks (25 %), registers limit
    for regs in (94, 125):
        o = occupancy(regs, 8320, 256, 90)
        assert (o["blocks_per_sm"], o["occupancy_pct"], o["occupancy_limit"]) == (2, 25.0, "regs")
    assert occupancy(32, 0, 256, 80)["blocks_per_sm"] == 8  # 2048 threads
    assert occupancy(16, 0, 32, 80)["blocks_per_sm"] == 32  # block count
    assert occupancy(32, 48 * 1024, 128, 80)["blocks_per_sm"] == 3  # 164 KB / 49 KB
    assert occupancy(32, 48 * 1024, 128, 90)["blocks_per_sm"] == 4  # 228 KB / 49 KB
    assert occupancy(255, 0, 1024, 90)["blocks_per_sm"] == 0  # too many registers to launch


def test_markdown_rows_with_and_without_sass():
    # --sass gemm: the other kernels' rows hold ptxas's figures only, their SASS columns "-"
    from numba_cnn.kernels.cuda.sass_report import markdown

    res = {"regs": 40, "smem": 0, "stack": 0, "spill": 0, **occupancy(40, 0, 256, 80)}
    base = {"module": "m", "cc": 80, "threads": 256, "threads_default": False, **res}
    full = {**base, "name": "k_gemm", "gemm": True, **analyse_sass(SNIPPET)}
    bare = {**base, "name": "k_other", "gemm": False}
    lines = markdown([full, bare]).splitlines()[2:]
    assert lines[0].startswith("| **k_gemm** | 80 | 256 | 40 |") and "| - |" not in lines[0]
    assert lines[1].startswith("| k_other | 80 | 256 | 40 |")
    assert lines[1].count("| - |") >= 3 and lines[1].endswith("| -/- |"), lines[1]


def test_missing_tools_print_one_line(monkeypatch, capsys):
    from numba_cnn.kernels.cuda import _toolchain, ptx_report, sass_report

    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setattr(_toolchain, "nvvm_error", lambda: "DynamicLibNotFoundError: libnvvm")
    monkeypatch.setattr(_toolchain, "find", lambda tool: None)
    assert sass_report.main([]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "NVVM" in out[0] and "nvdisasm" in out[0] and "cu12" in out[0]
    assert ptx_report.main([]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "NVVM" in out[0] and "cu12" in out[0]


def _gemm_names() -> list[str]:
    """float32 names in each module's GEMM_KERNELS (the fallback prefixes where none is set)."""
    import importlib

    from numba_cnn.kernels.cuda.ptx_report import kernel_modules

    names = []
    for m in kernel_modules():
        mod = importlib.import_module(f"numba_cnn.kernels.cuda.{m}")
        every = [s[0] for s in mod.ptx_specs() if s[0].endswith("_float32")]
        gemm = getattr(mod, "GEMM_KERNELS", None)
        names += [n for n in every if (n in gemm if gemm else n.startswith(FALLBACK_GEMM))]
    return names


def _gemm_rows(kernel_report) -> list[dict]:
    names = _gemm_names()
    assert names, "no GEMM-like float32 kernel found"
    rep = kernel_report  # the session's one sass_report run over every kernel (conftest.py)
    if rep.returncode == 3:
        pytest.skip(rep.stdout.strip())  # NVVM, ptxas or nvdisasm missing: one line says which
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    rows = [r for r in rep.rows if r["name"] in names and r["cc"] in (80, 90)]
    assert {(r["name"], r["cc"]) for r in rows} == {(n, cc) for n in names for cc in (80, 90)}, (
        "a GEMM-like kernel is missing from the report"
    )
    return rows


def test_gemm_kernels_meet_the_instruction_mix_floor(kernel_report):
    t = THRESHOLDS
    bad = []
    for r in _gemm_rows(kernel_report):
        hot = r["hot"] or {}
        lds = hot.get("lds32", 0) + hot.get("lds64", 0) + hot.get("lds128", 0)
        vec = 100 * (hot.get("lds64", 0) + hot.get("lds128", 0)) / lds if lds else 0.0
        tile = next((k for k in t["fma_pct_min_by_tile"] if f"_{k}_" in r["name"]), None)
        floor = t["fma_pct_min_by_tile"][tile] if tile else t["fma_pct_min"]
        checks = {
            "hot_fma_pct_min": (r["hot_fma_pct"] or 0) >= floor,
            "slice_fma_pct_min": (r["slice_fma_pct"] or 0) >= floor,
            "hot_lds_vector_pct_min": vec >= t["hot_lds_vector_pct_min"],
            "regs_max": r["regs"] <= t["regs_max"],
            "spill_max": r["spill"] <= t["spill_max"],
            "hot_calls_max": hot.get("call", 1) <= t["hot_calls_max"],
            "blocks_per_sm_min": r["blocks_per_sm"] >= t["blocks_per_sm_min"],
        }
        bad += [f"{r['name']} sm_{r['cc']}: {k} ({r})" for k, ok in checks.items() if not ok]
    assert not bad, "\n".join(bad)
