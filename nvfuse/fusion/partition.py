"""Partition: graph IR -> graph IR whose fusible regions are `call_module` nodes.

Input: an annotated aten GraphModule (every node has meta["val"]).  Output: a new GraphModule
in which every maximal acyclic group of supported nodes is replaced by a call to a submodule
named `fused_<k>` (a GraphModule of the group's nodes that returns a tuple), plus the list of
those names.  Unsupported nodes stay as they are and run eagerly between the groups.

Grouping is `nvfuse.fusion.vertical.propose_groups` (maximal, cycle-free merging along data
edges, never horizontal: torch's `CapabilityBasedPartitioner` where it can skip horizontal
fusion, else nvfuse's own version of the same walk); nvfuse only answers "can this node be
fused?" (`FusionSupport`): an op the op table lowers, on tensors of supported dtypes on one
device kind, whose output has the broadcast shape of its tensor operands (true pointwise) or is
a reduction over some dims of its one operand (the op table says which: `Builder.reduce_axes`
after a dry run, negative and right-aligned), with literal (not computed) scalar arguments.

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

Before grouping, a reduction over leading dims gets its own copy of a pointwise operand it
would otherwise share with a reduction over other dims (nvfuse/fusion/rematerialize.py: layer
norm's weight and bias gradients recompute `g * xhat` from x and g instead of reading it in
float32 from the input gradient's kernel).

A 0-dim CPU value a device group would hand out (an optimizer's `step + 1`) is left to the
host with what it is computed from (`_host_scalars_left_out`); a 0-dim value written back into
an input from a larger group becomes a group of its own (`_written_scalars_apart`), so it can be
written in place.

View ops never join a group: the passes move the views that feed fusible work down to values
no group computes, where a view is only the strides through which the group reads its input
(nvfuse/graph/views.py; it also turns most keepdim=False reductions into keepdim=True ones
squeezed after the group).

No horizontal fusion, with one exception: the two halves of max.dim / min.dim (an amax and an
argmax of the same operand over the same dims, nvfuse/frontend/norms.py) join one group when
no path through other nodes links them, since one pair reduction computes both
(`_merge_value_index_pairs`).

Concatenations (cat / stack / constant pad / slice backwards: nvfuse.fusion.concat) are fusible
though their result is not a broadcast.  Their pieces, and the members used only by pieces,
live at the pieces' shapes and stay out of the iteration space; everything else, the
concatenation's result included, must share one space.  A concatenation is left eager when
that fails, in a reduction group, when one of its pieces' group ancestors could not be
recomputed inside a piece (integer division, random draws), or when it concatenates another
concatenation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx
from torch.fx.passes.operator_support import OperatorSupport

from nvfuse import dtypes
from nvfuse.fusion import concat
from nvfuse.fusion.build import lower_node
from nvfuse.fusion.builder import Builder, Unsupported
from nvfuse.fusion.ir import dropped_shape, keepdim_shape, reduced_positions
from nvfuse.fusion.outline import outline_groups
from nvfuse.fusion.rematerialize import rematerialize_leading_reductions
from nvfuse.fusion.vertical import propose_groups
from nvfuse.fusion import optable

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
    if concat.is_concat(node.target):
        return concat.why_unfusible(node)
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
    # a 0-dim CPU tensor is a scalar beside tensors of any device, as in eager (the executor
    # copies it to the kernel's device: nvfuse.runtime.devices)
    placed = {t.device.type for t in tensors if not (t.dim() == 0 and t.device.type == "cpu")}
    if len(placed | {out.device.type}) > 1:
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
        if other:  # the others, and what they feed here, go to a later round's groups
            later, stack = set(other), list(other)
            while stack:
                for u in stack.pop().users:
                    if u in members and u not in later:
                        later.add(u)
                        stack.append(u)
            return (f"reductions over dims {list(first)} and {list(ks[other[0]])}",
                    [n for n in nodes if n in later])
        for n in reductions:
            val, operand = n.meta["val"], n.all_input_nodes[0].meta["val"]
            if (val.dim() < operand.dim() and any(u in members for u in n.users)
                    and not _leading(ks[n], operand.dim())):
                return "a keepdim=False reduction feeds the group", [n]

    cats = [n for n in nodes if concat.is_concat(n.target)]
    pieces: set[fx.Node] = set()
    if cats:
        found = _concat_problem(nodes, cats, bool(reductions))
        if isinstance(found, tuple):
            return found
        pieces = found
    space = _space(nodes, ks, pieces)
    if space is None:
        # Groups joined only through a shared operand can break this ((1,4)+(3,1) and
        # (1,4)+(5,1)): a kernel has a single iteration space.
        return "no single iteration space", reductions + cats
    for n in reductions:
        operand = n.all_input_nodes[0].meta["val"].shape
        padded = (1,) * max(0, len(space) - len(operand)) + tuple(operand)
        if any(padded[d] != space[d] for d in reduced_positions(ks[n], len(space))):
            return f"{n.name} reduces a value that broadcasts along the reduced dims", [n]
    return None


def _space(nodes: Sequence[fx.Node], ks: dict[fx.Node, tuple[int, ...]],
           pieces: frozenset[fx.Node] | set[fx.Node] = frozenset()) -> torch.Size | None:
    """The group's iteration space: the broadcast of its values' shapes (a reduction's result
    taken as its keepdim shape) and its operands' shapes; None when they do not broadcast.
    A concatenation's pieces (and what only they use) live at their own shapes."""
    def shape(n: fx.Node) -> torch.Size:
        val = n.meta["val"]
        if ks.get(n):
            operand = n.all_input_nodes[0].meta["val"]
            return torch.Size(keepdim_shape(tuple(operand.shape), ks[n]))
        return val.shape

    shapes = [shape(n) for n in nodes if n not in pieces] + [
        a.meta["val"].shape for n in nodes
        if n not in pieces and not concat.is_concat(n.target)
        for a in n.all_input_nodes if isinstance(a.meta.get("val"), torch.Tensor)]
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return None


