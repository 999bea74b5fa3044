"""Theoretical occupancy on an H100 (sm_90) and the model's predicted fraction of copy bandwidth.

occupancy(block, regs, smem) -> (blocks per SM, fraction of the SM's 64 warp slots), by the
CUDA occupancy calculator's rules for sm_90:
  - at most 2048 threads (64 warps) and 32 blocks per SM;
  - registers: 65536 per SM, allocated per warp in units of 256 (a thread's count rounded up
    to a multiple of 8); warps that fit = floor(65536 / (ceil(regs * 32 / 256) * 256)),
    blocks = floor(warps that fit / warps per block);
  - shared memory: 228 KiB per SM, each block's static size plus 1 KiB the system reserves,
    rounded up to 128 bytes.

predicted_fraction(...) -- THE MODEL (a guess from static facts, not a measurement):

    predicted = (min_bytes / moved_bytes) x width_eff x occupancy_eff x wave_eff x spill_eff
                x coalesce_eff

  width_eff      traffic-weighted over the kernel's global accesses by width:
                 128 bits 1.0, 64 bits 0.95, 32 bits 0.85, 16 bits 0.6, 8 bits 0.45 (narrow
                 accesses need more instructions and more warps in flight per byte);
  occupancy_eff  min(1, 0.25 + 1.5 x occupancy): 50% occupancy hides DRAM latency for a
                 streaming kernel, below it the bytes in flight shrink;
  wave_eff       grid / (132 x blocks per SM) = w; w <= 1: min(grid, 132) / 132 (idle SMs);
                 w > 1: w / ceil(w) (the last wave's idle slots);
  spill_eff      1.0 without spills, 0.7 with (local-memory traffic in the loop);
  coalesce_eff   min(1, 2 / sector_ratio), sector_ratio = 32-byte sectors requested / bytes
                 of the elements accessed: L2 serves about twice DRAM's bandwidth, so a kernel
                 asking L2 for more than twice the bytes it uses is bound by L2 instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

SM_COUNT = 132
MAX_THREADS = 2048
MAX_WARPS = MAX_THREADS // 32
MAX_BLOCKS = 32
REGS_PER_SM = 65536
REG_UNIT = 256          # registers per warp allocation unit
SMEM_PER_SM = 228 * 1024
SMEM_RESERVED = 1024    # per block
SMEM_UNIT = 128

WIDTH_EFF = {128: 1.0, 64: 0.95, 32: 0.85, 16: 0.6, 8: 0.45}
SPILL_EFF = 0.7
L2_HEADROOM = 2.0


def occupancy(block: int, regs: int, smem: int) -> tuple[int, float]:
    """(resident blocks per SM, resident warps / 64) for a kernel of `block` threads."""
    warps = -(-block // 32)
    by_threads = min(MAX_BLOCKS, MAX_WARPS // warps)
    per_warp = -(-max(regs, 1) * 32 // REG_UNIT) * REG_UNIT
    by_regs = (REGS_PER_SM // per_warp) // warps
    per_block = -(-(smem + SMEM_RESERVED) // SMEM_UNIT) * SMEM_UNIT
    by_smem = SMEM_PER_SM // per_block
    blocks = min(by_threads, by_regs, by_smem)
    return blocks, blocks * warps / MAX_WARPS


def width_eff(width_bytes: Mapping[int, float]) -> float:
    total = sum(width_bytes.values())
    if total <= 0:
        return 1.0
    return sum(WIDTH_EFF.get(w, WIDTH_EFF[8] if w < 8 else 1.0) * b
               for w, b in width_bytes.items()) / total


def occupancy_eff(occ: float) -> float:
    return min(1.0, 0.25 + 1.5 * occ)


def wave_eff(grid: int, blocks_per_sm: int) -> float:
    if blocks_per_sm <= 0 or grid <= 0:
        return 0.0
    waves = grid / (SM_COUNT * blocks_per_sm)
    if waves <= 1:
        return min(grid, SM_COUNT) / SM_COUNT
    return waves / math.ceil(waves)


def predicted_fraction(min_bytes: float, moved_bytes: float, width_bytes: Mapping[int, float],
                       occ: float, grid: int, blocks_per_sm: int, spills: int,
                       sector_ratio: float = 1.0) -> float:
    """The model's fraction of copy bandwidth (module docstring)."""
    if moved_bytes <= 0:
        return 0.0
    return (min(1.0, min_bytes / moved_bytes) * width_eff(width_bytes) * occupancy_eff(occ)
            * wave_eff(grid, blocks_per_sm) * (SPILL_EFF if spills else 1.0)
            * min(1.0, L2_HEADROOM / max(sector_ratio, 1e-9)))
