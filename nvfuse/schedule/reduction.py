"""Reduction schedules: (FusionIR with reduce_ndim k > 0, actual tensors) ->
(ReductionSignature of kind ROW, WARP_ROW or COLUMN, ReductionParams, launch arguments).

The iteration space S is the broadcast of the inputs' shapes, permuted so that the reduced
dims (`FusionIR.reduce_axes`) come last: the kept ("outer") dims in order, then the reduced
("inner") dims in order.  A row is one index of the outer dims (rows = prod(outer sizes)), a
row's columns the C = prod(inner sizes) elements it reduces.  Permuting only reorders strides,
so a reduction over leading dims is a reduction over trailing ones of a strided view, and the
schedule is picked by strides, not by dim numbers (`is_column`):

- row schedule (the reduced dims innermost in memory, or neither): one block per row
  (grid = rows), its threads stride over the row's columns;
- warp rows (a row schedule with C <= WARP_ROW_MAX = 64): one warp per row, WARP_ROWS = 4
  rows per 128-thread block, grid = ceil(rows / 4), warp-shuffle combines only.  See
  nvfuse/lower/warp.py;
- column schedule (the kept dims innermost, e.g. [M, N] summed over M with N contiguous, or a
  permuted input): COLUMN_X * lanes consecutive rows per block, lanes per thread of a warp
  (coalesced), the block's thread rows split the columns; grid = ceil(rows / (COLUMN_X *
  lanes)).  See
  nvfuse/lower/column.py.  Operands are described by their strides in S exactly as in the
pointwise schedule (0 along broadcast dims, so a (C,) weight has outer stride 0); outer and
inner dims are merged separately (`merge_dims`), each stride classified "0" / "1" / "s".
Row outputs (a reduction's result, keepdim or not) are viewed with their reduced dims kept
(size 1, stride 0 in S).

Block size is a bucket of C, documented in `block_for` / `column_block_for` and part of the
signature: a new row count never recompiles, a new row length recompiles only when it crosses a
bucket edge.  The index width is the pointwise rule (every offset, the row count and C + block
fit in 31 bits).  Accesses are scalar, except where `lanes` > 1 (persistent and looped rows,
below).

Persistent rows (`persistent_for`): when a row schedule's C fits a persistent bucket, each
thread loads its `persist` columns (threadIdx.x + k * block, k < persist) of every input the
reductions read once into registers, and every phase reads the registers; `persist` is a
compile-time constant of the signature, C stays a kernel argument (columns past it are
predicated off).  The block is cut to the row (`_fitted`: the smallest power of two of threads
whose slots cover C), so one kernel serves every C between two powers of two of its bucket.

Vector row loads (`persistent_lanes`): a persistent row whose cached inputs all have unit
stride along a single merged inner dim, with C, every outer stride and every data pointer a
multiple of `lanes` elements, loads `lanes` consecutive columns (16 bytes of the widest
cached dtype, at most `persist`) per access; thread t's slot k * lanes + l then holds column
(t + k * block) * lanes + l.  The epilogue then also reads the other unit-stride inputs (a
norm's weight and bias) and writes the unit-stride full outputs `lanes` columns per access
(where that is at most 16 bytes), so those operands must be aligned the same way.  `lanes` is
in the signature (C % lanes and the alignments decide it, as the pointwise schedule's
`_pick_lanes`).

Vector looped rows (`looped_lanes`): a row schedule past the persistent buckets whose
unit-stride inputs (one merged inner dim, elements of at most 4 bytes) are aligned by the same
rule loads and stores `lanes` consecutive columns per access (16 bytes of the widest such
input): thread t visits column groups (t + k * block) * lanes, k = 0, 1, ..., each group one
vector access per unit-stride operand whose vector fits 16 bytes, the lanes unrolled.

Shared-memory rows (`staged_inputs`, sig.smem): a looped row read more than once first copies
its cached inputs' first `smem_cols` columns (a kernel argument: the whole row up to
SMEM_ROW_BYTES; with lanes > 1 only the unit-stride inputs, with lanes 1 any strides: group
norm's channels x pixels, batch norm's batch x pixels) into dynamic shared memory, with the
same column mapping as every later column loop, so each thread reads back only what it wrote
(no barrier); the phases read those columns from shared memory and the rest, if any, from
global memory.  On sm_90 a row whose staged columns overflow one block's cap runs on a
thread-block cluster instead (`cluster_for`, sig.cluster): each of its blocks stages a
contiguous chunk of the row, so the row is read once.  sig.whole_row: every column is staged
(by the block or the cluster); a softmax's max and sum of exp then take two passes over
shared memory instead of the online pass, so a row read once by the online pass (a
cross-entropy's log-sum-exp) is staged too, where it is staged whole.

Runtime checks (ValueError, which the executor turns into an eager fallback): every reduction's
operand must span S along the reduced dims (otherwise the kernel would combine broadcast
copies; the partitioner enforces it on the traced shapes, TorchScript plans can change shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import (
    FusionIR, OutputShape, needed_nodes, reduced_positions,
)
from nvfuse.fusion.phases import PhaseKind, reduction_phases
from nvfuse.fusion.prims import ARG_REDUCTIONS, REDUCTIONS, Prim
from nvfuse.schedule.device import DEFAULTS, arch_number, device_props
from nvfuse.schedule import names
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.pointwise import (
    INT32_LIMIT, broadcast_shape, iteration_strides, classify, merge_dims,
)

# (largest C, block): about 4+ columns per thread before the block grows; 1024 is the most a
# block reduction supports.
BLOCK_BUCKETS = ((512, 128), (2048, 256), (8192, 512))
MAX_BLOCK = 1024


# Column schedule (kept dims innermost in memory): COLUMN_X threads of a block take COLUMN_X
# consecutive kept elements (one coalesced 32-wide access per warp), the block's
# block / COLUMN_X thread rows split the reduced extent.  (largest reduced extent, block):
# short columns need few thread rows, long ones up to 16.  A column reduction with few kept
# elements and a long reduced extent gets few blocks: nvfuse/schedule/split.py splits it.
COLUMN_X = 32
COLUMN_BUCKETS = ((64, 128), (1024, 256))
COLUMN_MAX_BLOCK = 512
# Vector columns (`column_lanes`): a thread owns `lanes` consecutive kept elements, so a block's
# COLUMN_X threads across cover COLUMN_X * lanes kept elements (a warp reads 512 contiguous
# bytes of a row) and the grid shrinks by `lanes`.  The block and its thread rows stay the
# bucket's: the lane-by-lane combine reads thread rows x lanes partials per thread, and a
# lanes-independent thread count keeps column kernels in the horizontal launches of
# same-block kernels (nvfuse/schedule/horizontal.py bundles by block).  At most 8 lanes: the
# per-lane accumulators of one-byte inputs (summed in int64) would take 32 registers per
# reduction at 16.
COLUMN_MAX_LANES = 8


def column_block_for(row_numel: int) -> int:
    """Threads per block of the column schedule for a reduced extent of `row_numel`."""
    return next((b for limit, b in COLUMN_BUCKETS if row_numel <= limit), COLUMN_MAX_BLOCK)


def column_lanes(ir: FusionIR, lay: RowLayout) -> int:
    """Kept elements per thread of the column schedule (the vector width), or 1: 16 bytes of
    the widest operand with unit stride along the innermost kept dim, halved until the
    innermost kept size and every such operand's data pointer and other strides (kept and
    reduced, along dims longer than 1) are multiples of it -- the pointwise `_pick_lanes`
    rule, so a thread's lanes lie in one kept dim and every access is aligned.  Every other
    input must broadcast along that dim (stride 0: one element serves all lanes) and every
    output must have unit stride there; random numbers keep lanes 1 (their element index is
    per lane).  Sizes other than the innermost kept one, and the reduced extent, do not
    matter: a new batch keeps the kernel."""
    if ir.random or not lay.outer_sizes or not lay.outer[0]:
        return 1
    n_in = len(ir.inputs)
    last = [o[-1] for o in lay.outer]
    if any(s not in (0, 1) for s in last) or any(s != 1 for s in last[n_in:]):
        return 1
    unit = [k for k, s in enumerate(last) if s == 1]
    widest = max(lay.views[k].element_size() for k in unit)
    lanes = min(VECTOR_BYTES // widest, COLUMN_MAX_LANES)
    while lanes > 1:
        if lay.outer_sizes[-1] % lanes == 0 and all(
                lay.views[k].data_ptr() % (lanes * lay.views[k].element_size()) == 0
                and all(s % lanes == 0 for s, n in zip(lay.outer[k][:-1], lay.outer_sizes[:-1])
                        if n != 1)
                and all(s % lanes == 0 for s, n in zip(lay.inner[k], lay.inner_sizes) if n != 1)
                for k in unit):
            return lanes
        lanes //= 2
    return 1


# Persistent buckets (largest C, block): persist = C_max / block columns per thread, 4 to 32.
# The register budget: the cached values take persist * words 32-bit registers per thread
# (words: per column, one per cached input of at most 4 bytes, two for 8 bytes); at most the
# device's `persist_words` (nvfuse/schedule/device.py: half of a thread's share at 1024
# threads per SM, 32 of 64K registers), leaving room for the index math and the phases'
# temporaries, so ptxas reports no spills (tests/numerics/test_persistent.py).  A bucket over
# budget doubles its block (halving persist) up to MAX_BLOCK; if it still does not fit, or
# C > 32768, the looped schedule.  The two 1024-thread buckets keep a 16K-wide bf16 norm with
# its residual (2 words x 16) and a 32K-wide fp32 or 16-bit softmax (1 word x 32) in
# registers: the row is read once instead of two or three times (bench --model).
PERSIST_BUCKETS = ((512, 128), (2048, 256), (8192, 512), (16384, 1024), (32768, 1024))
PERSIST_WORDS = DEFAULTS["sm_90"].persist_words


# Rows of several merged inner dims (group norm's channels x pixels) pay index math per
# register slot: at most this many slots, or ptxas spills (tests/numerics/test_launch_bounds.py).
MAX_PERSIST_MULTI_DIM = 16


def persistent_for(row_numel: int, words: int, budget: int = PERSIST_WORDS,
                   inner_rank: int = 1) -> tuple[int, int]:
    """(block, persist) of the persistent row schedule for rows of `row_numel` elements whose
    cached inputs take `words` registers per column, or (block_for(row_numel), 0): looped."""
    most = MAX_PERSIST_MULTI_DIM if inner_rank > 1 else max(lim // b for lim, b in PERSIST_BUCKETS)
    if words > 0:
        for limit, block in PERSIST_BUCKETS:
            if row_numel <= limit:
                while block <= MAX_BLOCK:
                    persist = limit // block
                    if persist * words <= budget and persist <= most:
                        return _fitted(block, persist, row_numel), persist
                    block *= 2
                break
    return block_for(row_numel), 0


def _fitted(block: int, persist: int, row_numel: int) -> int:
    """The bucket's block cut to the row: the smallest power of two (at least a warp) whose
    threads' `persist` slots cover `row_numel` columns.  A 4096-wide row in the 8192 bucket
    runs 256 threads of 16 slots, not 512 with half of them idle (twice the rows per SM, half
    the warps in each block reduction)."""
    need = max(1, -(-row_numel // persist))
    return min(block, max(32, 1 << (need - 1).bit_length()))


def cached_inputs(ir: FusionIR, inputs: Sequence[str], outer_rank: int) -> tuple[int, ...]:
    """The inputs a persistent row keeps in registers: those a reduction's operand reads that
    vary along the row (`inputs`: their signature stride classes).  Inputs only the epilogue
    reads (layer norm's weight and bias) are read once there anyway; row-invariant ones are
    hoisted (nvfuse/lower/reduction_state.py)."""
    needed: set[int] = set()
    stack = [a for n in ir.nodes if n.op in REDUCTIONS for a in n.args]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(ir.nodes[i].args)
    found = {int(ir.nodes[i].attr) for i in needed  # type: ignore[arg-type]
             if ir.nodes[i].op is Prim.LOAD}
    return tuple(k for k in sorted(found) if any(c != "0" for c in inputs[k][outer_rank:]))


VECTOR_BYTES = 16


def persistent_lanes(cached: Sequence[int], persist: int, row_numel: int,
                     inner: Sequence[Sequence[int]], outer: Sequence[Sequence[int]],
                     operands: Sequence[torch.Tensor]) -> int:
    """Columns per vector access of the persistent row (module docstring), or 1.  `operands`:
    the inputs then the outputs (as `inner` / `outer`).  Besides the cached inputs, every
    operand with one unit-stride inner dim whose vector fits 16 bytes must be aligned: the
    epilogue reads and writes those `lanes` columns at a time (nvfuse/lower/reduction.py)."""
    if not cached or persist == 0 or any(len(inner[k]) != 1 or inner[k][0] != 1
                                         for k in cached):
        return 1
    widest = max(operands[k].element_size() for k in cached)
    lanes = min(VECTOR_BYTES // widest, persist)
    unit = [k for k in range(len(operands)) if list(inner[k]) == [1]]
    while lanes > 1:
        if row_numel % lanes == 0 and all(
                operands[k].data_ptr() % (lanes * operands[k].element_size()) == 0
                and all(s % lanes == 0 for s in outer[k]) for k in unit
                if k in cached or lanes * operands[k].element_size() <= VECTOR_BYTES):
            return lanes
        lanes //= 2
    return 1


def looped_lanes(n_inputs: int, inner_sizes: Sequence[int], inner: Sequence[Sequence[int]],
                 outer: Sequence[Sequence[int]], operands: Sequence[torch.Tensor]) -> int:
    """Columns per vector access of a looped row (module docstring), or 1: 16 bytes of the
    widest input of at most 4 bytes with unit stride along the innermost inner dim; every
    such operand (input or output, `operands` as in `persistent_lanes`) whose vector fits 16
    bytes must be aligned to it, with the innermost inner size and the operand's other
    strides multiples of it (the persistent rule; a group of lanes then never crosses the
    innermost dim: group norm's pixels of one channel)."""
    unit = [k for k in range(len(operands)) if inner[k] and inner[k][-1] == 1
            and operands[k].element_size() <= 4]
    sizes = [operands[k].element_size() for k in unit if k < n_inputs]
    if not sizes or not inner_sizes:
        return 1
    lanes = VECTOR_BYTES // max(sizes)
    while lanes > 1:
        if inner_sizes[-1] % lanes == 0 and all(
                operands[k].data_ptr() % (lanes * operands[k].element_size()) == 0
                and all(s % lanes == 0 for s in [*outer[k], *inner[k][:-1]]) for k in unit
                if lanes * operands[k].element_size() <= VECTOR_BYTES):
            return lanes
        lanes //= 2
    return 1


# Shared-memory rows: a looped row whose phases read its cached inputs more than once stages
# their first `smem_cols` columns in dynamic shared memory, at most SMEM_ROW_BYTES a block:
# sm_90's 227 KiB opt-in limit less room for the reductions' static scratch; on a device
# with less shared memory per SM, that less SMEM_RESERVED (the 1 KiB the system keeps per
# block, 3 KiB of scratch): 160 KiB on an A100 (`smem_row_bytes`).  smem_cols is the row
# length when it fits, else a multiple of SMEM_COLS_STEP (any lanes divides it) and the
# columns past it are re-read from global memory; 0: not staged.
SMEM_ROW_BYTES = 224 * 1024
SMEM_COLS_STEP = 16
SMEM_RESERVED = 4 * 1024


def smem_row_bytes(arch: str) -> int:
    """The shared memory a block of `arch` may stage its row in (above)."""
    return min(SMEM_ROW_BYTES, device_props(arch).smem_per_sm - SMEM_RESERVED)


def staged_inputs(ir: FusionIR, cached: Sequence[int], inner: Sequence[Sequence[int]],
                  lanes: int, whole: bool = True) -> tuple[int, ...]:
    """The inputs a looped row stages in shared memory: the cached inputs (with unit stride
    along the innermost inner dim where `lanes` > 1: a group of lanes is then one
    contiguous access), when the row is read more than once (a full output's pass after the
    reductions, several reduction phases, or -- where the `whole` row is staged -- a
    softmax's max and sum of exp, which a wholly staged row computes in two plain passes:
    nvfuse/lower/reduction.py); else none."""
    phases = reduction_phases(ir)
    again = (any(not o.shape.is_row for o in ir.outputs) or len(phases) > 1
             or (whole and any(p.kind is PhaseKind.ONLINE for p in phases)))
    return tuple(k for k in cached if lanes == 1 or (inner[k] and inner[k][-1] == 1)) \
        if again else ()


def smem_cols(row_numel: int, itemsizes: Sequence[int], arch: str = "sm_90") -> int:
    """The columns staged in shared memory (see above) for staged inputs of these sizes."""
    if not itemsizes:
        return 0
    return row_numel if row_numel <= _fit(itemsizes, arch, 1) else _fit(itemsizes, arch)


def _fit(itemsizes: Sequence[int], arch: str, step: int = SMEM_COLS_STEP) -> int:
    """The most columns of inputs of these sizes one block stages, a multiple of `step`."""
    return max(smem_row_bytes(arch), 0) // sum(itemsizes) // step * step


# Cluster rows (sig.cluster = C > 1; nvfuse/lower/cluster.py): a staged row too long for one
# block's shared memory is split over a thread-block cluster of C blocks (sm_90 and later; C
# one of CLUSTER_SIZES, the portable sizes), block rank r taking the contiguous columns
# [r * smem_cols, (r + 1) * smem_cols) of the row and staging all of them: the row is read from
# global memory once, where one block re-reads the columns past its smem_cols.  Each reduction
# combines the blocks' results through distributed shared memory (kir.ClusterReduce); the
# grid is rows * C.  smem_cols, the chunk, is a multiple of SMEM_COLS_STEP, so a vector group
# never straddles two blocks.  Not for (value, index) reductions, which have no cluster
# combine: they keep the one-block row.
CLUSTER_SIZES = (2, 4, 8)
CLUSTER_MIN_ARCH = 90


def cluster_for(ir: FusionIR, row_numel: int, itemsizes: Sequence[int],
                arch: str) -> tuple[int, int]:
    """(C, smem_cols) of the cluster row for staged inputs of these sizes, or (1, 0) when one
    block holds the row, the arch has no clusters, the row needs more than the largest
    cluster, or the fusion has an arg reduction."""
    if not itemsizes or arch_number(arch) < CLUSTER_MIN_ARCH or any(
            n.op in ARG_REDUCTIONS for n in ir.nodes):
        return 1, 0
    fit = _fit(itemsizes, arch)
    if row_numel <= fit or fit == 0:
        return 1, 0
    for size in CLUSTER_SIZES:
        chunk = -(-row_numel // size)
        chunk = -(-chunk // SMEM_COLS_STEP) * SMEM_COLS_STEP
        if chunk <= fit:
            return size, chunk
    return 1, 0


# Warp rows (kind WARP_ROW, nvfuse/lower/warp.py): a row schedule whose rows have at most
# WARP_ROW_MAX elements (two per lane) would leave most of a 128-thread block idle, so a block
# of WARP_BLOCK threads takes WARP_ROWS consecutive rows, one warp each, and combines with
# warp shuffles only (no shared memory, no barrier); grid = ceil(rows / WARP_ROWS).  Not
# persistent: a row is at most two columns per lane, which L1 serves on a re-read.
WARP_ROW_MAX = 64
WARP_ROWS = 4
WARP_BLOCK = 32 * WARP_ROWS


def block_for(row_numel: int) -> int:
    """Threads per row for a row of `row_numel` elements (the documented bucket)."""
    for limit, block in BLOCK_BUCKETS:
        if row_numel <= limit:
            return block
    return MAX_BLOCK


@dataclass(frozen=True)
class ReductionSignature:
    """What a reduction kernel is specialized on (hashable; part of the cache key).  `kind`:
    ROW, WARP_ROW (block = WARP_BLOCK, persist 0) or COLUMN (module docstring); signatures of
    different kinds never share a kernel."""

    outer_rank: int
    inner_rank: int
    inputs: tuple[str, ...]   # per input: stride classes of the merged outer, then inner dims
    outputs: tuple[str, ...]  # per output, likewise
    block: int                # the bucket of C (`block_for` / `persistent_for`)
    index: DType
    arch: str
    persist: int = 0          # columns per thread held in registers (0: looped schedule)
    lanes: int = 1            # columns per vector access of a persistent or looped row;
                              # COLUMN: kept elements per thread (`column_lanes`)
    kind: ScheduleKind = field(default=ScheduleKind.ROW, repr=False)
    smem: bool = False        # a looped row staged in shared memory (`staged_inputs`)
    cluster: int = 1          # blocks per row: a cluster row (`cluster_for`) when > 1
    whole_row: bool = False   # a staged row staged whole (by its block or its cluster)

    def __repr__(self) -> str:
        # Kernel names hash this text (lower/pointwise.py content_name): it spells the kind as
        # a name of its own, smem and cluster only when set, so names, goldens and disk-cache
        # entries stay stable.
        hidden = {"smem": not self.smem, "cluster": self.cluster == 1,
                  "whole_row": not self.whole_row}
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.repr and not hidden.get(f.name, False))
        return f"{_SPELLING[self.kind]}({shown})"


_SPELLING = {ScheduleKind.ROW: "ReductionSignature", ScheduleKind.COLUMN: "ColumnSignature",
             ScheduleKind.WARP_ROW: "WarpSignature"}


@dataclass(frozen=True)
class ReductionParams:
    block: int
    index: DType
    persist: int = 0


@dataclass(frozen=True)
class ReductionLaunch:
    signature: ReductionSignature
    params: ReductionParams
    rows: int
    row_numel: int
    # the kernel's scalar arguments by parameter name (nvfuse/schedule/names.py): rows,
    # row_numel, outer sizes[1:], inner sizes[1:], the "s" strides operand by operand
    scalars: dict[str, int]
    grid: int


def iteration_space(shapes: Sequence[torch.Size]) -> torch.Size:
    return broadcast_shape(shapes)



def check_reductions(ir: FusionIR, shapes: Sequence[torch.Size]) -> None:
    """Raise ValueError when a reduction's operand does not span the iteration space along
    the reduced dims (see the module docstring)."""
    axes = ir.reduce_axes
    space = iteration_space(shapes)
    if len(space) < -min(axes):
        raise ValueError(f"iteration space {tuple(space)} has no dims {list(axes)}")
    reduced = reduced_positions(axes, len(space))

    def spans(sources: frozenset[int]) -> tuple[int, ...] | None:
        """The shape of the inputs `sources` broadcast, when it broadcasts along the space's
        reduced dims; None when it spans them."""
        own = iteration_space([shapes[i] for i in sources])
        padded = (1,) * max(0, len(space) - len(own)) + tuple(own)
        return tuple(own) if any(padded[d] != space[d] for d in reduced) else None

    deps: list[frozenset[int]] = []
    for index, node in enumerate(ir.nodes):
        if node.op is Prim.LOAD:
            deps.append(frozenset({int(node.attr)}))  # type: ignore[arg-type]
        else:
            deps.append(frozenset().union(*(deps[a] for a in node.args)))
        if node.op not in REDUCTIONS:
            continue
        if not deps[-1]:
            # a constant operand (`isnan(x_int)`): its shape is that of the inputs the outputs
            # depend on through the reduction (the build records shape-only dependencies there)
            users = [o for o in ir.outputs if index in needed_nodes(ir.nodes, (o,))]
            sources = [frozenset({i}) for o in users for i in o.reduced_from]
        else:
            sources = [deps[-1]]
        for source in sources:
            own = spans(source)
            if own is not None:
                raise ValueError(f"a reduction's operand of shape {own} broadcasts along "
                                 f"the reduced dims of {tuple(space)}")


def _row_view(t: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """A keepdim=False output viewed with its reduced dims kept (size 1)."""
    rank = t.dim() + len(axes)
    for d in reduced_positions(axes, rank):  # ascending: each insert keeps the later positions
        t = t.unsqueeze(d)
    return t


def is_column(outer: list[list[int]], inner: list[list[int]], n_inputs: int) -> bool:
    """Whether the kept dims, not the reduced ones, are innermost in memory: no input that
    spans the whole iteration space has unit stride along the innermost reduced dim, and one
    has unit stride along the innermost kept dim.  Then threads along the kept dims read
    coalesced.  An input that spans only the reduced dims (a per-row statistic such as layer
    norm's saved mean, [N, 1], in its weight gradient's sum over N) is read once per reduced
    index by every thread alike: its strides do not decide."""
    spanning = [i for i in range(n_inputs) if inner[i] and all(s != 0 for s in inner[i])
                and any(s != 0 for s in outer[i])]
    if not spanning or not outer or not outer[0]:
        return False
    return (all(inner[i][-1] != 1 for i in spanning)
            and any(outer[i][-1] == 1 for i in spanning))


@dataclass(frozen=True)
class RowLayout:
    """A call's iteration space with the reduced dims last, outer and inner dims merged: the
    facts every reduction kind is chosen by and planned from (module docstring)."""

    outer_sizes: list[int]
    inner_sizes: list[int]
    outer: list[list[int]]  # per operand (inputs, then outputs), its merged outer strides
    inner: list[list[int]]  # and its merged inner strides
    rows: int
    row_numel: int
    views: list[torch.Tensor]  # the inputs, then the outputs with reduced dims kept (size 1)


def row_layout(ir: FusionIR, inputs: Sequence[torch.Tensor],
               outputs: Sequence[torch.Tensor]) -> RowLayout:
    """The layout of running `ir` on these tensors (ValueError: a reduction's operand does not
    span the reduced dims)."""
    axes = ir.reduce_axes
    space = iteration_space([t.shape for t in inputs])
    check_reductions(ir, [t.shape for t in inputs])
    views = list(inputs)
    for t, out in zip(outputs, ir.outputs):
        views.append(_row_view(t, axes) if out.shape is OutputShape.ROW_DROPPED else t)
    # reduced dims last: kept dims in order, then reduced dims in order (the module docstring)
    reduced = reduced_positions(axes, len(space))
    order = [d for d in range(len(space)) if d not in reduced] + list(reduced)
    strides = [iteration_strides(t, space) for t in views]
    for s, out in zip(strides[len(inputs):], ir.outputs):
        if out.shape.is_row:  # it broadcasts along the reduced dims, even along those of size 1
            for d in reduced:
                s[d] = 0
    aligned = [[s[d] for d in order] for s in strides]
    space = torch.Size([space[d] for d in order])
    split = len(space) - len(reduced)
    outer_sizes, outer = merge_dims(space[:split], [s[:split] for s in aligned])
    inner_sizes, inner = merge_dims(space[split:], [s[split:] for s in aligned])
    return RowLayout(outer_sizes, inner_sizes, outer, inner, math.prod(outer_sizes),
                     math.prod(inner_sizes), views)


def column_applies(ir: FusionIR, lay: RowLayout) -> bool:
    """The column schedule fits: the kept dims are innermost (`is_column`), and no (value,
    index) pair reduction (the column lowering has none: argmax reads rows strided)."""
    return is_column(lay.outer, lay.inner, len(ir.inputs)) and not any(
        n.op in ARG_REDUCTIONS for n in ir.nodes)


def warp_applies(lay: RowLayout) -> bool:
    """Rows short enough for one warp each (WARP_ROW_MAX)."""
    return lay.row_numel <= WARP_ROW_MAX


def plan_launch(ir: FusionIR, inputs: Sequence[torch.Tensor], lay: RowLayout, arch: str,
                kind: ScheduleKind) -> ReductionLaunch:
    """Signature, schedule and arguments for running `ir` on these inputs with the `kind`
    schedule (ROW, WARP_ROW or COLUMN; nvfuse/schedules.py chooses it)."""
    outer_sizes, inner_sizes, outer, inner = lay.outer_sizes, lay.inner_sizes, lay.outer, lay.inner
    rows, row_numel = lay.rows, lay.row_numel
    column, warp = kind is ScheduleKind.COLUMN, kind is ScheduleKind.WARP_ROW
    classes = [classify(o) + classify(i) for o, i in zip(outer, inner)]
    persist, lanes, cluster, whole = 0, 1, 1, False
    staged: tuple[int, ...] = ()
    if column:
        lanes = column_lanes(ir, lay)
        block = column_block_for(row_numel)
    elif warp:
        block = WARP_BLOCK
    else:
        cached = cached_inputs(ir, classes, len(outer_sizes))
        words = sum(-(-ir.inputs[k].dtype.itemsize // 4) for k in cached)
        block, persist = persistent_for(row_numel, words, device_props(arch).persist_words,
                                        len(inner_sizes))
        if persist:
            lanes = persistent_lanes(cached, persist, row_numel, inner, outer, lay.views)
        else:
            lanes = looped_lanes(len(inputs), inner_sizes, inner, outer, lay.views)
            staged = staged_inputs(ir, cached, inner, lanes) if row_numel > 0 else ()
            sizes = [ir.inputs[k].dtype.itemsize for k in staged]
            cols = smem_cols(row_numel, sizes, arch)
            staged = staged if cols > 0 else ()
            if staged and cols < row_numel:
                cluster, chunk = cluster_for(ir, row_numel, sizes, arch)
                cols = chunk if cluster > 1 else cols
            whole = bool(staged) and (cluster > 1 or cols >= row_numel)
            if staged and not whole and not staged_inputs(ir, cached, inner, lanes, False):
                staged = ()  # read twice only as two passes over a wholly staged row
    max_offset = max((sum((n - 1) * abs(s) for n, s in zip(outer_sizes + inner_sizes, o + i))
                      for o, i in zip(outer, inner)), default=0)
    fits32 = (max(max_offset, rows + COLUMN_X * lanes) <= INT32_LIMIT
              and row_numel + block <= INT32_LIMIT)
    index = DType.INT32 if fits32 else DType.INT64
    n_in = len(inputs)
    signature = ReductionSignature(len(outer_sizes), len(inner_sizes), tuple(classes[:n_in]),
                                   tuple(classes[n_in:]), block, index, arch, persist, lanes,
                                   kind, bool(staged), cluster, whole)
    scalars = {names.ROWS: rows, names.ROW_NUMEL: row_numel}
    if staged:
        scalars[names.SMEM_COLS] = cols
    scalars |= {names.outer_size(d): n for d, n in enumerate(outer_sizes) if d}
    scalars |= {names.inner_size(d): n for d, n in enumerate(inner_sizes) if d}
    rank = len(outer_sizes)
    operands = [*(t.name for t in ir.inputs), *(t.name for t in ir.outputs)]
    for t, o, i, c in zip(operands, outer, inner, classes):
        scalars |= names.general_strides(t, c[:rank], o, "o")
        scalars |= names.general_strides(t, c[rank:], i, "i")
    grid = (-(-rows // (COLUMN_X * lanes)) if column else -(-rows // WARP_ROWS) if warp
            else rows * cluster)
    return ReductionLaunch(signature, ReductionParams(block, index, persist), rows, row_numel,
                           scalars, grid=grid)
