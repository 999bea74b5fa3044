"""Vertical grouping: an aten GraphModule and a node predicate -> proposed fusion groups.

`propose_groups(gm, support)` returns torch `Partition`s (their `.nodes` dicts are what the
partition pass reads): maximal groups of supported nodes merged only along data edges
(producer with its direct users' groups), never two independent groups (no horizontal
fusion), never a merge that would make a cycle in the graph with each group contracted to one
node.

torch's `CapabilityBasedPartitioner` does exactly this when asked with
`skip_horizontal_fusion=True`; torch releases before that argument existed (2.9 - 2.12) can
only fuse horizontally as well, which changes which groups form.  There nvfuse uses its own
version of the same walk (`vertical_groups`), so every supported torch gives the same groups:
nodes in reverse graph order; a supported node not yet grouped starts a group, which then
absorbs, one after another in the order of the node's users, the group of each grouped user
unless the union would close a cycle; a merge keeps the larger group's id (the first on a
tie), so the groups come out in the same order as torch's.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner, Partition
from torch.fx.passes.operator_support import OperatorSupportBase


def _torch_skips_horizontal() -> bool:
    try:
        params = inspect.signature(CapabilityBasedPartitioner.__init__).parameters
    except (TypeError, ValueError):
        return False
    return "skip_horizontal_fusion" in params


TORCH_SKIPS_HORIZONTAL = _torch_skips_horizontal()


def propose_groups(gm: fx.GraphModule, support: OperatorSupportBase) -> list[Any]:
    """The vertical groups of `gm`'s supported nodes (see the module docstring)."""
    if TORCH_SKIPS_HORIZONTAL:
        partitioner = CapabilityBasedPartitioner(
            gm, support, allows_single_node_partition=True, skip_horizontal_fusion=True)
        return list(partitioner.propose_partitions())
    return vertical_groups(gm, support)


def vertical_groups(gm: fx.GraphModule, support: OperatorSupportBase) -> list[Any]:
    """nvfuse's own walk (used where torch's partitioner cannot skip horizontal fusion)."""
    nodes = list(gm.graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    submodules = dict(gm.named_modules())
    members: dict[int, set[fx.Node]] = {}  # group id -> nodes; ids grow as groups start
    owner: dict[fx.Node, int] = {}
    lowest: dict[int, int] = {}  # group id -> smallest graph position among its nodes
    next_id = 0
    for node in reversed(nodes):
        if node in owner or not support.is_node_supported(submodules, node):
            continue
        gid, next_id = next_id, next_id + 1
        members[gid], owner[node], lowest[gid] = {node}, gid, pos[node]
        candidates = list(dict.fromkeys(owner[u] for u in node.users if u in owner))
        for other in candidates:
            if other == gid or not _can_merge(members[gid] | members[other], owner, members,
                                             lowest, pos):
                continue
            keep, drop = (other, gid) if len(members[gid]) < len(members[other]) else (gid, other)
            for n in members[drop]:
                owner[n] = keep
            members[keep] |= members.pop(drop)
            lowest[keep] = min(lowest[keep], lowest.pop(drop))
            gid = keep
    out = []
    for gid in sorted(members):
        part = Partition(id=gid)
        for n in sorted(members[gid], key=pos.__getitem__):
            part.add_node(n)
        out.append(part)
    return out


def _can_merge(merged: set[fx.Node], owner: dict[fx.Node, int], members: dict[int, set[fx.Node]],
               lowest: dict[int, int], pos: dict[fx.Node, int]) -> bool:
    """Whether no path leaves `merged` and comes back, other groups contracted to one node.
    A path back must re-enter at or before the merged set's last node, so nodes (and groups
    starting) after it need not be followed."""
    limit = max(pos[n] for n in merged)
    stack = [u for n in merged for u in n.users if u not in merged]
    seen_nodes: set[fx.Node] = set()
    seen_groups: set[int] = set()
    while stack:
        n = stack.pop()
        if n in merged:
            return False
        gid = owner.get(n)
        if gid is not None:
            if gid in seen_groups:
                continue
            seen_groups.add(gid)
            if lowest[gid] <= limit:
                stack.extend(u for m in members[gid] for u in m.users)
        elif n not in seen_nodes:
            seen_nodes.add(n)
            if pos[n] <= limit:
                stack.extend(n.users)
    return True
