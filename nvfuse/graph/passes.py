"""Graph IR passes: `torch.fx.GraphModule` (aten OpOverload call_functions) -> new GraphModule.

Every transform is `verb_noun(gm) -> gm` and never mutates its input: it works on a copy of the
graph (node meta preserved) whose owning module shares the input's parameters and buffers (no
tensor is copied).  `PASSES` is the ordered pipeline and `run_passes` applies it.

`annotate(gm, example_inputs)` (`nvfuse.graph.annotate`, re-exported here) is the analysis the
transforms lean on: it returns a copy whose every node has `meta["val"]` (a FakeTensor, a tuple of
them, or a Python scalar) computed under a FakeTensorMode, so dtypes, shapes and strides are known
without running anything.  The node facts the transforms share live in `nvfuse.graph.aliasing`,
the peephole rules in `nvfuse.graph.peephole`, slice_scatter into full() as a pad in
`nvfuse.graph.scatter`.

Safety rules shared by the transforms (eager semantics first, see design.md):
- side effects (in-place / out= ops, RNG, asserts, calls into modules) are never removed, merged
  or moved;
- a value the graph returns (directly or through views) is never replaced by one that aliases a
  graph input, a weight, a constant or another returned value, because eager returns a fresh
  tensor there;
- only get_attr tensors named `_tensor_constant*` that are not Parameters count as constants:
  weights and user buffers can be updated in place between calls, so they are never folded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_arg

from nvfuse.graph.aliasing import (
    CONSTANT_PREFIX,
    alias_source,
    copy_graph,
    finish_graph,
    has_side_effects,
    is_constant_attr,
    is_mutated,
    is_mutating,
    is_pure,
    meta_val,
    module_attr,
    reaches_output,
    structural_key,
)
from nvfuse.graph.annotate import annotate
from nvfuse.graph.batchnorm import decompose_batch_norm
from nvfuse.graph.cross_entropy import fuse_cross_entropy
from nvfuse.graph.order import order_nodes
from nvfuse.graph.peephole import simplify_peephole
from nvfuse.graph.scatter import pad_filled_scatters
from nvfuse.graph.views import sink_views

__all__ = [
    "CONSTANT_PREFIX", "PASSES", "annotate", "decompose_batch_norm",
    "eliminate_common_subexpressions", "eliminate_dead_code", "fold_constants", "is_constant_attr",
    "run_passes", "simplify_peephole", "sink_views",
]

# Folding materializes a tensor in the module; past this size it costs more memory than it saves.
MAX_FOLD_NUMEL = 1 << 20


# ---------------------------------------------------------------------------------------------
# dead code
# ---------------------------------------------------------------------------------------------
def eliminate_dead_code(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop nodes nothing uses, keeping every node with side effects (mutation, RNG, asserts)."""
    work = copy_graph(gm)
    for node in reversed(list(work.graph.nodes)):
        if not node.users and not has_side_effects(node):
            work.graph.erase_node(node)
    return finish_graph(work)


# ---------------------------------------------------------------------------------------------
# common subexpressions
# ---------------------------------------------------------------------------------------------
def _can_merge(node: torch.fx.Node, earlier: torch.fx.Node) -> bool:
    """Eager gives two distinct tensors: merging is only invisible when neither is written
    later (a write would now reach both) and not both are returned (the caller gets two)."""
    if is_mutated(node) or is_mutated(earlier):
        return node.op == "get_attr"  # the same attribute is the same tensor either way
    return not (reaches_output(node) and reaches_output(earlier))


def eliminate_common_subexpressions(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Merge pure, deterministic nodes with the same target and structurally equal args."""
    work = copy_graph(gm)
    seen: dict[Any, torch.fx.Node] = {}
    for node in list(work.graph.nodes):
        if is_mutating(node):
            seen.clear()  # a write may change what an identical later expression computes
            continue
        if node.op == "get_attr":
            key: Any = ("get_attr", node.target)
        elif is_pure(node):
            key = (node.target, structural_key(node.args), structural_key(node.kwargs))
        else:
            continue
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = node
        elif _can_merge(node, earlier):
            node.replace_all_uses_with(earlier)
            work.graph.erase_node(node)
    return finish_graph(work)


# ---------------------------------------------------------------------------------------------
# constant folding
# ---------------------------------------------------------------------------------------------
def _free_constant_name(module: torch.nn.Module) -> str:
    index = 0
    while hasattr(module, f"{CONSTANT_PREFIX}{index}"):
        index += 1
    return f"{CONSTANT_PREFIX}{index}"


def _too_big(node: torch.fx.Node) -> bool:
    val = meta_val(node)
    return isinstance(val, torch.Tensor) and val.numel() > MAX_FOLD_NUMEL


def fold_constants(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Evaluate pure ops whose tensor inputs are all constants; each result becomes a constant.

    Views of constants are evaluated (so ops after them fold) but not materialized: they cost
    nothing.  Never folded: RNG, results over MAX_FOLD_NUMEL elements, non-tensor results, values
    the graph returns (eager returns a fresh tensor each call, a constant would be shared), and
    anything reading a constant the graph writes.
    """
    work = copy_graph(gm)
    values: dict[torch.fx.Node, Any] = {}
    for node in list(work.graph.nodes):
        if node.op == "get_attr" and isinstance(node.target, str) \
                and is_constant_attr(work, node.target):
            if not is_mutated(node):
                values[node] = module_attr(work, node.target)
            continue
        inputs = node.all_input_nodes
        if not is_pure(node) or not inputs or any(n not in values for n in inputs):
            continue
        if _too_big(node):
            continue
        with torch.no_grad():
            result = node.target(*map_arg(node.args, values.__getitem__),
                                 **map_arg(node.kwargs, values.__getitem__))
        if not isinstance(result, torch.Tensor) or result.numel() > MAX_FOLD_NUMEL:
            continue
        values[node] = result
        if alias_source(node) is not None or reaches_output(node):
            continue
        name = _free_constant_name(work)
        work.register_buffer(name, result)
        with work.graph.inserting_before(node):
            constant = work.graph.get_attr(name)
        constant.meta = copy.copy(node.meta)
        node.replace_all_uses_with(constant)
        work.graph.erase_node(node)
        values[constant] = result
    # Constants and constant views the folded nodes read may now be dead; drop them so the
    # module does not keep intermediate tensors alive.
    for node in reversed(list(work.graph.nodes)):
        if node in values and not node.users and not has_side_effects(node):
            work.graph.erase_node(node)
    return finish_graph(work)


# ---------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------
PASSES: list[Callable[[torch.fx.GraphModule], torch.fx.GraphModule]] = [
    eliminate_dead_code,
    eliminate_common_subexpressions,
    fold_constants,
    pad_filled_scatters,
    simplify_peephole,
    decompose_batch_norm,  # after folding: running statistics may change between calls
    fuse_cross_entropy,  # after CSE: a log_softmax read twice is one node with two users
    sink_views,  # after folding and peephole: views of constants are gone or final
    eliminate_common_subexpressions,
    eliminate_dead_code,
    order_nodes,  # last: later stages number things in node order, which must not be the tracer's
]


def run_passes(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Apply PASSES in order; the input is left unchanged."""
    for graph_pass in PASSES:
        gm = graph_pass(gm)
    return gm
