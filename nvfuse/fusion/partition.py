"""Partition: graph IR -> graph IR whose fusible regions are `call_module` nodes.

Input: an annotated aten GraphModule (every node has meta["val"]).  Output: a new GraphModule
in which every maximal acyclic group of supported nodes is replaced by a call to a submodule
named `fused_<k>` (a GraphModule of the group's nodes that returns a tuple), plus the list of
those names.  Unsupported nodes stay as they are and run eagerly between the groups.

Grouping is torch's `CapabilityBasedPartitioner` (maximal, cycle-free merging along data edges);
nvfuse only answers "can this node be fused?" (`FusionSupport`): an op the op table lowers, on
tensors of supported dtypes on one device kind, whose output has the broadcast shape of its
tensor operands (true pointwise), with literal (not computed) scalar arguments.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupport
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions

from nvfuse import dtypes
from nvfuse.fusion.build import lower_node
from nvfuse.fusion.builder import Builder, Unsupported
from nvfuse.graph import optable

FUSED_PREFIX = "fused_"


def _tensor(value: object) -> torch.Tensor | None:
    return value if isinstance(value, torch.Tensor) else None


class FusionSupport(OperatorSupport):
    """Answers whether one node may join a fusion group (see the module docstring)."""

    def is_node_supported(self, submodules: object, node: fx.Node) -> bool:
        return node.op == "call_function" and why_unfusible(node) is None


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
    if tuple(out.shape) != tuple(shape) and tensors:
        return f"not pointwise: result shape {tuple(out.shape)} != broadcast {tuple(shape)}"
    return _dry_run(node, tensors)


def _one_iteration_space(nodes: Iterable[fx.Node]) -> bool:
    """Whether every tensor in the group (results and operands) broadcasts to one shape: a
    pointwise kernel has a single iteration space.  Groups joined only through a shared operand
    can break this ((1,4)+(3,1) and (1,4)+(5,1)); such a group stays eager."""
    shapes = [v.shape for n in nodes for v in [n.meta.get("val")] + [
        a.meta.get("val") for a in n.all_input_nodes] if isinstance(v, torch.Tensor)]
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return False
    return True


def _dry_run(node: fx.Node, tensors: list[torch.Tensor]) -> str | None:
    """Lower the node on a scratch builder: the op table is the judge of its arguments."""
    b = Builder("probe")
    env = {a: b.load(dtypes.from_torch(t.dtype), t.dim())
           for a, t in zip(node.all_input_nodes, tensors)}
    try:
        lower_node(b, node, env)
    except Unsupported as e:
        return f"op table: {e}"
    return None


def partition(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """Return a copy of `gm` whose fusible regions are `fused_<k>` submodule calls, and the
    submodule names in graph order.  `gm` itself is not changed."""
    gm = fx.GraphModule(gm, copy.deepcopy(gm.graph))  # graph copy: meta and codegen kept
    # No horizontal fusion: independent nodes would share one iteration space for no saving.
    partitioner = CapabilityBasedPartitioner(gm, FusionSupport(), allows_single_node_partition=True,
                                             skip_horizontal_fusion=True)
    groups = [p for p in partitioner.propose_partitions() if _one_iteration_space(p.nodes)]
    if not groups:
        return gm, []
    position = {n: i for i, n in enumerate(gm.graph.nodes)}
    ordered = sorted(groups, key=lambda p: min(position[n] for n in p.nodes))
    fused = fuse_by_partitions(
        gm, [dict.fromkeys(sorted(p.nodes, key=position.__getitem__)) for p in ordered],
        prefix=FUSED_PREFIX, always_return_tuple=True,
    )
    names = [str(n.target) for n in fused.graph.nodes
             if n.op == "call_module" and str(n.target).startswith(FUSED_PREFIX)]
    return fused, names
