"""Rewrite helpers for graph passes that add nodes: metadata for new nodes without running them.

Contract: `FakeMeta()` computes a new node's `meta["val"]` on fake tensors (dtype, shape,
strides, device; nothing is computed); `emit(graph, meta, before, target, args, kwargs)` adds
an annotated call_function node before `before`, or raises (adding nothing) when torch refuses
the arguments -- which is how passes test whether a rewrite is legal (a `view` that would need
a copy, shapes that do not broadcast).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from torch.fx.node import map_arg

from nvfuse.graph.aliasing import meta_val


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
        with self.mode, torch.no_grad():
            return target(*map_arg(args, self.node), **map_arg(kwargs, self.node))


def emit(graph: torch.fx.Graph, meta: FakeMeta, before: torch.fx.Node, target: Any,
         args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> torch.fx.Node:
    """A new annotated node before `before`; raises (creating nothing) if torch refuses."""
    kwargs = kwargs or {}
    val = meta.run(target, args, kwargs)
    with graph.inserting_before(before):
        node = graph.call_function(target, args, kwargs)
    node.meta["val"] = val
    return node
