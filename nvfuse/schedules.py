"""The schedule registry: one entry per schedule kind, and the one place a kind is chosen.

Input: a fusion's IR and one call's tensors (and target arch).  Output: the launch of the first
entry whose `applies` holds, in `ENTRIES` order (`plan_launch`), refined into two kernels where
the SPLIT entry applies (`schedule`); and, for a built signature, its kind's lowering (`lower`).

    kind       applies                                        plan / lower
    CONCAT     the fusion concatenates or pads               schedule/concat.py, lower/pointwise
    POINTWISE  no reduction                                  schedule/pointwise.py, lower/pointwise
    COLUMN     reduction, kept dims innermost, no arg pair   schedule/reduction.py, lower/column
    WARP_ROW   reduction, rows of <= WARP_ROW_MAX elements   schedule/reduction.py, lower/warp
    ROW        any other reduction                           schedule/reduction.py, lower/reduction
    SPLIT      a ROW / COLUMN launch with few long rows      schedule/split.py, lower/split

A launch's scalars are a name -> value mapping whose names are those of the `kir.Param`s its
kernels declare (nvfuse/schedule/names.py spells them for both sides); the executor orders them
by each kernel's declared parameters once per prepared call (`kir.bind_scalars`).

Adding a schedule is adding an entry here (docs/adding.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from nvfuse.fusion.ir import FusionIR
from nvfuse.lower import kir
from nvfuse.lower.pointwise import lower_pointwise
from nvfuse.lower.reduction import lower_reduction
from nvfuse.lower.split import lower_split
from nvfuse.schedule import concat, pointwise, reduction, split
from nvfuse.schedule.kind import ScheduleKind

K = ScheduleKind


@dataclass(frozen=True)
class Call:
    """What a call offers the entries to decide and plan with; the reduction layout is
    computed once, on first use."""

    ir: FusionIR
    inputs: Sequence[torch.Tensor]
    outputs: Sequence[torch.Tensor]
    arch: str

    @cached_property
    def rows(self) -> reduction.RowLayout:
        return reduction.row_layout(self.ir, self.inputs, self.outputs)

    @cached_property
    def base(self) -> Any:
        """The one-kernel launch (what SPLIT refines)."""
        entry = next(e for e in ENTRIES if e.applies(self))
        return entry.plan(self)


@dataclass(frozen=True)
class Entry:
    kind: ScheduleKind
    applies: Callable[[Call], bool]
    plan: Callable[[Call], Any]             # -> PointwiseLaunch / ReductionLaunch
    lower: Callable[[FusionIR, Any, Any], kir.Kernel]  # (ir, signature, params) -> kernel IR


def _reduction(kind: ScheduleKind) -> Callable[[Call], Any]:
    return lambda c: reduction.plan_launch(c.ir, c.inputs, c.rows, c.arch, kind)


def _lower_reduction(ir: FusionIR, sig: Any, params: Any) -> kir.Kernel:
    return lower_reduction(ir, sig, params.block)


def _lower_pointwise(ir: FusionIR, sig: Any, params: Any) -> kir.Kernel:
    return lower_pointwise(ir, sig, params.block)


# The one-kernel kinds, in the order they are tried (the module docstring's table).  Plans look
# their schedule module up at call time, so tests may wrap a module's `plan_launch`.
ENTRIES: tuple[Entry, ...] = (
    Entry(K.CONCAT, lambda c: not c.ir.reduce_ndim and bool(c.ir.concats),
          lambda c: concat.plan_launch(c.ir, c.inputs, c.outputs, c.arch), _lower_pointwise),
    Entry(K.POINTWISE, lambda c: not c.ir.reduce_ndim,
          lambda c: pointwise.plan_launch(c.ir, c.inputs, c.outputs, c.arch), _lower_pointwise),
    Entry(K.COLUMN, lambda c: reduction.column_applies(c.ir, c.rows), _reduction(K.COLUMN),
          _lower_reduction),
    Entry(K.WARP_ROW, lambda c: reduction.warp_applies(c.rows), _reduction(K.WARP_ROW),
          _lower_reduction),
    Entry(K.ROW, lambda c: True, _reduction(K.ROW), _lower_reduction),
)

# SPLIT refines a planned one-kernel launch of these kinds (warp rows are short rows); its plan
# returns None where the one kernel stays (schedule/split.py: splittable fusions, few long rows).
SPLIT_OF = frozenset({K.ROW, K.COLUMN})
SPLIT = Entry(K.SPLIT, lambda c: c.base.signature.kind in SPLIT_OF,
              lambda c: split.plan_split(c.ir, c.base), lambda ir, sig, _: lower_split(ir, sig))
_LOWER = {e.kind: e.lower for e in (*ENTRIES, SPLIT)}


@dataclass(frozen=True)
class Launch:
    """One call's kernels in launch order as (signature, params, grid), their scalar arguments
    by parameter name (nvfuse/schedule/names.py; each stage takes the names its kernel
    declares, `kir.bind_scalars`, and the launcher adds `seed` where one is declared), and the
    workspaces (dtype, numel) a split reduction needs."""

    stages: tuple[tuple[Any, Any, int], ...]
    scalars: Mapping[str, int]
    workspaces: tuple[tuple[Any, int], ...] = ()


def plan_launch(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                arch: str) -> Any:
    """The one-kernel launch of the first entry that applies (RuntimeError / ValueError:
    shapes no schedule can run)."""
    return Call(ir, inputs, outputs, arch).base


def schedule(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
             arch: str) -> Launch:
    """`plan_launch`, as two kernels where a reduction splits (schedule/split.py decides)."""
    call = Call(ir, inputs, outputs, arch)
    two = SPLIT.plan(call) if SPLIT.applies(call) else None
    if two is not None:
        return Launch(two.stages, two.scalars, two.workspaces)
    one = call.base
    return Launch(((one.signature, one.params, one.grid),), one.scalars)


def lower(ir: FusionIR, sig: Any, params: Any) -> kir.Kernel:
    """The kernel IR of `ir` for `sig`, by its kind's lowering."""
    return _LOWER[sig.kind](ir, sig, params)
