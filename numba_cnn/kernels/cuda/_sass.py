"""Parse ``nvdisasm -c`` output: instructions, loops, trip counts and the instruction mix.

Loops are read from backward branches: a branch at address ``b`` to a label at ``t <= b`` makes
the address range ``[t, b]`` a loop (branches to one head merge into one loop, keeping the
largest tail); loops nest by range containment. ptxas lays each loop out contiguously, so the
ranges are the loop bodies. A loop's trip count is read when its back branch is predicated by an
``ISETP`` comparing a counter register with an immediate (or ``RZ``), the counter changes by
one immediate step inside the loop and is set from an immediate before it; otherwise it is
unknown (``None``) and the loop is counted once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RE_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_RE_LABEL = re.compile(r"^\s*(\.L_x_\d+|\.L_\w+):")
_RE_TARGET = re.compile(r"`\(([^)]+)\)")

#: integer, address, predicate, move and special-register opcodes (uniform ``U`` forms too)
_INT_OPS = {
    "IADD3", "IADD", "IADD32I", "IMAD", "IMUL", "LEA", "SHF", "SHL", "SHR", "LOP3", "LOP",
    "ISETP", "ICMP", "SEL", "IABS", "IMNMX", "VIADD", "VIMNMX", "VIADDMNMX", "IDP", "POPC",
    "FLO", "BREV", "PRMT", "MOV", "MOV32I", "PLOP3", "P2R", "R2P", "S2R", "CS2R", "S2UR",
    "LDC", "BMSK", "SGXT", "I2I", "I2IP", "R2UR", "UR2R", "SHFL", "VOTE", "VOTEU",
}  # fmt: skip
_BRANCH_OPS = {"BRA", "BRX", "JMP", "JMX", "EXIT", "RET", "BSSY", "BSYNC", "WARPSYNC", "BREAK"}
_FMA_OPS = {"FFMA", "DFMA"}
#: columns of the instruction mix, in report order
CLASSES = (
    "fma", "lds32", "lds64", "lds128", "ldg", "sts", "int", "branch", "bar", "call", "other",
)  # fmt: skip


@dataclass
class Instr:
    addr: int
    op: str  # full opcode with modifiers, e.g. ``LDS.128``
    pred: str  # ``""``, ``"P0"`` or ``"!P0"``
    args: list[str]
    target: int | None = None  # branch target address

    @property
    def base(self) -> str:
        return self.op.split(".")[0]


@dataclass
class Loop:
    head: int
    tail: int  # address of the back branch
    children: list[Loop] = field(default_factory=list)
    trips: int | None = None

    def contains(self, addr: int) -> bool:
        return self.head <= addr <= self.tail


def parse(text: str) -> list[Instr]:
    """Instructions of one kernel's disassembly, branch targets resolved to addresses."""
    instrs: list[Instr] = []
    labels: dict[str, int] = {}
    pending: list[str] = []
    for line in text.splitlines():
        lab = _RE_LABEL.match(line)
        if lab:
            pending.append(lab.group(1))
            continue
        m = _RE_INSTR.search(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        for name in pending:
            labels[name] = addr
        pending = []
        rest = m.group(4).strip()
        tgt = _RE_TARGET.search(rest)
        args = [a.strip() for a in _RE_TARGET.sub("", rest).split(",") if a.strip()]
        ins = Instr(addr, m.group(3), (m.group(2) or "").strip().lstrip("@"), args)
        if tgt:
            ins.args.append(tgt.group(1))
        instrs.append(ins)
    for ins in instrs:
        if ins.base in ("BRA", "BRX", "JMP", "CALL") and ins.args and ins.args[-1] in labels:
            ins.target = labels[ins.args[-1]]
    return instrs


def classify(ins: Instr) -> str:
    """The mix column of one instruction."""
    op, base = ins.op, ins.base
    if base in _FMA_OPS:
        return "fma"
    if base == "LDS":
        return "lds128" if ".128" in op else "lds64" if ".64" in op else "lds32"
    if base in ("LDG", "LD"):
        return "ldg"
    if base == "STS":
        return "sts"
    if base == "BAR":
        return "bar"
    if base == "CALL":  # ptxas (sm_80) also jumps out of loops with CALL.REL.NOINC to a label
        return "branch" if ins.args and ins.args[-1].startswith(".L") else "call"
    if base in _BRANCH_OPS:
        return "branch"
    if base in _INT_OPS or (base.startswith("U") and base[1:] in _INT_OPS):
        return "int"
    return "other"


def find_loops(instrs: list[Instr]) -> list[Loop]:
    """Top-level loops (children nested inside), from backward branches."""
    tails: dict[int, int] = {}
    for ins in instrs:
        if ins.target is not None and ins.target <= ins.addr:
            tails[ins.target] = max(tails.get(ins.target, -1), ins.addr)
    loops = sorted((Loop(h, t) for h, t in tails.items()), key=lambda lp: (lp.head, -lp.tail))
    top: list[Loop] = []
    stack: list[Loop] = []
    for lp in loops:
        while stack and not (stack[-1].head <= lp.head and lp.tail <= stack[-1].tail):
            stack.pop()
        (stack[-1].children if stack else top).append(lp)
        stack.append(lp)
    for lp in walk(top):
        lp.trips = trip_count(instrs, lp)
    return top


def walk(loops: list[Loop]):
    """Every loop, outer before inner."""
    for lp in loops:
        yield lp
        yield from walk(lp.children)


def _imm(tok: str) -> int | None:
    if tok in ("RZ", "URZ", "SRZ"):
        return 0
    try:
        return int(tok, 16) if "0x" in tok else int(tok)
    except ValueError:
        return None


def _writes(ins: Instr, reg: str) -> bool:
    if not ins.args:
        return False
    dst = ins.args[0]
    if dst == reg:
        return True
    if ins.base == "CS2R" and dst.startswith("R") and reg.startswith("R") and reg[1:].isdigit():
        return dst[1:].isdigit() and int(reg[1:]) == int(dst[1:]) + 1  # 64-bit pair
    return False


def _init_value(ins: Instr) -> int | None:
    """The immediate an instruction loads into its destination, if it is a constant load."""
    a = ins.args
    if ins.base in ("MOV", "UMOV", "MOV32I") and len(a) >= 2:
        return _imm(a[1])
    if ins.op.startswith("IMAD.MOV") and len(a) == 4 and a[1] == "RZ" and a[2] == "RZ":
        return _imm(a[3])
    if ins.base == "CS2R" and len(a) == 2 and a[1] == "SRZ":
        return 0
    return None


_CMP = {
    "EQ": lambda x, y: x == y,
    "NE": lambda x, y: x != y,
    "LT": lambda x, y: x < y,
    "LE": lambda x, y: x <= y,
    "GT": lambda x, y: x > y,
    "GE": lambda x, y: x >= y,
}


def trip_count(instrs: list[Instr], lp: Loop, cap: int = 1 << 16) -> int | None:
    """Iterations of ``lp`` when its counter, step, bound and start are SASS immediates."""
    body = [i for i in instrs if lp.contains(i.addr)]
    br = body[-1] if body else None
    if br is None or br.base != "BRA" or not br.pred:
        return None
    neg, pred = br.pred.startswith("!"), br.pred.lstrip("!")
    setp = next((i for i in reversed(body[:-1]) if i.args and i.args[0] == pred), None)
    if setp is None or setp.base not in ("ISETP", "UISETP") or len(setp.args) < 4:
        return None
    mods = setp.op.split(".")
    cmp = next((m for m in mods if m in _CMP), None)
    if cmp is None or "EX" in mods or setp.args[-1] not in ("PT", "UPT"):
        return None
    a, b = setp.args[2], setp.args[3]
    swap = _imm(a) is not None and _imm(b) is None
    reg, bound = (b, _imm(a)) if swap else (a, _imm(b))
    if bound is None or _imm(reg) is not None:
        return None
    ups = [i for i in body if _writes(i, reg)]
    if len(ups) != 1 or len(ups[0].args) < 3 or ups[0].base not in ("IADD3", "UIADD3", "VIADD"):
        return None
    up = ups[0]
    srcs = up.args[1:]
    if reg not in srcs or up.pred:
        return None
    others = [s for s in srcs if s != reg]
    steps = [_imm(s) for s in others]
    if any(s is None for s in steps) or not steps:
        return None
    step = sum(steps)
    before = [i for i in instrs if i.addr < lp.head and _writes(i, reg)]
    if not before or before[-1].pred:
        return None
    v = _init_value(before[-1])
    if v is None or step == 0:
        return None
    f = _CMP[cmp]
    for n in range(1, cap + 1):
        if up.addr < setp.addr:
            v += step
        x, y = (bound, v) if swap else (v, bound)
        if f(x, y) == neg:  # branch not taken: the loop exits after trip n
            return n
        if up.addr > setp.addr:
            v += step
    return None


def mix(instrs: list[Instr], lp: Loop | None, weighted: bool) -> tuple[dict[str, int], bool]:
    """Instruction counts of ``lp`` (inner loops weighted by trip count when ``weighted``).

    Returns the counts and whether every inner loop's trip count was known.
    """
    counts = dict.fromkeys(CLASSES, 0)
    if lp is None:
        return counts, True
    known = True
    inner = list(walk(lp.children))
    for ins in instrs:
        if not lp.contains(ins.addr):
            continue
        w = 1
        if weighted:
            for c in inner:
                if c.contains(ins.addr):
                    if c.trips is None:
                        known = False
                    else:
                        w *= c.trips
        counts[classify(ins)] += w
    return counts, known


def hot_and_slice(instrs: list[Instr], loops: list[Loop]) -> tuple[Loop | None, Loop | None]:
    """The innermost loop with the most FMAs, and the smallest loop with a barrier around it."""
    fma = [i.addr for i in instrs if classify(i) == "fma"]
    bars = [i.addr for i in instrs if classify(i) == "bar"]
    best, best_n = None, 0
    for lp in walk(loops):
        own = [a for a in fma if lp.contains(a) and not any(c.contains(a) for c in lp.children)]
        if own and not any(any(c.contains(a) for a in fma) for c in walk(lp.children)):
            if len(own) > best_n:
                best, best_n = lp, len(own)
    if best is None:
        return None, None
    around = [lp for lp in walk(loops) if lp.head <= best.head and best.tail <= lp.tail]
    with_bar = [lp for lp in around if any(lp.contains(a) for a in bars)]
    slice_ = min(with_bar, key=lambda lp: lp.tail - lp.head) if with_bar else None
    return best, slice_
