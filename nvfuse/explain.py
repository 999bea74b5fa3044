"""explain: what nvfuse does with a model, without running any kernel.

Input: a callable or nn.Module and example inputs (and `training=True` to include the backward
graph AOTAutograd derives, split by the same min-cut partitioner torch.compile uses).  Output:
an `ExplainReport` with, per graph, the aten op count, the fusion groups, the kernels one step
launches (fused kernels plus eager ops that launch one; views and metadata ops launch none) and
every op left to eager with the reason.  `str(report)` prints it as a table.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import fx

from nvfuse import config, pipeline
from nvfuse.api import aot_backend
from nvfuse.errors import NvfuseError
from nvfuse.frontend.functional import Unfunctionalizable
from nvfuse.frontend.fx import optimizer_step, raises_eagerly
from nvfuse.frontend.protocol import Frontend, TracedFrontend, Untraceable, frontend_for
from nvfuse.fusion.build import op_name
from nvfuse.fusion.partition import EAGER_REASON, why_unfusible
from nvfuse.runtime.horizontal import planned_launches

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
    in_place: int = 0                            # group outputs written into graph inputs
    shared: list[list[int]] = field(default_factory=list)  # groups launched together

    @property
    def kernels(self) -> int:
        saved = sum(len(s) - 1 for s in self.shared)
        return len(self.groups) - saved + len(self.eager)


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
            if g.in_place:
                lines.append(f"  in place: {g.in_place} group outputs written into the inputs "
                             "they update (no copy)")
            for s in g.shared:
                lines.append(f"  one launch (horizontal): groups {', '.join(map(str, s))}")
            reasons = Counter(g.eager)
            for (op, why), n in sorted(reasons.items()):
                lines.append(f"  eager {op}{f' x{n}' if n > 1 else ''}: {why}")
        lines.append(f"kernels per step: {self.kernels_per_step}")
        return "\n".join(lines)


def explain_plan(name: str, plan: pipeline.Plan) -> GraphReport:
    """Report on one planned graph: its groups and the ops it leaves to eager, and why."""
    groups = [[op_name(n.target) for n in g.eager.graph.nodes if n.op == "call_function"]
              for g in plan.groups]
    eager: list[tuple[str, str]] = []
    views = 0
    aten_ops = sum(1 for n in plan.graph.graph.nodes if n.op == "call_function"
                   and isinstance(n.target, torch._ops.OpOverload))
    for node in plan.fused.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        op = op_name(node.target)
        if op in _NO_KERNEL:
            views += 1
        else:
            eager.append((op, why_unfusible(node) or node.meta.get(EAGER_REASON)
                          or "not merged into a group"))
    return GraphReport(name, aten_ops, groups, eager, views, shared=_shared(plan),
                       in_place=sum(len(g.writes) for g in plan.groups))


def _shared(plan: pipeline.Plan) -> list[list[int]]:
    """The groups that share launches, by index, as a call with the traced inputs would."""
    index = {g.name: i for i, g in enumerate(plan.groups)}
    arch = config.get().arch
    shared = []
    for _, members in plan.bundles:
        groups = [plan.groups[index[m]] for m in members]
        for launch in planned_launches([(g.ir, g.eager) for g in groups], arch):
            shared.append([index[members[p]] for p in launch])
    return sorted(shared)


def explain(fn: Callable[..., Any], *inputs: Any, training: bool = False) -> ExplainReport:
    """Explain how nvfuse fuses `fn(*inputs)` (forward; with training=True also backward).
    It plans exactly as `nvfuse.fuse(fn, inputs)` does (same frontend, same pipeline).  Where
    make_fx cannot trace `fn` (data-dependent control flow), it reports the graphs
    torch.compile captures between graph breaks, as `nvfuse.fuse` then runs them.  Nothing of
    the caller's changes: parameters, buffers (running statistics), gradients and the random
    generators are as they were before."""
    frontend = frontend_for(fn, inputs)
    with _unchanged(fn, inputs):
        if training:
            return ExplainReport(_training_graphs(frontend, inputs))
        # the decisions of FusedModule._make_plan, in its order
        try:
            graph = frontend.trace(inputs)
        except Unfunctionalizable as e:
            return _unfused(f"runs eagerly: {e}")
        except Untraceable:
            if raises_eagerly(fn, inputs):
                return _unfused("runs eagerly: eager raises on these inputs")
            with torch.no_grad():
                return ExplainReport(_training_graphs(frontend, inputs))
        except NvfuseError as e:  # a TorchScript graph nvfuse cannot convert runs unfused
            return _unfused(str(e))
        return ExplainReport([explain_plan("forward", pipeline.plan(graph, "forward"))])


def _unfused(why: str) -> ExplainReport:
    return ExplainReport([GraphReport("forward", 0, [], [("<whole function>", why)], 0)])


@contextlib.contextmanager
def _unchanged(fn: Any, inputs: Sequence[Any]) -> Iterator[None]:
    """Put back, after the body, every parameter and buffer of the modules `fn` holds (values
    and `.grad`), the `.grad` of the input tensors and the random generators' states."""
    tensors: dict[int, torch.Tensor] = {}
    for module in _modules(fn):
        for t in [*module.parameters(), *module.buffers()]:
            tensors[id(t)] = t
    optimizer = optimizer_step(fn)
    if optimizer is not None:  # an optimizer's step: its parameters and state
        for group in optimizer.param_groups:
            for t in group["params"]:
                tensors[id(t)] = t
        for state in optimizer.state.values():
            for t in state.values():
                if isinstance(t, torch.Tensor):
                    tensors[id(t)] = t
    for t in pytree.tree_leaves(list(inputs)):
        if isinstance(t, torch.Tensor):
            tensors[id(t)] = t
    saved = [(t, t.detach().clone(), t.grad if t.is_leaf else None) for t in tensors.values()]
    for t, _, grad in saved:
        if grad is not None and optimizer is None:  # (a step reads its parameters' grads)
            t.grad = None  # a backward then fills a fresh one, and the caller's stays untouched
    states = set(optimizer.state) if optimizer is not None else set()
    devices = sorted({t.device.index or 0 for t in tensors.values() if t.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for t, value, grad in saved:
                if not torch.equal(t, value):  # copy only what changed: no version bump else
                    t.copy_(value)
                if t.is_leaf:
                    t.grad = grad
            if optimizer is not None:  # state the explained step created is dropped again
                for key in set(optimizer.state) - states:
                    del optimizer.state[key]


def _modules(fn: Any) -> list[torch.nn.Module]:
    """The nn.Modules behind `fn`: itself, or the owner of a bound method."""
    owner = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    return [owner] if isinstance(owner, torch.nn.Module) else []


def _training_graphs(frontend: Frontend, inputs: Sequence[Any]) -> list[GraphReport]:
    """Run one training step through torch.compile with AOTAutograd exactly as a fused module
    needing gradients does (`FusedModule._call_with_autograd`), recording every forward and
    backward graph, planned by the same pipeline, instead of fusing it."""
    import torch._dynamo
    from functorch.compile import make_boxed_func  # type: ignore[import-untyped]

    target = frontend.autograd_target()
    if target is None:
        return [GraphReport("forward", 0, [], [("<whole function>", "runs unfused when "
                                                "gradients are needed")], 0)]
    recorded: list[GraphReport] = []

    def record(kind: str) -> Callable[[fx.GraphModule, Sequence[Any]], Any]:
        def compiler(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
            def run(*args: Any) -> Any:
                # as the backend's FusedModule does: trace the graph on its real inputs, then
                # plan (here: report) it
                recorded.append(explain_plan(kind, pipeline.plan(
                    TracedFrontend(gm, args).trace(args), kind)))
                return gm(*args)
            return make_boxed_func(run)
        return compiler

    backend = aot_backend(record("forward"), record("backward"))
    torch._dynamo.reset()
    out = torch.compile(target, backend=backend)(*inputs)
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
