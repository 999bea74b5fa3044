"""The pipeline spine: every compiler stage from a traced graph to a runnable kernel, in order.

    trace(frontend, inputs)       -> aten fx.GraphModule, every node annotated (meta["val"])
    plan(graph)                   -> Plan: PLAN_STAGES (graph passes, partition, fusion IR)
    output_shapes(ir, shapes)     -> eager's output shapes for one call
    schedule(ir, ins, outs, arch) -> Launch: the kernels' signatures, params, grids, scalars
    build(ir, key, sig, params)   -> CompiledKernel: BUILD_STAGES (lower, verify, emit), then
                                     NVRTC when a GPU (or NVFUSE_DUMP=ptx) needs the cubin

This is the only driver of the compiler: `nvfuse.fuse` (api.FusedModule), the dynamo backend
(through FusedModule), `nvfuse.explain` and the executor call these functions, so what explain
reports is what execution runs.  Each stage list is a named tuple of `Stage`s; a stage's output is
dumped when NVFUSE_DUMP names it and checked by its verifier (the kernel-IR verifier runs on every
kernel built: it costs well under a millisecond per kernel, next to tens for lowering and NVRTC).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from nvfuse import config, counters
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.partition import partition
from nvfuse.graph.passes import run_passes
from nvfuse.graph.views import SIZED
from nvfuse.lower import kir
from nvfuse.lower.pointwise import lower_pointwise
from nvfuse.lower.reduction import lower_reduction
from nvfuse.lower.split import lower_split
from nvfuse.lower.verify import verify_kernel
from nvfuse.runtime import kernels
from nvfuse.runtime.dump import dump, enabled
from nvfuse.schedule import concat, pointwise, reduction, split
from nvfuse.schedule.reduction import ReductionSignature
from nvfuse.schedule.split import SplitSignature


@dataclass(frozen=True)
class Stage:
    """One named step.  `dumps(value, label)` yields the (name, text) pairs NVFUSE_DUMP=<name>
    shows; `verify(value)` raises on a malformed result (a compiler bug, never user input)."""

    name: str
    run: Callable[[Any], Any]
    dumps: Callable[[Any, str], Iterator[tuple[str, str]]] | None = None
    verify: Callable[[Any], object] | None = None


def run_stages(stages: Sequence[Stage], value: Any, label: str) -> Any:
    """Thread `value` through `stages`, verifying and dumping after each."""
    for stage in stages:
        value = stage.run(value)
        if stage.verify is not None:
            stage.verify(value)
        if stage.dumps is not None and enabled(stage.name):
            for name, text in stage.dumps(value, label):
                dump(stage.name, name, text)
    return value


# -- plan: graph -> fusion groups ---------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """One fusion group: its IR and the eager subgraph of the same nodes (the fallback)."""

    name: str
    ir: FusionIR
    eager: fx.GraphModule


@dataclass(frozen=True)
class Plan:
    """A graph after the passes (`graph`), partitioned (`fused`: each group a submodule named
    after it, eager ops left in place) and its groups' fusion IR.  `sized`: the graph passes
    used the example's sizes (sunk views), so the plan holds for those sizes only."""

    graph: fx.GraphModule
    fused: fx.GraphModule
    groups: tuple[Group, ...]
    sized: bool


@dataclass(frozen=True)
class _Partitioned:
    graph: fx.GraphModule
    fused: fx.GraphModule
    names: tuple[str, ...]


def _partition(graph: fx.GraphModule) -> _Partitioned:
    fused, names = partition(graph)
    return _Partitioned(graph, fused, tuple(names))


def _fusion_ir(p: _Partitioned) -> Plan:
    groups = []
    for name in p.names:
        sub = getattr(p.fused, name)
        groups.append(Group(name, build_fusion(name, sub), sub))
    return Plan(p.graph, p.fused, tuple(groups), bool(p.graph.meta.get(SIZED)))


PLAN_STAGES: tuple[Stage, ...] = (
    Stage("graph", run_passes, lambda gm, label: iter([(label, str(gm.graph))])),
    Stage("partition", _partition),
    Stage("fusion_ir", _fusion_ir,
          lambda plan, _: ((g.name, str(g.ir)) for g in plan.groups)),
)