def _concat_problem(nodes: Sequence[fx.Node], cats: list[fx.Node],
                    reduces: bool) -> tuple[str, list[fx.Node]] | set[fx.Node]:
    """For a group with concatenations: a reason and the ones to leave eager, or the group's
    piece-only nodes (used, through members, only as pieces of concatenations).  The lowering
    recomputes every group ancestor of a piece at the piece's coordinates, so those ancestors
    must be safe there (nvfuse.fusion.concat) and hold no other concatenation."""
    if reduces:
        return "a concatenation in a reduction group", cats
    members = set(nodes)
    order = {n: i for i, n in enumerate(cats[0].graph.nodes)}
    pieces: set[fx.Node] = set()
    for n in sorted(nodes, key=order.__getitem__, reverse=True):
        if n not in cats and n.users and all(
                u in members and (u in cats or u in pieces) for u in n.users):
            pieces.add(n)
    checked: dict[fx.Node, str | None] = {}
    for cat in cats:
        stack = [a for a in cat.all_input_nodes if a in members]
        seen: set[fx.Node] = set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in cats:
                return "a concatenation of a concatenation", [cat]
            if n not in checked:
                checked[n] = _piece_problem(n)
            if checked[n] is not None:
                return str(checked[n]), [cat]
            stack += [a for a in n.all_input_nodes if a in members]
    return pieces


def _piece_problem(n: fx.Node) -> str | None:
    """Why `n` cannot be recomputed inside a piece (lowered on a scratch builder), or None."""
    b = Builder("probe")  # fusible nodes: every operand is a tensor
    env = {a: b.load(dtypes.from_torch(a.meta["val"].dtype), a.meta["val"].dim())
           for a in n.all_input_nodes}
    try:
        lower_node(b, n, env)
    except Unsupported as e:
        return f"op table: {e}"
    return concat.piece_problem(b)


def _merge_siblings(groups: list[set[fx.Node]], known: dict[fx.Node, tuple[int, ...]],
                    gm: fx.GraphModule) -> list[set[fx.Node]]:
    """Merge valid reduction groups that read a common value from outside, reduce the same
    dims over the same iteration space and have no path between them (so the merged group
    stays acyclic), until none merge: var_mean's var and mean, a bias gradient `g.sum(0)` next
    to a weight gradient `(g * x).sum(0)` -- one kernel reads the shared input once."""
    merged = list(groups)
    i = 0
    while i < len(merged):
        j = next((j for j in range(i + 1, len(merged))
                  if _siblings(merged[i], merged[j], known) and _acyclic(
                      gm, [merged[i] | merged[j], *merged[:i], *merged[i + 1:j],
                           *merged[j + 1:]])), None)
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


_PAIRS = {"argmax": "amax", "argmin": "amin"}


def _op_name(node: fx.Node) -> str:
    return getattr(node.target, "_opname", "") if node.op == "call_function" else ""


