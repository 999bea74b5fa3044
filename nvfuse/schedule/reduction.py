"""Row-reduction schedule: (FusionIR with reduce_ndim k > 0, actual tensors) ->
(ReductionSignature, ReductionParams, launch arguments).

The iteration space S is the broadcast of the inputs' shapes; its trailing k dims are the
reduced ("inner") dims, the others the "outer" dims.  One block owns one row (one index of the
outer dims; grid = rows = prod(outer sizes)) and its threads stride over the row's
C = prod(inner sizes) columns.  Operands are described by their strides in S exactly as in the
pointwise schedule (0 along broadcast dims, so a (C,) weight has outer stride 0); outer and
inner dims are merged separately (`merge_dims`), each stride classified "0" / "1" / "s".
Row outputs (a reduction's result, keepdim or not) are viewed with their reduced dims kept
(size 1, stride 0 in S).

Block size is a bucket of C, documented in `block_for` and part of the signature: a new row
count never recompiles, a new row length recompiles only when it crosses a bucket edge.  The
index width is the pointwise rule (every offset, the row count and C + block fit in 31 bits).
Accesses are scalar in this slice (no vector width).

Runtime checks (ValueError, which the executor turns into an eager fallback): every reduction's
operand must span S along the reduced dims (otherwise the kernel would combine broadcast
copies; the partitioner enforces it on the traced shapes, TorchScript plans can change shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, OutputShape
from nvfuse.fusion.prims import REDUCTIONS, Prim
from nvfuse.schedule.pointwise import (
    INT32_LIMIT, aligned_strides, broadcast_shape, classify, merge_dims,
)

# (largest C, block): about 4+ columns per thread before the block grows; 1024 is the most a
# block reduction supports.
BLOCK_BUCKETS = ((512, 128), (2048, 256), (8192, 512))
MAX_BLOCK = 1024


def block_for(row_numel: int) -> int:
    """Threads per row for a row of `row_numel` elements (the documented bucket)."""
    for limit, block in BLOCK_BUCKETS:
        if row_numel <= limit:
            return block
    return MAX_BLOCK


@dataclass(frozen=True)
class ReductionSignature:
    """What a row-reduction kernel is specialized on (hashable; part of the cache key)."""

    outer_rank: int
    inner_rank: int
    inputs: tuple[str, ...]   # per input: stride classes of the merged outer, then inner dims
    outputs: tuple[str, ...]  # per output, likewise
    block: int                # the bucket of C (`block_for`)
    index: DType
    arch: str


@dataclass(frozen=True)
class ReductionParams:
    block: int
    index: DType


@dataclass(frozen=True)
class ReductionLaunch:
    signature: ReductionSignature
    params: ReductionParams
    rows: int
    row_numel: int
    # rows, row_numel, outer sizes[1:], inner sizes[1:], then the "s" strides operand by
    # operand (outer dims, then inner dims): the order `lower_reduction` declares them.
    scalar_args: tuple[int, ...]
    grid: int


def iteration_space(shapes: Sequence[torch.Size]) -> torch.Size:
    return broadcast_shape(shapes)


def output_shapes(ir: FusionIR, shapes: Sequence[torch.Size]) -> list[torch.Size]:
    """Eager's shape of every output: the broadcast of the shapes of the inputs it depends on,
    those it depends on through a reduction with the k reduced dims set to 1; a row output
    whose reduced dims are dropped then drops them."""
    k = ir.reduce_ndim
    result = []
    for out in ir.outputs:
        shape = iteration_space([shapes[i] for i in out.shape_from] + [
            torch.Size(_keepdim(shapes[i], k)) for i in out.reduced_from])
        if out.shape is OutputShape.ROW_DROPPED:
            shape = shape[:max(0, len(shape) - k)]
        result.append(shape)
    return result


def _keepdim(shape: Sequence[int], k: int) -> tuple[int, ...]:
    return (*shape[:max(0, len(shape) - k)], *[1] * min(k, len(shape)))


def check_reductions(ir: FusionIR, shapes: Sequence[torch.Size]) -> None:
    """Raise ValueError when a reduction's operand does not span the iteration space along
    the reduced dims (see the module docstring)."""
    k = ir.reduce_ndim
    space = iteration_space(shapes)
    if len(space) < k:
        raise ValueError(f"iteration space {tuple(space)} has fewer than {k} dims")
    deps: list[frozenset[int]] = []
    for node in ir.nodes:
        if node.op is Prim.LOAD:
            deps.append(frozenset({int(node.attr)}))  # type: ignore[arg-type]
        else:
            deps.append(frozenset().union(*(deps[a] for a in node.args)))
        if node.op in REDUCTIONS:
            own = iteration_space([shapes[i] for i in deps[-1]])
            padded = (1,) * max(0, k - len(own)) + tuple(own)
            if tuple(padded[len(padded) - k:]) != tuple(space[len(space) - k:]):
                raise ValueError(f"a reduction's operand of shape {tuple(own)} broadcasts along "
                                 f"the reduced dims of {tuple(space)}")


def plan_launch(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                arch: str) -> ReductionLaunch:
    """Signature, schedule and arguments for running `ir` on these tensors."""
    k = ir.reduce_ndim
    space = iteration_space([t.shape for t in inputs])
    check_reductions(ir, [t.shape for t in inputs])
    views = list(inputs)
    for t, out in zip(outputs, ir.outputs):
        if out.shape is OutputShape.ROW_DROPPED:  # its reduced dims, kept as size 1
            t = t.reshape(*t.shape, *[1] * min(k, len(space)))
        views.append(t)
    aligned = [aligned_strides(t, space) for t in views]
    split = len(space) - k
    outer_sizes, outer = merge_dims(space[:split], [s[:split] for s in aligned])
    inner_sizes, inner = merge_dims(space[split:], [s[split:] for s in aligned])
    rows, row_numel = math.prod(outer_sizes), math.prod(inner_sizes)
    block = block_for(row_numel)
    classes = [classify(o) + classify(i) for o, i in zip(outer, inner)]
    max_offset = max((sum((n - 1) * abs(s) for n, s in zip(outer_sizes + inner_sizes, o + i))
                      for o, i in zip(outer, inner)), default=0)
    fits32 = max(max_offset, rows) <= INT32_LIMIT and row_numel + block <= INT32_LIMIT
    index = DType.INT32 if fits32 else DType.INT64
    n_in = len(inputs)
    signature = ReductionSignature(len(outer_sizes), len(inner_sizes), tuple(classes[:n_in]),
                                   tuple(classes[n_in:]), block, index, arch)
    general = [s for o, i, c in zip(outer, inner, classes) for s, kind in zip(o + i, c)
               if kind == "s"]
    scalars = (rows, row_numel, *outer_sizes[1:], *inner_sizes[1:], *general)
    return ReductionLaunch(signature, ReductionParams(block, index), rows, row_numel, scalars,
                           grid=rows)