def plan(graph: fx.GraphModule, label: str = "graph") -> Plan:
    """Graph passes, partition and fusion IR for an annotated aten graph (`label` names its
    dump).  The input graph is left unchanged."""
    result: Plan = run_stages(PLAN_STAGES, graph, label)
    return result


# -- schedule: one call's shapes -> kernel signatures and arguments -----------------------------
def _schedule_module(ir: FusionIR) -> Any:
    """The schedule family of a fusion: reduction, concat or pointwise."""
    return reduction if ir.reduce_ndim else concat if ir.concats else pointwise


def output_shapes(ir: FusionIR, shapes: Sequence[torch.Size]) -> list[torch.Size]:
    """Eager's output shapes for inputs of these shapes (RuntimeError: they do not broadcast)."""
    result: list[torch.Size] = _schedule_module(ir).output_shapes(ir, shapes)
    return result


@dataclass(frozen=True)
class Launch:
    """One call's kernels in launch order as (signature, params, grid), the scalar arguments
    every stage receives, and the workspaces (dtype, numel) a split reduction needs."""

    stages: tuple[tuple[Any, Any, int], ...]
    scalars: tuple[int, ...]
    workspaces: tuple[tuple[Any, int], ...] = ()


def schedule(ir: FusionIR, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
             arch: str) -> Launch:
    """Signature, params and arguments of the kernel(s) that compute `outputs` from `inputs`
    (RuntimeError / ValueError: shapes the schedule cannot run)."""
    launch = _schedule_module(ir).plan_launch(ir, inputs, outputs, arch)
    if isinstance(launch, reduction.ReductionLaunch):
        two = split.plan_split(ir, launch)
        if two is not None:
            return Launch(two.stages, two.scalars, two.workspaces)
    return Launch(((launch.signature, launch.params, launch.grid),), launch.scalar_args)


# -- build: one signature -> a compiled kernel --------------------------------------------------
@dataclass(frozen=True)
class _Emitted:
    kernel_ir: kir.Kernel
    source: str


def _lower(job: tuple[FusionIR, Any, Any]) -> kir.Kernel:
    ir, sig, params = job
    if isinstance(sig, SplitSignature):
        return lower_split(ir, sig)
    if isinstance(sig, ReductionSignature):
        return lower_reduction(ir, sig, params.block)
    return lower_pointwise(ir, sig, params.block)


def _emit(kernel_ir: kir.Kernel) -> _Emitted:
    return _Emitted(kernel_ir, emit_cuda(kernel_ir))


BUILD_STAGES: tuple[Stage, ...] = (
    Stage("kernel_ir", _lower, lambda k, _: iter([(k.name, str(k))]), verify_kernel),
    Stage("cuda", _emit, lambda e, _: iter([(e.kernel_ir.name, e.source)])),
)


def build(ir: FusionIR, key: str, sig: Any, params: Any, gpu: bool) -> kernels.CompiledKernel:
    """The specialization of `ir` (content key `key`) for `sig`, from the process-wide cache or
    built now (counts compiles / memory_hits); with the cubin when `gpu` needs it."""
    kernel = kernels.lookup(key, sig)
    if kernel is not None and (kernel.cubin is not None or not gpu):
        counters.bump("memory_hits")
        return kernel
    if kernel is None:
        emitted: _Emitted = run_stages(BUILD_STAGES, (ir, sig, params), ir.name)
        counters.bump("compiles")
        kernel = kernels.CompiledKernel(emitted.kernel_ir.name, emitted.source, (key, sig),
                                        emitted.kernel_ir, params)
    # the GPU needs the cubin; NVFUSE_DUMP=ptx asks NVRTC for PTX even when interpreting
    if kernel.cubin is None and (gpu or "ptx" in config.get().dump):
        from nvfuse.runtime.cache import compile_source  # CuPy is imported lazily

        kernel.cubin = compile_source(kernel.source, sig.arch)
    kernels.store(key, sig, kernel)
    return kernel