def _merge_value_index_pairs(partitions: list[Any]) -> list[Any]:
    """Merge the group of each argmax (argmin) with the group of an amax (amin) of the same
    operand (or of the operand's source, when it is a conversion) and result shape, unless a
    path through nodes of neither links them (merging would make a cycle).  Partitions are
    torch's `Partition`s; the merged one keeps the first."""
    where = {n: i for i, p in enumerate(partitions) for n in p.nodes}
    for node in list(where):
        values_op = _PAIRS.get(_op_name(node))
        if values_op is None or not node.all_input_nodes:
            continue
        operand = node.all_input_nodes[0]
        if _op_name(operand) == "_to_copy" and operand.all_input_nodes:  # max.dim of bools
            operand = operand.all_input_nodes[0]
        for sibling in operand.users:
            a, b = where[node], where.get(sibling)
            if (b is None or a == b or _op_name(sibling) != values_op
                    or sibling.all_input_nodes[0] is not operand
                    or sibling.meta["val"].shape != node.meta["val"].shape
                    or _linked(partitions[a].nodes, partitions[b].nodes)):
                continue
            for n in partitions[b].nodes:
                partitions[a].add_node(n)
                where[n] = a
            partitions[b].nodes = {}
    return [p for p in partitions if p.nodes]


def _linked(a: dict[fx.Node, Any], b: dict[fx.Node, Any]) -> bool:
    """Whether a path leaves one node set through a node of neither and reaches the other."""
    for src, dst in ((a, b), (b, a)):
        stack = [u for n in src for u in n.users if u not in src and u not in dst]
        seen: set[fx.Node] = set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            for u in n.users:
                if u in dst:
                    return True
                if u not in src:
                    stack.append(u)
    return False


def _partition_round(gm: fx.GraphModule, taken: frozenset[fx.Node],
                     known: dict[fx.Node, tuple[int, ...]]) -> list[set[fx.Node]]:
    """One round of grouping over the nodes no earlier round took: torch's partitioner, then
    validation, leaving the reductions that break a rule out until every group is valid."""
    excluded = taken
    while True:
        # No horizontal fusion: independent nodes would share one iteration space for no saving.
        proposed = _merge_value_index_pairs(propose_groups(gm, FusionSupport(excluded)))
        problems = [_group_problem(list(p.nodes), known) for p in proposed]
        drop = {n for p in problems if p is not None for n in p[1]}
        if not drop:  # every invalid group has only pointwise trouble: it stays eager
            break
        for problem in problems:  # explain reports why these run eagerly
            if problem is None:
                continue
            for n in problem[1]:
                n.meta[EAGER_REASON] = problem[0]
        excluded |= drop
    return [set(p.nodes) for p, problem in zip(proposed, problems) if problem is None]


def _acyclic(gm: fx.GraphModule, groups: list[set[fx.Node]]) -> bool:
    """Whether the graph with each group contracted to one node has no cycle.  Each round's
    partitioner keeps its own groups acyclic, but sees earlier rounds' groups as loose nodes:
    a new group may reach an old one through one of its nodes and be reached from it through
    another."""
    owner = {n: i for i, g in enumerate(groups) for n in g}
    key = lambda n: ("g", owner[n]) if n in owner else ("n", n)
    succ: dict[Any, set[Any]] = {}
    for n in gm.graph.nodes:
        for u in n.users:
            if key(u) != key(n):
                succ.setdefault(key(n), set()).add(key(u))
    state: dict[Any, int] = {}  # 1 = on the DFS stack, 2 = finished
    for root in list(succ):
        if root in state:
            continue
        stack = [(root, iter(succ.get(root, ())))]
        state[root] = 1
        while stack:
            v, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[v] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return False
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, ()))))
    return True


def _host_scalars_left_out(group: set[fx.Node]) -> set[fx.Node]:
    """`group` without the 0-dim CPU values it would hand out from a device kernel, and the
    group members they are computed from (all 0-dim CPU values too: a device operand makes a
    device result).  A 0-dim CPU tensor joins a device group as a scalar (Adam's CPU `step`
    and its bias corrections), but a result the graph needs on the CPU (`step + 1`, copied
    back into the counter) would come back from the device: a device-to-host copy that
    waits for the kernel, per parameter.  Left out, it is a host op, and the group reads it
    as a scalar input like the counter itself."""
    def device(n: fx.Node) -> str | None:
        val = n.meta.get("val")
        return val.device.type if isinstance(val, torch.Tensor) else None

    def on_cpu(n: fx.Node) -> bool:
        return device(n) == "cpu" and n.meta["val"].dim() == 0

    if all(device(n) in ("cpu", None) for n in group):
        return group  # a CPU kernel (the interpreter): nothing comes back from a device
    out = {n for n in group if on_cpu(n) and any(u not in group for u in n.users)}
    stack = list(out)
    while stack:
        for a in stack.pop().all_input_nodes:
            if a in group and a not in out:
                out.add(a)
                stack.append(a)
    return group - out


