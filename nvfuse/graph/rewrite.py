"""Rewrite helpers for graph passes that add nodes: metadata for new nodes without running them.

Contract: `FakeMeta()` computes a new node's `meta["val"]` on fake tensors (dtype, shape,
strides, device; nothing is computed); `emit(graph, meta, before, target, args, kwargs)` adds
an annotated call_function node before `before`, or raises (adding nothing) when torch refuses
the arguments -- which is how passes test whether a rewrite is legal (a `view` that would need
a copy, shapes that do not broadcast).  After rewiring, `repropagate(gm, meta, before)`
recomputes what changed downstream and `same_outputs(old, output_vals(gm))` checks that the
graph still returns eager's dtypes, shapes and layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_arg

from nvfuse.graph.aliasing import copy_graph, finish_graph, has_side_effects, meta_val

# Ops that read storage by offset and strides: their meaning changes with an operand's strides.
_STORAGE_OPS = frozenset({torch.ops.aten.as_strided.default,
                          torch.ops.aten._reshape_alias.default})


# Views by shape: legal only where the strides allow it (else eager's `view` raises).
_RESHAPE_VIEWS = frozenset({torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default})


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype and shape, and equal strides wherever a dim has more than one element."""
    return (a.dtype == b.dtype and a.shape == b.shape and all(
        sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1))


class FakeMeta:
    """One FakeTensorMode to compute new metadata in.  Graph values may come from several
    modes (make_fx records its own per trace), which torch refuses to mix, so each value is
    re-made in this mode with the same dtype, shape, strides and device."""

    def __init__(self) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        self._made: dict[int, tuple[Any, Any]] = {}

    def value(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        if not isinstance(value, torch.Tensor) or getattr(value, "fake_mode", None) is self.mode:
            return value
        made = self._made.get(id(value))
        if made is None:
            with self.mode:
                fake = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                                           device=value.device)
            made = self._made[id(value)] = (value, fake)  # holding value keeps its id unique
        return made[1]

    def node(self, node: Any) -> Any:
        return self.value(meta_val(node)) if isinstance(node, torch.fx.Node) else node

    def run(self, target: Any, args: Any, kwargs: Any) -> Any:
        args, kwargs = map_arg(args, self.node), map_arg(kwargs, self.node)
        with self.mode, torch.no_grad():
            val = target(*args, **kwargs)
        if target in _RESHAPE_VIEWS and isinstance(val, torch.Tensor):
            # FakeTensor's view accepts some layouts eager's refuses (a stride-0 dim next to a
            # size-1 dim of stride 1 "merges" into stride 0), and then a moved view crashes
            # when the graph runs: ask torch's own kernel, on the meta device, and keep its
            # strides
            x = args[0]
            real = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta").view(
                *args[1:], **kwargs)
            if real.stride() != val.stride():
                with self.mode:
                    val = torch.empty_strided(real.shape, real.stride(), dtype=val.dtype,
                                              device=val.device)
        return val


def emit(graph: torch.fx.Graph, meta: FakeMeta, before: torch.fx.Node, target: Any,
         args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> torch.fx.Node:
    """A new annotated node before `before`; raises (creating nothing) if torch refuses."""
    kwargs = kwargs or {}
    val = meta.run(target, args, kwargs)
    with graph.inserting_before(before):
        node = graph.call_function(target, args, kwargs)
    node.meta["val"] = val
    return node


def output_vals(gm: torch.fx.GraphModule) -> list[Any]:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return [meta_val(n) for n in out.all_input_nodes]


def same_meta(a: Any, b: Any) -> bool:
    """Equal metadata: tensors by dtype, shape, strides and device; sequences item by item."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return (a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
                and a.device == b.device)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_meta(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and not isinstance(a, torch.Tensor) and a == b


def repropagate(work: torch.fx.GraphModule, mode: FakeMeta,
                 before: dict[torch.fx.Node, Any]) -> None:
    """Recompute the metadata of every node downstream of a rewrite whose operands' metadata
    changed (raises if an op now refuses its operands, e.g. a view of a value whose strides
    changed).  Propagation stops where a result comes out as before, so data-dependent ops
    (which fake tensors cannot run) further down do not matter."""
    changed: set[torch.fx.Node] = set()
    for node in work.graph.nodes:
        if node.op != "call_function":
            continue
        fresh = node not in before  # new: its users read a different node now
        if any(a in changed for a in node.all_input_nodes):
            if node.target in _STORAGE_OPS:
                raise ValueError(f"{node.name} reads storage directly")
            node.meta["val"] = mode.run(node.target, node.args, node.kwargs)
        if fresh or node in before and not same_meta(node.meta["val"], before[node]):
            changed.add(node)


def same_outputs(old: list[Any], new: list[Any]) -> bool:
    if len(old) != len(new):
        return False
    for a, b in zip(old, new):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            return False
        if isinstance(a, torch.Tensor) and (not same_layout(a, b) or a.device != b.device):
            return False
    return True


Replacements = dict[torch.fx.Node, torch.fx.Node]


def rewrite_nodes(gm: torch.fx.GraphModule,
                  rewrite: Callable[[torch.fx.Graph, FakeMeta, torch.fx.Node],
                                    Replacements | None]) -> torch.fx.GraphModule:
    """A copy of `gm` in which `rewrite(graph, meta, node)` ran on every node: it adds nodes
    (`emit`) and returns {old node: its replacement} (None: nothing to do; raising counts as
    None).  A node's replacements are used only when every one has its old node's layout
    (eager's dtype, shape and strides); unused nodes left behind are dropped."""
    work = copy_graph(gm)
    meta = FakeMeta()
    for node in list(work.graph.nodes):
        try:
            replacements = rewrite(work.graph, meta, node)
        except Exception:  # torch refused an argument combination: leave the op as it is
            replacements = None
        if not replacements or not all(same_layout(meta_val(new), meta_val(old))
                                       for old, new in replacements.items()):
            continue
        for old, new in replacements.items():
            old.replace_all_uses_with(new)
    for node in reversed(list(work.graph.nodes)):
        if node.op == "call_function" and not node.users and not has_side_effects(node):
            work.graph.erase_node(node)
    return finish_graph(work)
