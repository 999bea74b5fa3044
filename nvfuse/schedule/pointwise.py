"""Pointwise schedule: (FusionIR, actual tensors) -> (signature, PointwiseParams, launch args).

The iteration space is the broadcast of the inputs' shapes.  Every operand (inputs and outputs)
is described by its strides in that space (0 along broadcast dims), size-1 dims are dropped and
adjacent dims merged wherever every operand is contiguous across them (so a contiguous
elementwise op is rank 1 whatever its shape).  Each remaining stride is classified:

    "0"  broadcast (stride 0)   "1"  unit stride   "s"  any other stride (a kernel argument)

The *signature* (the cache key next to the fusion IR) holds only those classes, the merged rank,
the vector width, the index width and the arch -- never the sizes, which are kernel arguments, so
a new batch size reuses the kernel.  The vector width depends on a divisibility property of the
innermost size and on pointer alignment; the index width on whether every offset fits in 31 bits:
both are size-dependent facts in the signature (crossing them compiles one more specialization).

Outputs are allocated with eager's shape and layout; the dims are iterated in the memory order
of the first full-size output (so a permuted output is written coalesced) before merging.  An
output whose shape is smaller than the iteration space (it broadcasts) has stride 0 there and is
stored only where those indices are 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar
from collections.abc import Sequence

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.shapes import broadcast_shape
from nvfuse.schedule.kind import ScheduleKind

VECTOR_BYTES = 16  # widest global load/store a thread issues (LDG.128 / STG.128)
BLOCK = 128        # threads per block; a memory-bound kernel needs only enough warps in flight
INT32_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class PointwiseSignature:
    """What a pointwise kernel is specialized on (hashable; part of the cache key)."""

    kind: ClassVar[ScheduleKind] = ScheduleKind.POINTWISE
    rank: int
    inputs: tuple[str, ...]   # per input: one stride class per merged dim, e.g. "s1", "01"
    outputs: tuple[str, ...]  # per output, likewise
    lanes: int                # elements per thread (vector width); 1 = scalar accesses
    index: DType              # INT32 or INT64 index arithmetic
    arch: str


@dataclass(frozen=True)
class PointwiseParams:
    """The schedule: how the iteration space maps onto threads."""

    block: int
    lanes: int
    index: DType


@dataclass(frozen=True)
class PointwiseLaunch:
    """Everything one call needs: signature, schedule, sizes and the scalar arguments."""

    signature: PointwiseSignature
    params: PointwiseParams
    numel: int
    sizes: tuple[int, ...]         # merged sizes, outermost first
    scalar_args: tuple[int, ...]   # numel, sizes[1:], then the "s" strides operand by operand
    grid: int




def aligned_strides(t: torch.Tensor, shape: Sequence[int]) -> list[int]:
    """Strides of `t` in the iteration space `shape` (right-aligned; 0 where it broadcasts)."""
    pad = len(shape) - t.dim()
    strides = [0] * pad
    for size, stride in zip(t.shape, t.stride()):
        strides.append(0 if size == 1 else stride)
    return strides


def _iteration_order(shape: list[int], output_strides: list[list[int]]) -> list[int]:
    """Iterate dims in the memory order of the first output that covers the whole space, so a
    permuted output (eager keeps a permuted input's layout) is still written coalesced."""
    for strides in output_strides:
        if all(s != 0 for s, n in zip(strides, shape) if n != 1):
            return sorted(range(len(shape)), key=lambda d: -strides[d])  # stable
    return list(range(len(shape)))


def merge_dims(shape: Sequence[int],
               operands: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge adjacent dims across which every operand is contiguous."""
    keep = [d for d, n in enumerate(shape) if n != 1]
    sizes = [shape[d] for d in keep]
    strides = [[s[d] for d in keep] for s in operands]
    d = len(sizes) - 1
    while d > 0:  # try to merge dim d-1 (outer) into dim d (inner)
        if all(s[d - 1] == s[d] * sizes[d] for s in strides):
            sizes[d] *= sizes[d - 1]
            del sizes[d - 1]
            for s in strides:
                del s[d - 1]
        d -= 1
    return sizes, strides


def classify(strides: list[int]) -> str:
    return "".join("0" if s == 0 else "1" if s == 1 else "s" for s in strides)


def _pick_lanes(sizes: list[int], classes: list[str], strides: list[list[int]],
                tensors: list[torch.Tensor], n_outputs: int) -> int:
    """Widest vector width every operand can use (see the module docstring), or 1."""
    if not sizes:
        return 1
    inner = sizes[-1]
    unit = [i for i, c in enumerate(classes) if c[-1] == "1"]
    if any(c[-1] == "s" for c in classes) or any(c[-1] != "1" for c in classes[-n_outputs:]):
        return 1
    widest = max(tensors[i].element_size() for i in unit)
    lanes = VECTOR_BYTES // widest
    while lanes > 1:
        if inner % lanes == 0 and all(
            tensors[i].data_ptr() % (lanes * tensors[i].element_size()) == 0
            and all(s % lanes == 0 for s in strides[i][:-1]) for i in unit
        ):
            return lanes
        lanes //= 2
    return 1


def _max_offset(sizes: list[int], strides: list[int]) -> int:
    return sum((n - 1) * abs(s) for n, s in zip(sizes, strides))


def plan_launch(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                arch: str) -> PointwiseLaunch:
    """Signature, schedule and arguments for running `ir` on these tensors."""
    shape = broadcast_shape([t.shape for t in inputs])
    tensors = list(inputs) + list(outputs)
    aligned = [aligned_strides(t, shape) for t in tensors]
    order = _iteration_order(list(shape), aligned[len(inputs):])
    sizes, strides = merge_dims([shape[d] for d in order], [[s[d] for d in order] for s in aligned])
    classes = [classify(s) for s in strides]
    numel = math.prod(sizes)
    lanes = _pick_lanes(sizes, classes, strides, tensors, len(outputs))
    fits32 = numel + BLOCK * lanes <= INT32_LIMIT and all(
        _max_offset(sizes, s) <= INT32_LIMIT for s in strides)
    index = DType.INT32 if fits32 else DType.INT64
    signature = PointwiseSignature(
        len(sizes), tuple(classes[: len(inputs)]), tuple(classes[len(inputs):]), lanes, index,
        arch)
    general = [s for st, c in zip(strides, classes) for s, k in zip(st, c) if k == "s"]
    per_block = BLOCK * lanes
    return PointwiseLaunch(
        signature, PointwiseParams(BLOCK, lanes, index), numel, tuple(sizes),
        (numel, *sizes[1:], *general), grid=max(1, -(-numel // per_block)))