def _written_scalars_apart(group: set[fx.Node]) -> list[set[fx.Node]]:
    """`group`, and apart from it as a group of their own the 0-dim values it computes that
    the graph writes back into an input (`copy_` into a placeholder: an optimizer's
    `step + 1`) with the 0-dim members they are computed from, when the group's other values
    are larger.  Inside the larger group the counter could not be written in place (every
    element reads it, nvfuse/fusion/inplace.py), so it would cost a copy per parameter; as
    its own 0-dim group it is written in place, before the update that reads its new value,
    and such groups of all parameters share one launch (horizontal fusion)."""
    def zero_dim(n: fx.Node) -> bool:
        val = n.meta.get("val")
        return isinstance(val, torch.Tensor) and val.dim() == 0

    def written_back(n: fx.Node) -> bool:
        return any(u.op == "call_function" and u.target is torch.ops.aten.copy_.default
                   and len(u.args) == 2 and u.args[1] is n and isinstance(u.args[0], fx.Node)
                   and u.args[0].op == "placeholder" for u in n.users)

    if all(zero_dim(n) for n in group):
        return [group]
    apart = {n for n in group if zero_dim(n) and written_back(n)}
    stack = list(apart)
    while stack:
        for a in stack.pop().all_input_nodes:
            if a in group and a not in apart:  # an operand of a 0-dim result is 0-dim
                apart.add(a)
                stack.append(a)
    if not apart or not all(zero_dim(n) for n in apart):
        return [group]
    return [group - apart, apart]


def _unshare_constants(gm: fx.GraphModule) -> None:
    """Give each user of a fusible one-element constant (a value computed from no tensor:
    `full((), v)` and what only reads such values) a copy of its own.  CSE makes one such
    chain for all of an optimizer's parameters (each lerp's weight `full((), 0.1)`, its
    `abs`, `where`...); shared, it would join the groups of all its users into one, with no
    single iteration space when their shapes differ, instead of a group per user.  A copy
    costs nothing: it is a few literal operations in each kernel."""
    constant: set[fx.Node] = set()
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if node.op == "call_function" and all(a in constant for a in node.all_input_nodes) \
                and isinstance(val, torch.Tensor) and val.numel() == 1 \
                and why_unfusible(node) is None:
            constant.add(node)
    for node in reversed(list(gm.graph.nodes)):  # users first: their copies' producers follow
        if node not in constant:
            continue
        for user in list(node.users)[1:]:
            with gm.graph.inserting_after(node):
                twin = gm.graph.call_function(node.target, node.args, dict(node.kwargs))
            twin.meta = dict(node.meta)
            user.replace_input_with(node, twin)


def _rematerialize(gm: fx.GraphModule) -> None:
    """nvfuse/fusion/rematerialize.py, with this module's answers memoized per node."""
    axes_of: dict[fx.Node, tuple[int, ...]] = {}
    fusible_of: dict[fx.Node, bool] = {}

    def axes(n: fx.Node) -> tuple[int, ...]:
        if n not in axes_of:
            axes_of[n] = reduce_axes(n) if fusible(n) else ()
        return axes_of[n]

    def fusible(n: fx.Node) -> bool:
        if n not in fusible_of:
            fusible_of[n] = n.op == "call_function" and why_unfusible(n) is None
        return fusible_of[n]

    rematerialize_leading_reductions(gm, axes, fusible)


def partition(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """Return a copy of `gm` whose fusible regions are `fused_<k>` submodule calls, and the
    submodule names in graph order.  `gm` itself is not changed."""
    gm = fx.GraphModule(gm, copy.deepcopy(gm.graph))  # graph copy: meta and codegen kept
    _unshare_constants(gm)
    _rematerialize(gm)
    known: dict[fx.Node, tuple[int, ...]] = {}
    groups: list[set[fx.Node]] = []
    taken: set[fx.Node] = set()
    while True:  # later rounds group what earlier ones left out (a second reduction's dims)
        found = [g for g in _partition_round(gm, frozenset(taken), known)
                 if _acyclic(gm, [*groups, g])]
        for g in found:
            if _acyclic(gm, [*groups, g]):
                groups.append(g)
                taken |= g
        if not found:
            break
    groups = _merge_siblings(groups, known, gm)
    groups = [g for g in (_host_scalars_left_out(g) for g in groups) if g]
    groups = [part for g in groups for part in _written_scalars_apart(g)]
    taken = set().union(*groups) if groups else set()
    for n in taken:  # grouped after all: explain must not report them eager
        n.meta.pop(EAGER_REASON, None)
    if not groups:
        return gm, []
    return outline_groups(gm, groups, FUSED_PREFIX)
