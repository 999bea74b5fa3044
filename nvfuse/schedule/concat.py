"""Concat schedule: (FusionIR with a concatenation, tensors) -> (signature, params, launch args).

The pointwise schedule (nvfuse.schedule.pointwise) with three differences:
- The iteration space is the concatenation's shape (`layout`: the pieces' common shape, their
  extents summed along the cat dim d), broadcast with the inputs that are loaded plainly;
  inputs read only through PIECE_LOADs do not enter it (their shape is a piece's).
- Each (input, segment) pair read through PIECE_LOAD is one more operand, with the input's
  strides as placed in its piece (a stacked piece has stride 0 along d: it lacks the dim).
- Dim d keeps its own coordinate: it is never merged with a neighbour nor dropped when its size
  is 1, and its position after merging is in the signature (`cat_dim`).  When d is not the
  innermost merged dim, accesses are vectors as in the pointwise schedule (a thread's lanes
  then share their coordinate along d, so one segment); when it is, they are scalar (lanes
  would straddle segment boundaries).

Launch scalars: those of the pointwise schedule (numel, sizes[1:], the "s" strides of inputs and
outputs), then the "s" strides of the piece operands, then per segment the end of its range
along d (`cat_end{k}`), then per value segment the shift from the result's coordinate to the
piece's (`cat_shift{k}` = trimmed-before - start).  All sizes: a new size reuses the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, piece_operands
from nvfuse.fusion.prims import Prim
from nvfuse.schedule.pointwise import (
    BLOCK, INT32_LIMIT, PointwiseLaunch, PointwiseParams, PointwiseSignature, _iteration_order,
    _pick_lanes, aligned_strides, broadcast_shape, classify,
)


@dataclass(frozen=True)
class ConcatSignature(PointwiseSignature):
    """A pointwise signature plus the merged position of the cat dim and the stride classes
    of the piece operands (in `piece_operands` order)."""

    cat_dim: int = 0
    pieces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """The concatenation's shape for given input shapes, and its per-segment scalars."""

    shape: torch.Size
    ends: tuple[int, ...]
    shifts: tuple[int, ...]  # value segments only, in order


def layout(ir: FusionIR, shapes: Sequence[Sequence[int]]) -> Layout:
    """Raises RuntimeError when the pieces disagree off the cat dim (eager's cat raises too)
    or a negative pad trims more than a piece holds."""
    cat = ir.concat
    assert cat is not None
    d = cat.dim
    other: list[int] | None = None
    ends: list[int] = []
    shifts: list[int] = []
    start = 0
    for seg in cat.segments:
        if seg.length is not None:
            extent = seg.length
        else:
            rank = cat.ndim - 1 if seg.stacked else cat.ndim
            piece = list(broadcast_shape([shapes[i] for i in seg.shape_from]))
            piece = [1] * (rank - len(piece)) + piece
            if seg.stacked:
                piece.insert(d, 1)
            extent = 1 if seg.stacked else piece[d] - seg.trim[0] - seg.trim[1]
            if extent < 0:
                raise RuntimeError(f"a pad trims {seg.trim} from a piece of {piece[d]}")
            rest = piece[:d] + piece[d + 1:]
            if other is not None and rest != other:
                raise RuntimeError(f"concatenated pieces differ off dim {d}: {other}, {rest}")
            other = rest
            shifts.append(seg.trim[0] - start)
        start += extent
        ends.append(start)
    assert other is not None  # every concatenation has a value piece
    return Layout(torch.Size([*other[:d], start, *other[d:]]), tuple(ends), tuple(shifts))


def output_shapes(ir: FusionIR, shapes: Sequence[torch.Size]) -> list[torch.Size]:
    """Eager's shape of every output: the broadcast of its inputs and (when computed from it)
    the concatenation."""
    cat_shape = layout(ir, shapes).shape
    return [broadcast_shape([shapes[i] for i in out.shape_from]
                            + ([cat_shape] if out.from_concat else [])) for out in ir.outputs]


