"""Split ("grid") reduction schedule: (FusionIR, its row `ReductionLaunch`) -> `SplitLaunch`
or None (the SM count from nvfuse.schedule.device for the signature's arch).

A row schedule runs one block per row, so a fusion with few rows (`x.sum()`: one row) and
long rows uses a handful of the device's SMs.  When the rows are fewer than the SMs and the
row is long, each row is cut into S chunks of `chunk_len` consecutive columns and the group
runs two kernels (nvfuse/lower/split.py):

1. grid rows * S: block b reduces chunk b % S of row b / S (with the group's prologue) and
   thread 0 stores the chunk's partial state into float32 / float64 / int64 workspaces of
   rows * S elements (the reduction's own accumulator dtype; a Welford M2 stores three:
   shifted mean, m2, count), laid out [rows, S]: partial row * S + chunk;
2. grid rows: block r combines the S partials of row r (Chan's update for Welford), runs the
   epilogue on the row values and stores the outputs.

No atomics: the same input gives the same bits.  Only fusions whose full-size outputs depend on
no reduction qualify, and then only when the first reduction is a plain one, whose chunk loop
in kernel 1 stores them (a GELU backward's gradient beside its bias gradient: GPT-2's 96
column blocks on 132 SMs split); a softmax's normalized output needs the whole row in one
block.  The reductions must be plain or
Welford reductions whose operands do not depend on another reduction; argmax / argmin pairs,
and random numbers keep the one-kernel schedule.

The column schedule (kept dims innermost: `[1M, 8].sum(0)`) splits the same way: kernel 1's
block b covers COLUMN_X * L kept elements (b / S) and chunk b % S of the reduced extent, with
the column lowering's thread layout; its "rows" in the heuristic are its blocks (ceil(rows /
COLUMN_X / L)) and its row length the reduced extent times COLUMN_X * L (the elements one block
reads per reduced index), so the thresholds mean the same bytes per block; kernel 1's block is
the `column_block_for` bucket of chunk_len.  Its workspaces are laid out [S, rows] instead --
partial chunk * rows + row, the kept elements contiguous -- so a warp's stores of its 32 * L
consecutive kept elements are consecutive (16-byte vectors where L allows), and kernel 2 is a
column kernel too: a thread combines `stage2_columns` consecutive kept elements, reading one
vector of each partial row, the block's thread rows sharing the splits
(nvfuse/lower/split_columns.py), in the same order as the row layout's block combine, so
either layout gives the same bits.

Heuristics (numbers, and why):
- split when the one-kernel grid has fewer blocks than the device has SMs and row_numel >=
  SPLIT_MIN_NUMEL (64Ki: below that one block per row finishes in a few microseconds and the
  second launch would cost more than it saves);
- S = the largest power of two <= min(ceil(WAVES * slots / blocks), row_numel / MIN_CHUNK,
  MAX_SPLITS), slots = SMs * (1024 / the one-kernel block's threads, at least 1; row splits
  count 1024): about two 1024-thread blocks' worth per SM, every block at least MIN_CHUNK =
  4096 elements (four per thread of a 1024-thread block), and at most MAX_SPLITS =
  STAGE2_BLOCK = 256 partials per row so that kernel 2's threads hold at most one partial
  each (S is always a power of two: the column kernel 2's combine order relies on it).
S and chunk_len are kernel arguments and only kernel 1's block (the `block_for` bucket of
chunk_len) and kernel 2's fold width (`stage2_lanes`) are in the signature, so a new size
recompiles only across a block bucket or at a split count below one vector of partials.
Tests monkeypatch SPLIT_MIN_NUMEL and MIN_CHUNK so that interpreter-sized tensors split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.phases import Phase, PhaseKind, prologue_outputs, reduction_phases
from nvfuse.fusion.prims import ARG_REDUCTIONS, REDUCTIONS, Prim
from nvfuse.schedule.device import device_props
from nvfuse.schedule import names
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.reduction import (
    COLUMN_X, VECTOR_BYTES, ReductionLaunch, ReductionParams, ReductionSignature, block_for,
    column_block_for,
)

SPLIT_MIN_NUMEL = 1 << 16
MIN_CHUNK = 4096
WAVES = 2
STAGE2_BLOCK = 256
MAX_SPLITS = STAGE2_BLOCK
LINE_BYTES = 128  # a column kernel 2's threads across read one cache line of a partial row
WELFORD_COLUMNS = 2  # kept elements per thread of a column kernel 2 with a Welford part
PARTIAL_DTYPES = (DType.FLOAT32, DType.FLOAT64, DType.INT64)


@dataclass(frozen=True)
class SplitSignature:
    """One of the two kernels of a split reduction (hashable; part of the cache key): `base`
    is the row signature of the fusion (kernel 1's block = the bucket of chunk_len), `stage`
    1 (partials) or 2 (combine and epilogue)."""

    kind: ClassVar[ScheduleKind] = ScheduleKind.SPLIT
    base: ReductionSignature
    stage: int
    block: int
    # kernel 2: the consecutive partials a thread folds in order before the tree combine
    # (`stage2_lanes`; the row layout loads them as one vector); kernel 1: 1
    lanes: int = 1

    @property
    def arch(self) -> str:
        return self.base.arch

    @property
    def index(self) -> DType:
        return self.base.index


@dataclass(frozen=True)
class SplitLaunch:
    stages: tuple[tuple[SplitSignature, ReductionParams, int], ...]  # (signature, params, grid)
    scalars: dict[str, int]           # the row launch's scalars, splits and chunk_len
    workspaces: tuple[tuple[DType, int], ...]  # dtype, element count
    splits: int


def parts(ir: FusionIR) -> list[Phase]:
    """The fusion's reductions grouped as kernel 1 computes them (both kernels use this): the
    reduction phases of a looped row, which for a splittable fusion are WELFORD and PLAIN."""
    return reduction_phases(ir, online=False)


def workspace_dtypes(ir: FusionIR) -> list[DType]:
    """One workspace per partial, in kernel order: per part its value(s), then its sums."""
    result: list[DType] = []
    for p in parts(ir):
        dtype = ir.nodes[p.node].dtype
        result.extend([dtype] * (3 if p.kind is PhaseKind.WELFORD else 1))
        result.extend(ir.nodes[s].dtype for s in p.partners)
    return result


def splittable(ir: FusionIR) -> bool:
    """Whether the two-kernel form computes this fusion (module docstring)."""
    if ir.random:
        return False
    full = {j for j, o in enumerate(ir.outputs) if not o.shape.is_row}
    # full outputs only where kernel 1's first loop stores them (lower/split.py)
    first = parts(ir)[:1]
    if full and (full - prologue_outputs(ir) or not first or first[0].kind is not PhaseKind.PLAIN):
        return False
    if any(n.op in ARG_REDUCTIONS or n.op in (Prim.RAND, Prim.PIECE_LOAD, Prim.IN_PIECE)
           for n in ir.nodes):
        return False
    reduced: set[int] = set()  # nodes with a reduction among their ancestors (or one)
    for i, n in enumerate(ir.nodes):
        if any(a in reduced for a in n.args):
            if n.op in REDUCTIONS:
                return False  # a reduction of a row value: needs the first's full result
            reduced.add(i)
        if n.op in REDUCTIONS:
            if n.dtype not in PARTIAL_DTYPES:
                return False
            reduced.add(i)
    return True


def stage2_lanes(ir: FusionIR, splits: int) -> int:
    """How many of a row's consecutive partials one kernel-2 thread folds in order before the
    block combine: as many as one vector holds in the row layout, where a row's `splits`
    partials are contiguous from row * splits (splits a power of two), so up to 16 bytes of the
    widest partial and at most `splits`; 1 when a Welford part combines (mean, M2, count)
    states, one per thread.  The column layout folds the same groups (the same bits), one
    vector load of kept elements per partial."""
    if any(p.kind is PhaseKind.WELFORD for p in parts(ir)):
        return 1
    return max(1, min(splits, VECTOR_BYTES // max(d.itemsize for d in workspace_dtypes(ir))))


def stage2_columns(ir: FusionIR, base: ReductionSignature) -> tuple[int, int]:
    """(V, A) of a column split's kernel 2: a thread combines V consecutive kept elements (the
    column schedule's lanes, at most one 16-byte vector of the widest partial: one load per
    partial row; at most WELFORD_COLUMNS with a Welford part, whose three state components
    per kept element held a float32 var's kernel 2 at 4 to ptxas' 64 registers, with spills);
    A threads across cover a 128-byte line of each partial row (at most COLUMN_X), so a
    block's STAGE2_BLOCK / A thread rows (8 to 32) share the splits and the grid has
    ceil(rows / (A * V)) blocks: 128 for layer norm's 4096 kept elements, where 32 threads
    across would give 32 (on 132 SMs)."""
    widest = max(d.itemsize for d in workspace_dtypes(ir))
    lanes = max(1, min(base.lanes, VECTOR_BYTES // widest))
    if any(p.kind is PhaseKind.WELFORD for p in parts(ir)):
        lanes = min(lanes, WELFORD_COLUMNS)
    return lanes, max(1, min(COLUMN_X, LINE_BYTES // (lanes * widest)))


def choose_splits(blocks: int, row_numel: int, sms: int, threads: int = 1024) -> int:
    """S for a one-kernel grid of `blocks` blocks of `threads` threads over rows of
    `row_numel` elements (a column schedule passes its reduced extent times COLUMN_X) on `sms`
    SMs; 1: do not split.  A block of fewer than 1024 threads counts as its share of an SM:
    a column schedule's 512-thread blocks need twice as many to keep as many loads in flight
    (128 column tiles of a [8192, 4096] layer-norm gradient ran 2 splits, 256 half-filled
    blocks, at 15% of copy bandwidth on an H100)."""
    slots = sms * max(1, 1024 // threads)
    # a grid of a block per SM already streams (a [16384, 8192] float32 column sum's 256
    # blocks of 512 ran at copy bandwidth on an H100): only smaller grids split
    if blocks >= sms or row_numel < SPLIT_MIN_NUMEL:
        return 1
    want = min(-(-WAVES * slots // blocks), row_numel // MIN_CHUNK, MAX_SPLITS)
    return 1 << (want.bit_length() - 1) if want >= 2 else 1


def plan_split(ir: FusionIR, launch: ReductionLaunch) -> SplitLaunch | None:
    """The split form of a ROW or COLUMN `launch` (nvfuse/schedules.py), or None when the
    one-kernel schedule stays."""
    sig = launch.signature
    if not splittable(ir):
        return None
    column = sig.kind is ScheduleKind.COLUMN
    # a column block reads COLUMN_X * lanes kept elements per reduced index (fewer when there
    # are fewer): the same bytes per block at that many times shorter an extent
    scale = min(COLUMN_X * sig.lanes, launch.rows) if column else 1
    splits = choose_splits(launch.grid, launch.row_numel * scale,
                           device_props(sig.arch).sm_count, sig.block if column else 1024)
    if splits < 2:
        return None
    if column and (splits & (splits - 1) or splits > MAX_SPLITS):
        # the column kernel 2 visits the partials in an order that needs this
        # (nvfuse/lower/split_columns.py)
        raise ValueError(f"split column reduction: {splits} splits; a power of two up to "
                         f"{MAX_SPLITS} is required")
    chunk = -(-launch.row_numel // splits)
    block1 = column_block_for(chunk) if column else block_for(chunk)
    if launch.row_numel + block1 + chunk > (1 << 31) - 1:
        sig = dataclasses.replace(sig, index=DType.INT64)  # col_begin + chunk_len fits
    # row chunks loop over global memory: no register-resident or staged row, no vector width
    # (they depend on the row length, which would make a new size recompile for nothing); a column's
    # lanes depend on the kept extent and alignment only, and stay
    lanes = sig.lanes if column else 1
    base = dataclasses.replace(sig, block=block1, persist=0, lanes=lanes, smem=False,
                               cluster=1, whole_row=False)
    stage1 = SplitSignature(base, 1, block1)
    stage2 = SplitSignature(base, 2, STAGE2_BLOCK, stage2_lanes(ir, splits))
    n = launch.rows * splits
    # kernel 2: a block per row, or A threads across V kept elements each (`stage2_columns`)
    lanes2, across2 = stage2_columns(ir, base) if column else (1, 1)
    grid2 = -(-launch.rows // (across2 * lanes2)) if column else launch.rows
    return SplitLaunch(
        ((stage1, ReductionParams(block1, base.index), launch.grid * splits),
         (stage2, ReductionParams(STAGE2_BLOCK, base.index), grid2)),
        {k: v for k, v in launch.scalars.items() if k != names.SMEM_COLS}
        | {names.SPLITS: splits, names.CHUNK_LEN: chunk},
        tuple((d, n) for d in workspace_dtypes(ir)), splits)
