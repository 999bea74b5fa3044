"""Concat schedule: (FusionIR with concatenations, tensors) -> (signature, params, launch scalars).

The pointwise schedule (nvfuse.schedule.pointwise) with three differences:
- The iteration space is the broadcast of the concatenations' shapes (`layout`: the pieces'
  common shape, their extents summed along the cat dim d) and of the inputs loaded plainly;
  inputs read only through PIECE_LOADs do not enter it (their shape is a piece's).
- Each (input, concatenation, segment) read through PIECE_LOAD is one more operand, with the
  input's strides as placed in its piece (a stacked piece has stride 0 along d: it lacks it).
- Each cat dim keeps its own coordinate: it is never merged with a neighbour nor dropped when
  its size is 1, and its position after merging is in the signature (`cat_dims`).  A
  concatenation whose result has extent 1 along its dim while the space is longer there
  (`cat([a, a[:0]]) + y`) broadcasts: its coordinate is 0 everywhere, which the signature
  records (`cat_broadcast`), and accesses are then scalar (its pieces do not vary along the
  dim their lanes would run on).  Accesses
  are vectors as in the pointwise schedule: a thread's lanes run along the innermost merged
  dim, so when that is a cat dim, the vector width also divides its segments' ends and shifts
  (lanes never straddle a segment, piece loads stay aligned); a size-dependent fact, like the
  width itself, and the signature holds the width.

Launch scalars (by name, nvfuse/schedule/names.py): those of the pointwise schedule (numel,
sizes[1:], the "s" strides of inputs and outputs), the "s" strides of the piece operands, and
per concatenation c: per segment the end of its range along d (`cat{c}_end{k}`), per value
segment the shift from the result's coordinate to the piece's (`cat{c}_shift{k}` =
trimmed-before - start).  All are sizes: a new size reuses the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import Concat, FusionIR, Segment, needed_nodes, piece_operands
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.shapes import layout
from nvfuse.schedule import names
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.pointwise import (
    BLOCK, INT32_LIMIT, PointwiseLaunch, PointwiseParams, PointwiseSignature, _iteration_order,
    _pick_lanes, aligned_strides, broadcast_shape, classify, operand_strides, size_scalars,
)


@dataclass(frozen=True)
class ConcatSignature(PointwiseSignature):
    """A pointwise signature plus the merged positions of the cat dims (per concatenation) and
    the stride classes of the piece operands (in `piece_operands` order)."""

    kind: ClassVar[ScheduleKind] = ScheduleKind.CONCAT
    cat_dims: tuple[int, ...] = ()
    pieces: tuple[str, ...] = ()
    cat_broadcast: tuple[int, ...] = ()  # the concatenations read at coordinate 0 (docstring)



def plain_inputs(ir: FusionIR) -> set[int]:
    """The inputs read by LOAD nodes that an output needs (the others only through pieces)."""
    live = needed_nodes(ir.nodes, ir.outputs)
    return {int(ir.nodes[n].attr) for n in live if ir.nodes[n].op is Prim.LOAD}  # type: ignore


def _piece_strides(t: torch.Tensor, seg: Segment, cat: Concat, rank: int) -> list[int]:
    """Strides of `t` placed in its piece, in the iteration space of rank `rank`."""
    strides = aligned_strides(t, [0] * (cat.ndim - 1 if seg.stacked else cat.ndim))
    if seg.stacked:
        strides.insert(cat.dim, 0)
    return [0] * (rank - cat.ndim) + strides


def merge_pinned(shape: Sequence[int], operands: list[list[int]],
                 pins: Sequence[int]) -> tuple[list[int], list[list[int]], list[int]]:
    """`pointwise.merge_dims` that keeps the dims `pins` whole: never dropped, never merged.
    Returns the sizes, the strides and the pinned dims' new positions."""
    keep = [d for d, n in enumerate(shape) if n != 1 or d in pins]
    sizes = [shape[d] for d in keep]
    strides = [[s[d] for d in keep] for s in operands]
    pos = [keep.index(p) for p in pins]
    d = len(sizes) - 1
    while d > 0:
        if d not in pos and d - 1 not in pos and all(s[d - 1] == s[d] * sizes[d]
                                                     for s in strides):
            sizes[d] *= sizes[d - 1]
            del sizes[d - 1]
            for s in strides:
                del s[d - 1]
            pos = [p - 1 if p > d else p for p in pos]
        d -= 1
    return sizes, strides, pos


