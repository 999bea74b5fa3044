"""Partition: graph IR -> graph IR whose fusible regions are `call_module` nodes.

Input: an annotated aten GraphModule (every node has meta["val"]).  Output: a new GraphModule
in which every maximal acyclic group of supported nodes is replaced by a call to a submodule
named `fused_<k>` (a GraphModule of the group's nodes that returns a tuple), plus the list of
those names.  Unsupported nodes stay as they are and run eagerly between the groups.

Grouping is torch's `CapabilityBasedPartitioner` (maximal, cycle-free merging along data edges);
nvfuse only answers "can this node be fused?" (`FusionSupport`): an op the op table lowers, on
tensors of supported dtypes on one device kind, whose output has the broadcast shape of its
tensor operands (true pointwise) or is a reduction over some dims of its one operand (the op
table says which: `Builder.reduce_axes` after a dry run, negative and right-aligned), with
literal (not computed) scalar arguments.

Each proposed group is then validated (`_group_problem`): one iteration space (reduction results
taken with their keepdim shapes), one set of reduced dims, every reduction's
operand spanning the whole iteration space along the reduced dims (a reduction of a value that
broadcasts there would combine copies), and results whose reduced dims are dropped
(keepdim=False) used only outside the group (inside it they would broadcast against the wrong
dims) unless the dropped dims are the operand's leading ones (which broadcast alike either
way).  The reduction nodes that break a rule are left to eager and the graph is partitioned
again, until every group is valid.  Valid reduction groups that only share an input
(var_mean's var and mean; sibling gradients) are then merged (`_merge_siblings`) when that
keeps one iteration space, one set of reduced dims and no path between them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupport
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions

from nvfuse import dtypes
from nvfuse.fusion.build import lower_node
from nvfuse.fusion.builder import Builder, Unsupported
from nvfuse.fusion.ir import dropped_shape, keepdim_shape, reduced_positions
from nvfuse.graph import optable

FUSED_PREFIX = "fused_"
EAGER_REASON = "nvfuse_eager_reason"  # node.meta key: why a fusible reduction was left eager


def _tensor(value: object) -> torch.Tensor | None:
    return value if isinstance(value, torch.Tensor) else None


class FusionSupport(OperatorSupport):
    """Answers whether one node may join a fusion group (see the module docstring); nodes in
    `excluded` (reductions a previous round found in an invalid group) never may."""

    def __init__(self, excluded: frozenset[fx.Node] = frozenset()) -> None:
        super().__init__()
        self.excluded = excluded

    def is_node_supported(self, submodules: object, node: fx.Node) -> bool:
        return (node.op == "call_function" and node not in self.excluded
                and why_unfusible(node) is None)


def why_unfusible(node: fx.Node) -> str | None:
    """None when `node` can be fused, else the reason (used by reports and explain)."""
    if not optable.has_lowering(node.target):
        return "no lowering in the op table"
    out = _tensor(node.meta.get("val"))
    if out is None:
        return "result is not a single tensor"
    if not dtypes.is_supported(out.dtype):
        return f"unsupported dtype {out.dtype}"
    operands = [_tensor(a.meta.get("val")) for a in node.all_input_nodes]
    if any(t is None for t in operands):
        return "an operand is not a tensor (a computed scalar)"
    tensors = [t for t in operands if t is not None]
    if any(not dtypes.is_supported(t.dtype) for t in tensors):
        return "an operand has an unsupported dtype"
    if len({t.device.type for t in tensors} | {out.device.type}) > 1:
        return "operands on different devices"
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors)) if tensors else ()
    except RuntimeError:
        return "operands do not broadcast"
    problem, axes = _dry_run(node, tensors)
    if problem is not None:
        return problem
    if axes:
        return _reduction_shape_problem(out, tensors, axes)
    if tuple(out.shape) != tuple(shape) and tensors:
        return f"not pointwise: result shape {tuple(out.shape)} != broadcast {tuple(shape)}"
    return None


def _reduction_shape_problem(out: torch.Tensor, tensors: list[torch.Tensor],
                             axes: tuple[int, ...]) -> str | None:
    """A reduction over dims `axes` of its first operand gives that operand's shape
    (softmax), or its shape with those dims kept as 1 or dropped.  Further operands (layer
    norm's weight and bias) must broadcast to the first one's shape without growing it: they
    only enter pointwise, and the group's checks see the first operand as the reduced one."""
    shape = tuple(tensors[0].shape)
    try:
        if tuple(torch.broadcast_shapes(*(t.shape for t in tensors))) != shape:
            return "a reduction whose further operands broadcast beyond the reduced one"
    except RuntimeError:
        return "a reduction whose operands do not broadcast"
    if len(reduced_positions(axes, len(shape))) != len(axes):
        return f"reduces dims {list(axes)} of a rank-{len(shape)} operand"
    if tuple(out.shape) in (shape, keepdim_shape(shape, axes), dropped_shape(shape, axes)):
        return None
    return f"reduction result shape {tuple(out.shape)} from {shape} over dims {list(axes)}"


def reduce_axes(node: fx.Node) -> tuple[int, ...]:
    """The dims node reduces, negative and right-aligned (() for a pointwise node or an
    unfusible one)."""
    tensors = [a.meta.get("val") for a in node.all_input_nodes]
    if node.op != "call_function" or not all(isinstance(t, torch.Tensor) for t in tensors):
        return ()
    return _dry_run(node, tensors)[1]  # type: ignore[arg-type]


def _group_problem(nodes: Sequence[fx.Node],
                   known: dict[fx.Node, tuple[int, ...]]) -> tuple[str, list[fx.Node]] | None:
    """None when the group can be one kernel, else the reason and the reduction nodes to leave
    to eager (see the module docstring).  Pointwise groups only need one iteration space."""
    members = set(nodes)
    for n in nodes:  # `known` memoizes the dry runs across rounds
        if n not in known:
            known[n] = reduce_axes(n)
    ks = {n: known[n] for n in nodes}
    reductions = [n for n in nodes if ks[n]]
    if reductions:
        first = ks[reductions[0]]
        other = [n for n in reductions if ks[n] != first]
        if other:
            return f"reductions over dims {list(first)} and {list(ks[other[0]])}", other
        for n in reductions:
            val, operand = n.meta["val"], n.all_input_nodes[0].meta["val"]
            if (val.dim() < operand.dim() and any(u in members for u in n.users)
                    and not _leading(ks[n], operand.dim())):
                return "a keepdim=False reduction feeds the group", [n]

    space = _space(nodes, ks)
    if space is None:
        # Groups joined only through a shared operand can break this ((1,4)+(3,1) and
        # (1,4)+(5,1)): a kernel has a single iteration space.
        return "no single iteration space", reductions
    for n in reductions:
        operand = n.all_input_nodes[0].meta["val"].shape
        padded = (1,) * max(0, len(space) - len(operand)) + tuple(operand)
        if any(padded[d] != space[d] for d in reduced_positions(ks[n], len(space))):
            return f"{n.name} reduces a value that broadcasts along the reduced dims", [n]
    return None


def _space(nodes: Sequence[fx.Node], ks: dict[fx.Node, tuple[int, ...]]) -> torch.Size | None:
    """The group's iteration space: the broadcast of its values' shapes (a reduction's result
    taken as its keepdim shape) and its operands' shapes; None when they do not broadcast."""
    def shape(n: fx.Node) -> torch.Size:
        val = n.meta["val"]
        if ks.get(n):
            operand = n.all_input_nodes[0].meta["val"]
            return torch.Size(keepdim_shape(tuple(operand.shape), ks[n]))
        return val.shape

    shapes = [shape(n) for n in nodes] + [
        a.meta["val"].shape for n in nodes for a in n.all_input_nodes
        if isinstance(a.meta.get("val"), torch.Tensor)]
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return None


def _merge_siblings(groups: list[set[fx.Node]],
                    known: dict[fx.Node, tuple[int, ...]]) -> list[set[fx.Node]]:
    """Merge valid reduction groups that read a common value from outside, reduce the same
    dims over the same iteration space and have no path between them (so the merged group
    stays acyclic), until none merge: var_mean's var and mean, a bias gradient `g.sum(0)` next
    to a weight gradient `(g * x).sum(0)` -- one kernel reads the shared input once."""
    merged = list(groups)
    i = 0
    while i < len(merged):
        j = next((j for j in range(i + 1, len(merged))
                  if _siblings(merged[i], merged[j], known)), None)
        if j is None:
            i += 1
            continue
        merged[i] = merged[i] | merged[j]
        del merged[j]
    return merged


def _siblings(a: set[fx.Node], b: set[fx.Node], known: dict[fx.Node, tuple[int, ...]]) -> bool:
    axes = {known[n] for n in a | b if known[n]}
    if len(axes) != 1 or not any(known[n] for n in a) or not any(known[n] for n in b):
        return False

    def reads(group: set[fx.Node]) -> set[fx.Node]:
        return {x for n in group for x in n.all_input_nodes if x not in group}

    if not reads(a) & reads(b) or _reaches(a, b) or _reaches(b, a):
        return False
    ks = {n: known[n] for n in a | b}
    space = _space(list(a), ks)
    return (space is not None and space == _space(list(b), ks)
            and _group_problem(list(a | b), known) is None)


def _reaches(a: set[fx.Node], b: set[fx.Node]) -> bool:
    """Whether some node of `b` depends on some node of `a`."""
    stack = [u for n in a for u in n.users if u not in a]
    seen: set[fx.Node] = set()
    while stack:
        n = stack.pop()
        if n in b:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(n.users)
    return False


def _leading(axes: tuple[int, ...], rank: int) -> bool:
    """Whether `axes` are the leading dims of a rank-`rank` operand: then dropping them
    broadcasts exactly like keeping them as size 1 (broadcasting aligns from the right), so a
    keepdim=False result may feed the group (a bias gradient's `sum(g, [0]) * scale`)."""
    return reduced_positions(axes, rank) == tuple(range(len(axes)))


def _dry_run(node: fx.Node, tensors: list[torch.Tensor]) -> tuple[str | None, tuple[int, ...]]:
    """Lower the node on a scratch builder: the op table is the judge of its arguments.
    Returns (the reason it cannot, or None; the dims it reduces, as `reduce_axes`)."""
    b = Builder("probe")
    env = {a: b.load(dtypes.from_torch(t.dtype), t.dim())
           for a, t in zip(node.all_input_nodes, tensors)}
    try:
        lower_node(b, node, env)
    except Unsupported as e:
        return f"op table: {e}", ()
    return None, b.reduce_axes


def partition(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """Return a copy of `gm` whose fusible regions are `fused_<k>` submodule calls, and the
    submodule names in graph order.  `gm` itself is not changed."""
    gm = fx.GraphModule(gm, copy.deepcopy(gm.graph))  # graph copy: meta and codegen kept
    excluded: frozenset[fx.Node] = frozenset()
    known: dict[fx.Node, tuple[int, ...]] = {}
    while True:
        # No horizontal fusion: independent nodes would share one iteration space for no saving.
        partitioner = CapabilityBasedPartitioner(
            gm, FusionSupport(excluded), allows_single_node_partition=True,
            skip_horizontal_fusion=True)
        proposed = partitioner.propose_partitions()
        problems = [_group_problem(list(p.nodes), known) for p in proposed]
        drop = {n for p in problems if p is not None for n in p[1]}
        if not drop:  # every invalid group has only pointwise trouble: it stays eager
            break
        for problem in problems:  # explain reports why these run eagerly
            for n in problem[1] if problem is not None else ():
                n.meta[EAGER_REASON] = problem[0]
        excluded |= drop
    groups = _merge_siblings(
        [set(p.nodes) for p, problem in zip(proposed, problems) if problem is None], known)
    if not groups:
        return gm, []
    position = {n: i for i, n in enumerate(gm.graph.nodes)}
    ordered = sorted(groups, key=lambda p: min(position[n] for n in p))
    fused = fuse_by_partitions(
        gm, [dict.fromkeys(sorted(p, key=position.__getitem__)) for p in ordered],
        prefix=FUSED_PREFIX, always_return_tuple=True,
    )
    names = [str(n.target) for n in fused.graph.nodes
             if n.op == "call_module" and str(n.target).startswith(FUSED_PREFIX)]
    return fused, names
