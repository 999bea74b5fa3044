"""Horizontal bundling: independent fusion groups of a partitioned graph as one call.

Input: a partitioned GraphModule (nvfuse/fusion/partition.py: each group a `call_module` node
returning a tuple, read through `getitem`) and the names of its groups.  Output: the same graph
with each bundle of two or more groups replaced by one `call_module` node named `horizontal_<k>`
taking the members' arguments in member order and returning their outputs in member order; and
the bundles as (name, member names).  Whether members really share a launch is decided per call
(nvfuse/schedule/horizontal.py): a bundle only says that they may.

Which groups bundle.  Groups are taken in graph order; each joins the first open bundle it can,
else opens one.  A bundle sits where its first member was, so a group may join only when every
value it reads already exists there: each of its inputs comes from a node before the bundle
(a graph input, an attribute, an eager op, or a group or bundle placed earlier) -- never from a
member of the same bundle, so members are independent and no cycle can form.  Moving a group
up never moves it across a write: a node that mutates a tensor (functionalization's copy back
into an input, any op whose schema writes) closes every open bundle.  Every group's consumers
stay where they were, after the bundle.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

PREFIX = "horizontal_"
_PURE_MODULES = frozenset({"_operator", "operator", "math", "builtins"})


def bundle_groups(gm: fx.GraphModule, groups: Sequence[str]
                  ) -> list[tuple[str, tuple[str, ...]]]:
    """Bundle `gm`'s independent groups in place (the module docstring); the bundles made."""
    names = set(groups)
    bundles = _propose(gm.graph, names)
    made = []
    for k, members in enumerate(bundles):
        name = f"{PREFIX}{k}"
        targets = tuple(str(m.target) for m in members)
        gm.add_submodule(name, Bundle(gm, targets, [len(m.args) for m in members]))
        _rewrite(gm.graph, name, members)
        made.append((name, targets))
    if made:
        gm.graph.lint()
        gm.recompile()
    return made


class Bundle(torch.nn.Module):
    """A bundle as planned: calls its members (submodules of the graph) one by one.  The
    runtime replaces it by a HorizontalGroup (nvfuse/runtime/horizontal.py)."""

    def __init__(self, owner: fx.GraphModule, members: Sequence[str],
                 arities: Sequence[int]) -> None:
        super().__init__()
        self._owner = weakref.ref(owner)
        self.member_names = tuple(members)
        self.arities = tuple(arities)

    def forward(self, *inputs: Any) -> tuple[Any, ...]:
        owner = self._owner()
        assert owner is not None, "a bundle outlived its graph"
        results: list[Any] = []
        start = 0
        for name, arity in zip(self.member_names, self.arities):
            results += getattr(owner, name)(*inputs[start:start + arity])
            start += arity
        return tuple(results)


def _propose(graph: fx.Graph, names: set[str]) -> list[list[fx.Node]]:
    where: dict[fx.Node, int] = {}  # a node's position once bundles move their members up
    open_bundles: list[tuple[int, list[fx.Node]]] = []  # (position, members)
    closed: list[list[fx.Node]] = []
    for position, node in enumerate(graph.nodes):
        where[node] = position
        if node.op == "call_function" and node.target is operator.getitem:
            source = node.args[0]
            if isinstance(source, fx.Node):
                where[node] = where[source]
            continue
        if _writes(node):
            closed += [members for _, members in open_bundles]
            open_bundles = []
            continue
        if node.op != "call_module" or node.target not in names or not _only_getitems(node):
            continue
        ready = max((where[a] for a in node.all_input_nodes), default=-1)
        for at, members in open_bundles:
            if ready < at:
                members.append(node)
                where[node] = at
                break
        else:
            open_bundles.append((position, [node]))
    closed += [members for _, members in open_bundles]
    return [members for members in closed if len(members) > 1]


def _writes(node: fx.Node) -> bool:
    """Whether `node` may write a tensor (a barrier no group is moved across)."""
    if node.op == "call_module":
        return False  # fusion groups compute fresh outputs; other modules are not in plans
    if node.op != "call_function":
        return False
    schema = getattr(node.target, "_schema", None)
    if schema is not None:
        return bool(schema.is_mutable)
    # Python arithmetic on sizes and tuple indexing write nothing; anything else unknown might
    return getattr(node.target, "__module__", None) not in _PURE_MODULES


def _only_getitems(node: fx.Node) -> bool:
    return all(u.op == "call_function" and u.target is operator.getitem for u in node.users)


def _rewrite(graph: fx.Graph, name: str, members: list[fx.Node]) -> None:
    args = tuple(a for m in members for a in m.args)
    with graph.inserting_before(members[0]):
        bundle = graph.call_module(name, args)
    order = {n: i for i, n in enumerate(graph.nodes)}
    for a in dict.fromkeys(args):  # a tuple read may sit after the bundle: move it up
        if (isinstance(a, fx.Node) and a.op == "call_function" and a.target is operator.getitem
                and order[a] > order[bundle]):
            bundle.prepend(a)
    offset = 0
    after = bundle
    for m in members:
        count = _output_count(m)
        for user in list(m.users):
            index = user.args[1]
            assert isinstance(index, int)
            with graph.inserting_after(after):
                item = graph.call_function(operator.getitem, (bundle, offset + index))
            item.meta = dict(user.meta)
            after = item
            user.replace_all_uses_with(item)
            graph.erase_node(user)
        graph.erase_node(m)
        offset += count


def _output_count(node: fx.Node) -> int:
    """How many outputs group `node` returns (its traced value is a tuple)."""
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        return len(value)
    module = node.graph.owning_module
    sub = module.get_submodule(str(node.target)) if module is not None else None
    if isinstance(sub, fx.GraphModule):
        out = next(n for n in sub.graph.nodes if n.op == "output")
        result = out.args[0]
        if isinstance(result, (tuple, list)):
            return len(result)
    raise ValueError(f"horizontal bundling: cannot tell how many outputs {node.target} returns")
