"""Eager's output shapes of a fusion: (FusionIR, input shapes) -> one torch.Size per output.

The shape rules sit beside the fusion IR they read (`Output.shape_from`, `reduced_from`,
`from_concats`, the reduced dims), so the executor, every schedule and the fusion-IR
interpreter share them: an output has the broadcast of the shapes of the inputs it depends on,
of the concatenations it is computed from (`layout`) and, through a reduction, of those inputs
with the reduced dims set to 1 (dropped for a FULL_DROPPED output); a row output whose reduced
dims are dropped then drops them.  RuntimeError where the shapes do not broadcast, or pieces of
a concatenation disagree off its dim (eager raises too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nvfuse.fusion.ir import Concat, FusionIR, OutputShape, dropped_shape, keepdim_shape


def broadcast_shape(shapes: Sequence[Sequence[int]]) -> torch.Size:
    """torch's broadcasting of `shapes` (raises RuntimeError naming them when they don't).
    Plain Python: torch.broadcast_shapes costs ~45 us a call, too much for the launch path."""
    ndim = max((len(s) for s in shapes), default=0)
    result = [1] * ndim
    for shape in shapes:
        for d, n in enumerate(shape, ndim - len(shape)):
            if n != 1:
                if result[d] == 1:
                    result[d] = n
                elif result[d] != n:
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
    return torch.Size(result)


@dataclass(frozen=True)
class Layout:
    """A concatenation's shape for given input shapes, and its per-segment scalars."""

    shape: torch.Size
    ends: tuple[int, ...]
    shifts: tuple[int, ...]  # value segments only, in order


def layout(cat: Concat, shapes: Sequence[Sequence[int]]) -> Layout:
    """Raises RuntimeError when the pieces disagree off the cat dim (eager's cat raises too)
    or a negative pad trims more than a piece holds."""
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
            if seg.keep is not None:
                extent = seg.keep if seg.keep <= extent else -1
            if extent < 0:
                raise RuntimeError(f"cutting {seg.trim} (keeping {seg.keep}) from a piece of "
                                   f"{piece[d]}")
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
    """Eager's shape of every output of `ir` for inputs of these shapes (module docstring)."""
    axes = ir.reduce_axes if ir.reduce_ndim else ()
    cats = [layout(c, shapes).shape for c in ir.concats]
    result = []
    for out in ir.outputs:
        through = dropped_shape if out.shape is OutputShape.FULL_DROPPED else keepdim_shape
        shape = broadcast_shape([shapes[i] for i in out.shape_from]
                                + [cats[c] for c in out.from_concats]
                                + [torch.Size(through(tuple(shapes[i]), axes))
                                   for i in out.reduced_from])
        if out.shape is OutputShape.ROW_DROPPED:
            shape = torch.Size(dropped_shape(tuple(shape), axes))
        result.append(shape)
    return result
