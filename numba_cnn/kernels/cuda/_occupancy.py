"""Theoretical occupancy for sm_80 and sm_90 from registers, shared memory and block size.

Per-SM limits (CUDA C Programming Guide, compute capabilities 8.0 and 9.0): 65536 32-bit
registers split over 4 quadrants, allocated per warp in units of 256; 2048 threads (64
warps); 32 blocks; 164 KB (sm_80) / 228 KB (sm_90) of shared memory, of which each block also
takes 1 KB reserved by the system; at most 255 registers a thread.
"""

from __future__ import annotations

WARP = 32
LIMITS = {
    80: {"regs": 65536, "threads": 2048, "blocks": 32, "smem": 164 * 1024},
    90: {"regs": 65536, "threads": 2048, "blocks": 32, "smem": 228 * 1024},
}
REG_UNIT = 256  # registers allocated per warp in multiples of this
QUADRANTS = 4  # the register file is split over 4 sub-partitions, one per warp scheduler
SMEM_RESERVED = 1024  # bytes of shared memory the system takes per block (cc >= 8.0)


def occupancy(regs: int, smem: int, threads: int, cc: int) -> dict:
    """Resident blocks per SM, the limiting resource, and warps resident / warps possible."""
    lim = LIMITS.get(cc, LIMITS[90])
    warps = -(-threads // WARP)
    by = {"threads": lim["threads"] // (warps * WARP), "blocks": lim["blocks"]}
    per_warp = -(-max(regs, 1) * WARP // REG_UNIT) * REG_UNIT
    if regs > 255 or per_warp * warps > lim["regs"]:
        by["regs"] = 0
    else:
        by["regs"] = (lim["regs"] // QUADRANTS // per_warp) * QUADRANTS // warps
    by["smem"] = lim["smem"] // (smem + SMEM_RESERVED)
    blocks = min(by.values())
    limiter = min(by, key=lambda k: (by[k], k != "regs"))
    return {
        "blocks_per_sm": blocks,
        "occupancy_pct": round(100 * blocks * warps * WARP / lim["threads"], 1),
        "occupancy_limit": limiter,
    }
