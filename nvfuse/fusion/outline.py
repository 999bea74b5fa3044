"""Outlining: a GraphModule and its fusion groups -> the GraphModule with each group replaced by
a `fused_<k>` submodule call, every submodule's nodes in one fixed order.

`outline_groups(gm, groups)` is torch's `fuse_by_partitions` (groups ordered by their first
node, each submodule returning a tuple) followed by `_normalize`, which puts each submodule
in the order later stages rely on: its computing nodes in their order in `gm`, each input
(placeholder) just before its first use (the call's arguments follow them), its outputs in
node order.  torch 2.13 builds submodules that way already; earlier releases order
a group's nodes breadth first, which would renumber the values, inputs and outputs of the
generated kernels (its source) by torch version.
"""

from __future__ import annotations

import operator

from torch import fx
from torch.fx.node import map_arg
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions


def outline_groups(gm: fx.GraphModule, groups: list[set[fx.Node]],
                   prefix: str) -> tuple[fx.GraphModule, list[str]]:
    """Replace each group by a submodule call (see the module docstring); returns the new
    module and the submodule names in graph order.  `gm` is changed in place (torch's
    utility works that way); callers pass a copy."""
    position = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    ordered = sorted(groups, key=lambda g: min(position[n.name] for n in g))
    fused = fuse_by_partitions(
        gm, [dict.fromkeys(sorted(g, key=lambda n: position[n.name])) for g in ordered],
        prefix=prefix, always_return_tuple=True)
    calls = [n for n in fused.graph.nodes
             if n.op == "call_module" and str(n.target).startswith(prefix)]
    for call in calls:
        _normalize(fused, call, position)
    fused.recompile()
    return fused, [str(c.target) for c in calls]


def _normalize(fused: fx.GraphModule, call: fx.Node, position: dict[str, int]) -> None:
    sub = getattr(fused, str(call.target))
    graph = sub.graph
    nodes = list(graph.nodes)
    output = nodes[-1]
    placeholders = [n for n in nodes if n.op == "placeholder"]
    body = sorted((n for n in nodes if n.op not in ("placeholder", "output")),
                  key=lambda n: position.get(n.name, -1))
    sequence: dict[fx.Node, None] = {}  # each input just before its first user, as torch does
    for node in body:
        map_arg((node.args, node.kwargs),
                lambda a: sequence.setdefault(a, None) if a.op == "placeholder" else None)
        sequence[node] = None
    order = [p for p in placeholders if p not in sequence] + list(sequence)
    inputs = [n for n in order if n.op == "placeholder"]
    results = list(output.args[0])
    outputs = sorted(results, key=body.index)
    if order == nodes[:-1] and outputs == results:
        return
    after = output
    for node in reversed(order):
        after.prepend(node)
        after = node
    output.args = (tuple(outputs),)
    graph.lint()
    sub.recompile()
    arg_of = dict(zip(placeholders, call.args))
    call.args = tuple(arg_of[p] for p in inputs)
    index = {results.index(o): i for i, o in enumerate(outputs)}
    for user in list(call.users):
        if user.target is operator.getitem and isinstance(user.args[1], int):
            user.args = (call, index[user.args[1]])
    if "val" in call.meta and isinstance(call.meta["val"], tuple):
        call.meta["val"] = tuple(call.meta["val"][results.index(o)] for o in outputs)
