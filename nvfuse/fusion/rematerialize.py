"""Recompute a leading-dim reduction's pointwise operand instead of sharing it with a reduction
over other dims (a partition step, before grouping).

Input: a partitioner's working GraphModule (every node has meta["val"]), and the partitioner's
two answers per node: `axes(node)` (the dims a fusible reduction reduces, negative and
right-aligned; () for pointwise or unfusible nodes) and `fusible(node)`.  Effect: the graph is
rewritten in place; the results are unchanged (only pure, deterministic nodes are copied).

Why: a reduction over leading dims that keeps the innermost one (a weight or bias gradient,
`sum(g * xhat, 0)`) and a reduction over the innermost dims (the row means of the input
gradient) cannot share a kernel: they land in two groups.  When their operands share
pointwise work (layer norm's backward: `g` in float32 and `xhat = (x - mean) * rstd` feed
both), the shared values are computed by one group and written out, full-size and in float32,
for the other to read: at hidden 4096 the float32 `g * xhat` and `g` cost 4 x 134 MB of
traffic against bfloat16 inputs of 2 x 67 MB.  Giving the leading-dim reduction its own copy
of that pointwise cone lets its group read what the cone reads (x, g and the per-row
statistics), and lets sibling gradients that now share only inputs merge into one kernel.

Rule: for a fusible reduction R whose reduced dims exclude the innermost dim, its operand's
pointwise cone (fusible, pure, non-reducing ancestors, at most MAX_CONE nodes) is copied for R
when a node of the cone also feeds, through pointwise nodes, a reduction over other dims.  A
cone shared only with pointwise users or graph outputs stays shared: there the single group
that computes both (a GELU backward with its bias gradient) already reads the inputs once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import fx

MAX_CONE = 64  # a bigger cone is left shared: copies would grow the graph for little gain

Axes = Callable[[fx.Node], tuple[int, ...]]
Fusible = Callable[[fx.Node], bool]


def rematerialize_leading_reductions(gm: fx.GraphModule, axes: Axes, fusible: Fusible) -> int:
    """Apply the rule of the module docstring to every reduction of `gm`; the number of
    reductions that got their own cone."""
    copied = 0
    for node in list(gm.graph.nodes):
        reduced = axes(node) if node.op == "call_function" else ()
        if not reduced or -1 in reduced or not node.args:
            continue
        operand = node.args[0]
        if not isinstance(operand, fx.Node):
            continue
        cone = _pointwise_cone(operand, axes, fusible)
        if not cone or len(cone) > MAX_CONE:
            continue
        if not any(_feeds_other_reduction(c, reduced, cone | {node}, axes, fusible)
                   for c in cone):
            continue
        _copy_cone_for(gm, node, operand, cone)
        _erase_unused(gm, cone)
        copied += 1
    if copied:
        gm.recompile()
    return copied


def _erase_unused(gm: fx.GraphModule, cone: set[fx.Node]) -> None:
    """Erase the cone's originals that only the copied-from reduction used (all pure), users
    first; nothing else (the graph's own dead-code rules keep unused random draws)."""
    for n in reversed([n for n in gm.graph.nodes if n in cone]):
        if not n.users:
            gm.graph.erase_node(n)


def _pointwise_cone(operand: fx.Node, axes: Axes, fusible: Fusible) -> set[fx.Node]:
    """`operand` and its ancestors reached through fusible, pure, pointwise nodes."""
    cone: set[fx.Node] = set()
    stack = [operand]
    while stack:
        n = stack.pop()
        if n in cone or not _pointwise(n, axes, fusible):
            continue
        cone.add(n)
        if len(cone) > MAX_CONE:
            break
        stack.extend(n.all_input_nodes)
    return cone


def _pointwise(n: fx.Node, axes: Axes, fusible: Fusible) -> bool:
    return n.op == "call_function" and _pure(n) and fusible(n) and not axes(n)


def _pure(n: fx.Node) -> bool:
    """An aten op that writes nothing and draws no random numbers: copying it is free of
    effects (a copied dropout would draw a second mask)."""
    op = n.target
    if not isinstance(op, torch._ops.OpOverload):
        return False
    return not op._schema.is_mutable and torch.Tag.nondeterministic_seeded not in op.tags


def _feeds_other_reduction(start: fx.Node, reduced: tuple[int, ...], skip: set[fx.Node],
                           axes: Axes, fusible: Fusible) -> bool:
    """Whether a user of `start` outside `skip` leads, through fusible pointwise nodes, to a
    fusible reduction over dims other than `reduced`."""
    seen: set[fx.Node] = set()
    stack = [u for u in start.users if u not in skip]
    while stack:
        n = stack.pop()
        if n in seen or n.op != "call_function" or not fusible(n):
            continue
        seen.add(n)
        other = axes(n)
        if other:
            if other != reduced:
                return True
            continue
        stack.extend(n.users)
    return False


def _copy_cone_for(gm: fx.GraphModule, reduction: fx.Node, operand: fx.Node,
                   cone: set[fx.Node]) -> None:
    """Copies of the cone's nodes, in graph order, inserted just before `reduction`, which
    then reads the copy of `operand`."""
    copies: dict[fx.Node, fx.Node] = {}
    order = [n for n in gm.graph.nodes if n in cone]
    for n in order:
        with gm.graph.inserting_before(reduction):
            twin = gm.graph.node_copy(n, lambda a: copies.get(a, a))
        twin.meta = dict(n.meta)
        copies[n] = twin
    reduction.replace_input_with(operand, copies[operand])