def plan_launch(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                arch: str) -> PointwiseLaunch:
    """Signature, schedule and arguments for running `ir` on these tensors."""
    lays = [layout(c, [t.shape for t in inputs]) for c in ir.concats]
    plain = plain_inputs(ir)
    shape = broadcast_shape([*(lay.shape for lay in lays),
                             *(inputs[i].shape for i in sorted(plain))])
    rank = len(shape)
    aligned = [aligned_strides(t, shape) if k in plain else [0] * rank
               for k, t in enumerate(inputs)] + [aligned_strides(t, shape) for t in outputs]
    pieces = piece_operands(ir)
    aligned += [_piece_strides(inputs[i], ir.concats[c].segments[k], ir.concats[c], rank)
                for i, c, k in pieces]
    order = _iteration_order(list(shape), aligned[len(inputs):len(inputs) + len(outputs)])
    pins = [order.index(rank - c.ndim + c.dim) for c in ir.concats]
    sizes, strides, pos = merge_pinned([shape[d] for d in order],
                                       [[s[d] for d in order] for s in aligned], pins)
    classes = [classify(s) for s in strides]
    numel = math.prod(sizes)
    n_in, n_plain = len(inputs), len(inputs) + len(outputs)
    order_ops = [*range(n_in), *range(n_plain, len(strides)), *range(n_in, n_plain)]
    lanes = _pick_lanes(sizes, [classes[k] for k in order_ops],  # outputs last, as it expects
                        [strides[k] for k in order_ops],
                        [*inputs, *(inputs[i] for i, _, _ in pieces), *outputs], len(outputs),
                        tail=False)
    inner = [lay for lay, p in zip(lays, pos) if p == len(sizes) - 1]
    while lanes > 1 and any(x % lanes for lay in inner for x in (*lay.ends, *lay.shifts)):
        lanes //= 2  # a thread's lanes must stay in one segment, its loads aligned
    broadcast = tuple(c for c, (cat, lay) in enumerate(zip(ir.concats, lays))
                      if lay.shape[cat.dim] == 1 and shape[rank - cat.ndim + cat.dim] != 1)
    if broadcast:
        lanes = 1
    reach = [sum((n - 1) * abs(s) for n, s in zip(sizes, st)) for st in strides[:n_plain]]
    reach += [sum((n - 1) * abs(s) for n, s in zip(inputs[i].shape, inputs[i].stride()))
              for i, _, _ in pieces]  # a piece read stays inside its input
    fits32 = numel + BLOCK * lanes <= INT32_LIMIT and max(reach, default=0) <= INT32_LIMIT
    index = DType.INT32 if fits32 else DType.INT64
    signature = ConcatSignature(
        len(sizes), tuple(classes[:n_in]), tuple(classes[n_in:n_plain]), lanes, index, arch,
        tuple(pos), tuple(classes[n_plain:]), broadcast)
    scalars = size_scalars(numel, sizes) | operand_strides(ir, strides, classes)
    for (i, c, k), st, cls in zip(pieces, strides[n_plain:], classes[n_plain:]):
        scalars |= names.general_strides(names.piece(ir.inputs[i].name, c, k), cls, st)
    for c, (cat, lay) in enumerate(zip(ir.concats, lays)):
        scalars |= {names.cat_end(c, k): end for k, end in enumerate(lay.ends)}
        values = [k for k, seg in enumerate(cat.segments) if seg.length is None]
        scalars |= {names.cat_shift(c, k): x for k, x in zip(values, lay.shifts, strict=True)}
    return PointwiseLaunch(
        signature, PointwiseParams(BLOCK, lanes, index), numel, tuple(sizes), scalars,
        grid=max(1, -(-numel // (BLOCK * lanes))))
