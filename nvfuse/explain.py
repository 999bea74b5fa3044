"""explain: what nvfuse does with a model, without running any kernel.

Input: a callable or nn.Module and example inputs (and `training=True` to include the backward
graph AOTAutograd derives, split by the same min-cut partitioner torch.compile uses).  Output:
an `ExplainReport` with, per graph, the aten op count, the fusion groups, the kernels one step
launches (fused kernels plus eager ops that launch one; views and metadata ops launch none) and
every op left to eager with the reason.  `str(report)` prints it as a table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.build import op_name
from nvfuse.fusion.partition import EAGER_REASON, FUSED_PREFIX, partition, why_unfusible
from nvfuse.graph.passes import run_passes

# Ops that only reinterpret metadata (views) or move no data: eager runs them without a kernel.
_NO_KERNEL = frozenset({
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::t", "aten::transpose",
    "aten::permute", "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::slice",
    "aten::select", "aten::alias", "aten::detach", "aten::as_strided", "aten::split",
    "aten::split_with_sizes", "aten::unbind", "aten::sym_size", "aten::sym_numel",
    "aten::sym_stride", "aten::lift_fresh_copy", "aten::empty", "aten::empty_like",
})


@dataclass
class GraphReport:
    name: str
    aten_ops: int
    groups: list[list[str]]                      # the aten ops of each fusion group
    eager: list[tuple[str, str]]                 # (op, why it is not fused), kernel-launching ops
    views: int                                   # eager ops that launch no kernel

    @property
    def kernels(self) -> int:
        return len(self.groups) + len(self.eager)


@dataclass
class ExplainReport:
    graphs: list[GraphReport] = field(default_factory=list)

    @property
    def kernels_per_step(self) -> int:
        return sum(g.kernels for g in self.graphs)

    def __str__(self) -> str:
        lines = []
        for g in self.graphs:
            lines.append(f"== {g.name}: {g.aten_ops} aten ops -> {g.kernels} kernels "
                         f"({len(g.groups)} fused, {len(g.eager)} eager; {g.views} views free)")
            for i, ops in enumerate(g.groups):
                lines.append(f"  group {i}: {len(ops)} ops: {', '.join(ops)}")
            reasons = Counter(g.eager)
            for (op, why), n in sorted(reasons.items()):
                lines.append(f"  eager {op}{f' x{n}' if n > 1 else ''}: {why}")
        lines.append(f"kernels per step: {self.kernels_per_step}")
        return "\n".join(lines)


def explain_graph(name: str, gm: fx.GraphModule) -> GraphReport:
    """Report on one annotated aten graph: partition it the way a fused module would."""
    gm = run_passes(gm)
    fused, names = partition(gm)
    groups = [[op_name(n.target) for n in getattr(fused, g).graph.nodes
               if n.op == "call_function"] for g in names]
    eager: list[tuple[str, str]] = []
    views = 0
    aten_ops = sum(1 for n in gm.graph.nodes if n.op == "call_function"
                   and isinstance(n.target, torch._ops.OpOverload))
    for node in fused.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        op = op_name(node.target)
        if op in _NO_KERNEL:
            views += 1
        else:
            eager.append((op, why_unfusible(node) or node.meta.get(EAGER_REASON)
                          or "not merged into a group"))
    assert all(n.startswith(FUSED_PREFIX) for n in names)
    return GraphReport(name, aten_ops, groups, eager, views)


def explain(fn: Callable[..., Any], *inputs: Any, training: bool = False) -> ExplainReport:
    """Explain how nvfuse fuses `fn(*inputs)` (forward; with training=True also backward).
    Where make_fx cannot trace `fn` (data-dependent control flow), it reports the graphs
    torch.compile captures between graph breaks, as `nvfuse.fuse` then runs them."""
    if not training:
        try:
            return ExplainReport([explain_graph("forward", trace_to_aten(fn, inputs))])
        except Exception:  # nvfuse.fuse then runs it through torch.compile (api.Plan.compiled)
            with torch.no_grad():
                return ExplainReport(_training_graphs(fn, inputs))
    return ExplainReport(_training_graphs(fn, inputs))


def _training_graphs(fn: Callable[..., Any], inputs: Sequence[Any]) -> list[GraphReport]:
    """Run one training step through torch.compile with AOTAutograd exactly as the nvfuse
    backend does, recording every forward and backward graph instead of fusing it."""
    import torch._dynamo
    from functorch.compile import make_boxed_func  # type: ignore[import-untyped]

    from nvfuse.frontend.dynamo import aot_backend

    recorded: list[GraphReport] = []

    def record(kind: str) -> Callable[[fx.GraphModule, Sequence[Any]], Any]:
        def compiler(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
            def run(*args: Any) -> Any:
                # as the backend's FusedModule does: trace the graph on its real inputs with
                # nvfuse's decompositions, then partition (here: report) it
                recorded.append(explain_graph(kind, trace_to_aten(gm, list(args))))
                return gm(*args)
            return make_boxed_func(run)
        return compiler

    backend = aot_backend(record("forward"), record("backward"))
    torch._dynamo.reset()
    out = torch.compile(fn, backend=backend)(*inputs)
    grads = [o for o in _tensors(out) if o.requires_grad]
    if grads:
        torch.autograd.backward([o.float().sum() for o in grads])
    torch._dynamo.reset()
    return recorded


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []
