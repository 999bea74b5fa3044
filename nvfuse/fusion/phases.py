"""Reduction phases: FusionIR -> the reductions grouped as a kernel computes them, in order.

Every reduction lowering (the row, warp-row and column kernels, both kernels of a split
reduction) walks this one list, so the groups are decided in one place:

- ARG: an argmax / argmin (`node`) with the max / min of the same operand (`partners`): one
  loop tracks the (value, index) pair (nvfuse/lower/argreduce.py);
- ONLINE: softmax's max (`node`) and sum of exp(x - max) (`partners[0]`) in one looped pass
  (nvfuse/lower/online_softmax.py); only where the schedule loops over the row (`online`);
- WELFORD: a REDUCE_M2 (`node`) with the float sums of the same operand (`partners`), which
  ride its loop (nvfuse/lower/welford.py);
- PLAIN: any other reduction (`node`), its own accumulator.

A phase comes at the position of its first member among the IR's nodes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, ancestors
from nvfuse.fusion.prims import ARG_REDUCTIONS, REDUCTIONS, Prim

P = Prim
VALUE_OF = {P.REDUCE_ARGMAX: P.REDUCE_MAX, P.REDUCE_ARGMIN: P.REDUCE_MIN}


class PhaseKind(enum.Enum):
    ARG = "arg"
    ONLINE = "online"
    WELFORD = "welford"
    PLAIN = "plain"


@dataclass(frozen=True)
class Phase:
    kind: PhaseKind
    node: int
    partners: tuple[int, ...] = ()

    @property
    def nodes(self) -> tuple[int, ...]:
        return (self.node, *self.partners)


def reduction_phases(ir: FusionIR, online: bool = True) -> list[Phase]:
    """The phases of `ir`'s reductions (module docstring); `online`: the schedule loops over
    the row (not persistent, not column), so softmax's pair may fuse."""
    phases: list[Phase] = []
    done: set[int] = set()
    for index, node in enumerate(ir.nodes):
        if node.op not in REDUCTIONS or index in done:
            continue
        arg = arg_partner(ir, index)
        if arg is not None:
            a = ir.nodes[arg]
            values = tuple(i for i, n in enumerate(ir.nodes) if i not in done
                           and n.op is VALUE_OF[a.op] and n.args == a.args)
            phase = Phase(PhaseKind.ARG, arg, values)
        elif online and (pair := online_partner(ir, index)) is not None:
            phase = Phase(PhaseKind.ONLINE, index, (pair,))
        elif (m2 := welford_partner(ir, index)) is not None:
            sums = tuple(i for i, n in enumerate(ir.nodes) if i not in done
                         and n.op is P.REDUCE_SUM and n.args == ir.nodes[m2].args
                         and n.dtype is ir.nodes[m2].dtype)
            phase = Phase(PhaseKind.WELFORD, m2, sums)
        else:
            phase = Phase(PhaseKind.PLAIN, index)
        phases.append(phase)
        done.update(phase.nodes)
    return phases


def arg_partner(ir: FusionIR, index: int) -> int | None:
    """The arg reduction lowered together with reduction `index`: itself when it is one, the
    argmax (argmin) of the same operand when `index` is a REDUCE_MAX (REDUCE_MIN), else None."""
    node = ir.nodes[index]
    if node.op in ARG_REDUCTIONS:
        return index
    return next((i for i, n in enumerate(ir.nodes) if n.op in ARG_REDUCTIONS
                 and VALUE_OF[n.op] is node.op and n.args == node.args), None)


def online_partner(ir: FusionIR, index: int) -> int | None:
    """The REDUCE_SUM of exp(a - M) for REDUCE_MAX node `index` (M = max(a)) of a float
    dtype, or None."""
    node = ir.nodes[index]
    if node.op is not P.REDUCE_MAX or node.dtype not in (DType.FLOAT32, DType.FLOAT64):
        return None
    for i in range(index + 1, len(ir.nodes)):
        s = ir.nodes[i]
        if s.op is not P.REDUCE_SUM or s.dtype is not node.dtype:
            continue
        e = ir.nodes[s.args[0]]
        if e.op is not P.EXP or e.dtype is not node.dtype:
            continue
        d = ir.nodes[e.args[0]]
        if d.op is P.SUB and d.dtype is node.dtype and d.args == (node.args[0], index):
            return i
    return None


def welford_partner(ir: FusionIR, index: int) -> int | None:
    """The REDUCE_M2 node lowered together with reduction `index`: itself when it is one, the
    M2 of the same operand when `index` is a float sum of it, else None."""
    node = ir.nodes[index]
    if node.op is P.REDUCE_M2:
        return index
    if node.op is not P.REDUCE_SUM or not node.dtype.is_float:
        return None
    return next((i for i, n in enumerate(ir.nodes) if n.op is P.REDUCE_M2
                 and n.args == node.args and n.dtype is node.dtype), None)


def prologue_outputs(ir: FusionIR) -> set[int]:
    """Indices of the full (not row-shaped) outputs that depend on no reduction (a GELU
    backward's gradient beside its bias gradient): a reduction kernel can store them from the
    first reduction's loop over the row, which loads their operands anyway."""
    reductions = {i for i, n in enumerate(ir.nodes) if n.op in REDUCTIONS}
    return {j for j, o in enumerate(ir.outputs)
            if not o.shape.is_row and not ancestors(ir.nodes, [o.value]) & reductions}


def plain_runs(ir: FusionIR, phases: list[Phase]) -> list[list[Phase]]:
    """`phases` in order, consecutive PLAIN phases whose operands depend on none of the run's
    reductions grouped (one loop over the row computes them all: layer-norm backward's dw and
    db read g once); every other phase alone."""
    runs: list[list[Phase]] = []
    for phase in phases:
        last = runs[-1] if runs else None
        if (phase.kind is PhaseKind.PLAIN and last is not None
                and last[0].kind is PhaseKind.PLAIN
                and not ancestors(ir.nodes, ir.nodes[phase.node].args)
                & {p.node for p in last}):
            last.append(phase)
        else:
            runs.append([phase])
    return runs