def plain_inputs(ir: FusionIR) -> set[int]:
    """The inputs read by LOAD nodes that an output needs (the others only through pieces)."""
    live: set[int] = set()
    stack = [o.value for o in ir.outputs]
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(ir.nodes[n].args)
    return {int(ir.nodes[n].attr) for n in live if ir.nodes[n].op is Prim.LOAD}  # type: ignore


def _piece_strides(t: torch.Tensor, stacked: bool, ndim: int, d: int) -> list[int]:
    strides = aligned_strides(t, [0] * (ndim - 1 if stacked else ndim))
    if stacked:
        strides.insert(d, 0)
    return strides


def merge_pinned(shape: Sequence[int], operands: list[list[int]],
                 pin: int) -> tuple[list[int], list[list[int]], int]:
    """`pointwise.merge_dims` that keeps dim `pin` whole: never dropped, never merged.
    Returns the sizes, the strides and the pinned dim's new position."""
    keep = [d for d, n in enumerate(shape) if n != 1 or d == pin]
    sizes = [shape[d] for d in keep]
    strides = [[s[d] for d in keep] for s in operands]
    p = keep.index(pin)
    d = len(sizes) - 1
    while d > 0:
        if d != p and d - 1 != p and all(s[d - 1] == s[d] * sizes[d] for s in strides):
            sizes[d] *= sizes[d - 1]
            del sizes[d - 1]
            for s in strides:
                del s[d - 1]
            if p > d:
                p -= 1
        d -= 1
    return sizes, strides, p


def plan_launch(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                arch: str) -> PointwiseLaunch:
    """Signature, schedule and arguments for running `ir` on these tensors."""
    cat = ir.concat
    assert cat is not None
    lay = layout(ir, [t.shape for t in inputs])
    plain = plain_inputs(ir)
    shape = broadcast_shape([lay.shape, *(inputs[i].shape for i in sorted(plain))])
    if len(shape) != cat.ndim:
        raise RuntimeError(f"inputs of rank above the concatenation's: {tuple(shape)}")
    aligned = [aligned_strides(t, shape) if k in plain else [0] * len(shape)
               for k, t in enumerate(inputs)] + [aligned_strides(t, shape) for t in outputs]
    pieces = piece_operands(ir)
    aligned += [_piece_strides(inputs[i], cat.segments[k].stacked, cat.ndim, cat.dim)
                for i, k in pieces]
    order = _iteration_order(list(shape), aligned[len(inputs):len(inputs) + len(outputs)])
    sizes, strides, pos = merge_pinned([shape[d] for d in order],
                                       [[s[d] for d in order] for s in aligned],
                                       order.index(cat.dim))
    classes = [classify(s) for s in strides]
    numel = math.prod(sizes)
    n_plain = len(inputs) + len(outputs)
    lanes = 1
    if pos != len(sizes) - 1:  # outputs last, as _pick_lanes expects
        n_in = len(inputs)
        order_ops = [*range(n_in), *range(n_plain, len(strides)), *range(n_in, n_plain)]
        lanes = _pick_lanes(sizes, [classes[k] for k in order_ops],
                            [strides[k] for k in order_ops],
                            [*inputs, *(inputs[i] for i, _ in pieces), *outputs], len(outputs))
    reach = [sum((n - 1) * abs(s) for n, s in zip(sizes, st)) for st in strides[:n_plain]]
    reach += [sum((n - 1) * abs(s) for n, s in zip(inputs[i].shape, inputs[i].stride()))
              for i, _ in pieces]  # a piece read stays inside its input
    fits32 = numel + BLOCK * lanes <= INT32_LIMIT and max(reach, default=0) <= INT32_LIMIT
    index = DType.INT32 if fits32 else DType.INT64
    signature = ConcatSignature(
        len(sizes), tuple(classes[:len(inputs)]), tuple(classes[len(inputs):n_plain]), lanes,
        index, arch, pos, tuple(classes[n_plain:]))
    general = [s for st, c in zip(strides, classes) for s, k in zip(st, c) if k == "s"]
    return PointwiseLaunch(
        signature, PointwiseParams(BLOCK, lanes, index), numel, tuple(sizes),
        (numel, *sizes[1:], *general, *lay.ends, *lay.shifts),
        grid=max(1, -(-numel // (BLOCK * lanes))))
