"""Pointwise schedule: (FusionIR, actual tensors) -> (signature, PointwiseParams, launch scalars).

The iteration space is the broadcast of the inputs' shapes.  Every operand (inputs and outputs)
is described by its strides in that space (0 along broadcast dims, `iteration_strides`), and
adjacent dims are merged wherever every operand is contiguous across them (so a contiguous
elementwise op is rank 1 whatever its shape, `merge_dims`).  Each remaining stride is classified:

    "0"  broadcast (stride 0)   "1"  unit stride   "s"  any other stride (a kernel argument)

The *signature* (the cache key next to the fusion IR) holds only those classes, the merged rank,
the vector width, the index width and the arch -- never the sizes, which are kernel arguments, so
a new batch size reuses the kernel.  Size-1 dims: a trailing run of them (innermost in the
iteration order) is dropped; any other keeps the operands' own strides and merges by the same
rule as a longer dim, so a batch of one gives the signature of a batch of eight (a dim of size 1
can take any stride: its index is always 0).

Vector width (`_pick_lanes`): 16 bytes of the widest unit-stride operand, halved until every
unit-stride operand's data pointer and outer strides are multiples of it -- alignment facts --
and, for rank > 1, until the innermost size is (the inner extent: a thread's lanes stay in one
row).  A rank-1 space needs no divisibility: the lowering gives the last thread a guarded scalar
tail, so a new batch size keeps the width.  The index width depends on whether every offset fits
in 31 bits (crossing it compiles one more specialization).

An output may be one of the input tensors themselves (the executor writes an optimizer's
update into the parameter: nvfuse/runtime/inplace.py); the signature then says `aliased` and
the kernel's pointers lose `__restrict__`.  Each thread reads its elements before it writes
them, so this is exact when the output and the input have the same shape and strides.

Outputs are allocated with eager's shape and layout; the dims are iterated in the memory order
of the first full-size output (so a permuted output is written coalesced) before merging.  An
output whose shape is smaller than the iteration space (it broadcasts) has stride 0 there and is
stored only where those indices are 0 -- with vector lanes, by the thread whose first lane is
there (a row's per-row output beside its full-size ones: cross-entropy's backward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar
from collections.abc import Sequence

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.shapes import broadcast_shape
from nvfuse.schedule import names
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
    # an output is an input's own tensor (written in place): pointers without __restrict__;
    # left out of repr, which names kernels (`kernel_name` adds it), so other names stay
    aliased: bool = field(default=False, repr=False, kw_only=True)


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
    # the kernel's scalar arguments by parameter name (nvfuse/schedule/names.py): numel,
    # sizes[1:], then the "s" strides operand by operand
    scalars: dict[str, int]
    grid: int




def iteration_strides(t: torch.Tensor, shape: Sequence[int]) -> list[int]:
    """Strides of `t` in the iteration space `shape` (right-aligned): 0 along the dims it lacks
    or broadcasts (size 1 where `shape` is longer), its own stride along a dim of size 1 in
    `shape` -- the stride that dim has when it is longer (a batch of one), see `merge_dims`.
    A dim of size 0 is never a broadcast, whatever its stride (an expanded empty tensor has
    stride 0 there): read as one, a reduction would load its row-invariant element before an
    empty row, and the tensor has no element."""
    pad = len(shape) - t.dim()
    strides = [0] * pad
    for n, size, stride in zip(shape[pad:], t.shape, t.stride()):
        if size == 0:
            stride = stride or 1
        strides.append(stride if n == 1 or size != 1 else 0)
    return strides


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
    """Drop the trailing run of size-1 dims (all of them but the first when every dim is 1)
    and merge adjacent dims across which every operand is contiguous.  The other size-1 dims
    stay, with the operands' strides from `iteration_strides`, so that they merge or not as
    the same dim would at a longer size: a batch of one shares its signature with a larger
    batch (the module docstring)."""
    end = len(shape)
    while end > 1 and shape[end - 1] == 1:
        end -= 1
    sizes = list(shape[:end])
    strides = [s[:end] for s in operands]
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
                tensors: list[torch.Tensor], n_outputs: int, tail: bool = True) -> int:
    """Widest vector width every operand can use (see the module docstring), or 1.  `tail`:
    the lowering has a scalar tail for a rank-1 space (the concat lowering has none, so there
    the innermost size must divide too)."""
    if not sizes:
        return 1
    inner = sizes[-1]
    unit = [i for i, c in enumerate(classes) if c[-1] == "1"]
    # an output broadcast along the inner dim takes one store per row (lane 0's) when a
    # thread's lanes stay in one row (rank > 1); on a rank-1 space it is a single element
    if any(c[-1] == "s" for c in classes) or any(
            c[-1] != "1" and (c[-1] != "0" or len(sizes) == 1) for c in classes[-n_outputs:]):
        return 1
    widest = max(tensors[i].element_size() for i in unit)
    lanes = VECTOR_BYTES // widest
    while lanes > 1:
        if (tail and len(sizes) == 1 or inner % lanes == 0) and all(
            tensors[i].data_ptr() % (lanes * tensors[i].element_size()) == 0
            and all(s % lanes == 0 for s, n in zip(strides[i][:-1], sizes) if n != 1)
            for i in unit
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
    aligned = [iteration_strides(t, shape) for t in tensors]
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
        arch, aliased=any(o is i for o in outputs for i in inputs))
    per_block = BLOCK * lanes
    return PointwiseLaunch(
        signature, PointwiseParams(BLOCK, lanes, index), numel, tuple(sizes),
        size_scalars(numel, sizes) | operand_strides(ir, strides, classes),
        grid=max(1, -(-numel // per_block)))


def size_scalars(numel: int, sizes: Sequence[int]) -> dict[str, int]:
    """numel and the merged sizes but the outermost (numel implies it), by name."""
    return {names.NUMEL: numel} | {names.size(d): n for d, n in enumerate(sizes) if d}


def operand_strides(ir: FusionIR, strides: Sequence[Sequence[int]],
                    classes: Sequence[str]) -> dict[str, int]:
    """The "s" strides of the inputs, then the outputs, by name."""
    operands = [*(t.name for t in ir.inputs), *(t.name for t in ir.outputs)]
    return {name: value for t, st, c in zip(operands, strides, classes)
            for name, value in names.general_strides(t, c, st).items()}
