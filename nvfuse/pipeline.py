"""The pipeline spine: every compiler stage from a traced graph to a runnable kernel, in order.

    trace(frontend, inputs)       -> aten fx.GraphModule, every node annotated (meta["val"])
    plan(graph)                   -> Plan: PLAN_STAGES (graph passes, partition, fusion IR,
                                     outputs written in place, horizontal bundles of
                                     independent groups)
    output_shapes(ir, shapes)     -> eager's output shapes for one call
    schedule(ir, ins, outs, arch) -> Launch: the kernels' signatures, params, grids, scalars
                                     (the schedule registry, nvfuse/schedules.py, picks the kind)
    build(ir, key, sig, params)   -> CompiledKernel: BUILD_STAGES (lower, verify, emit), then
                                     NVRTC when a GPU (or NVFUSE_DUMP=ptx) needs the cubin
    build_horizontal(kernels)     -> CompiledKernel: built kernels of independent groups as one
                                     launch (HORIZONTAL_STAGES: combine, verify, emit; NVRTC)

This is the only driver of the compiler: `nvfuse.fuse` (api.FusedModule), the dynamo backend
(through FusedModule), `nvfuse.explain` and the executor call these functions, so what explain
reports is what execution runs.  Each stage list is a named tuple of `Stage`s; a stage's output is
dumped when NVFUSE_DUMP names it and checked by its verifier (the kernel-IR verifier runs on every
kernel built: it costs well under a millisecond per kernel, next to tens for lowering and NVRTC).
"""

from __future__ import annotations

import dataclasses
import hashlib

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from torch import fx

from nvfuse import config, counters, schedules
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.horizontal import bundle_groups
from nvfuse.fusion.inplace import Writes, find_writes
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.partition import partition
from nvfuse.fusion import shapes
from nvfuse.graph.passes import run_passes
from nvfuse.graph.views import SIZED
from nvfuse.lower import kir
from nvfuse.lower.horizontal import combine
from nvfuse.lower.verify import verify_kernel
from nvfuse.runtime import kernels
from nvfuse.runtime.dump import dump, enabled
from nvfuse.schedule.horizontal import HorizontalParams, HorizontalSignature


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
    """One fusion group: its IR and the eager subgraph of the same nodes (the fallback).
    `writes`: (output k, input i) pairs -- output k is written into the tensor of input i,
    which the graph then no longer copies (nvfuse/fusion/inplace.py)."""

    name: str
    ir: FusionIR
    eager: fx.GraphModule
    writes: Writes = ()


@dataclass(frozen=True)
class Plan:
    """A graph after the passes (`graph`), partitioned (`fused`: each group a submodule named
    after it, eager ops left in place) and its groups' fusion IR.  `sized`: the graph passes
    used the example's sizes (sunk views), so the plan holds for those sizes only."""

    graph: fx.GraphModule
    fused: fx.GraphModule
    groups: tuple[Group, ...]
    sized: bool
    # (name, member group names): groups that may share a launch (nvfuse/fusion/horizontal.py)
    bundles: tuple[tuple[str, tuple[str, ...]], ...] = ()


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


def _in_place(p: Plan) -> Plan:
    """Outputs written into the graph inputs they update, instead of copied there."""
    fused, writes = find_writes(p.fused, {g.name: g.ir for g in p.groups})
    if not writes:
        return p
    groups = tuple(replace(g, writes=writes.get(g.name, ())) for g in p.groups)
    return replace(p, fused=fused, groups=groups)


def _horizontal(p: Plan) -> Plan:
    if not config.get().horizontal:
        return p
    bundles = bundle_groups(p.fused, [g.name for g in p.groups])
    return dataclasses.replace(p, bundles=tuple(bundles))


def _dump_bundles(p: Plan, label: str) -> Iterator[tuple[str, str]]:
    text = "\n".join(f"{name}: {', '.join(members)}" for name, members in p.bundles)
    yield label, f"{text or 'no bundles'}\n\n{p.fused.graph}"


PLAN_STAGES: tuple[Stage, ...] = (
    Stage("graph", run_passes, lambda gm, label: iter([(label, str(gm.graph))])),
    Stage("partition", _partition),
    Stage("fusion_ir", _fusion_ir,  # one dump per group, named after its graph's
          lambda plan, label: ((f"{label}.{g.name}", str(g.ir)) for g in plan.groups)),
    Stage("inplace", _in_place),
    Stage("horizontal", _horizontal, _dump_bundles),
)


def plan(graph: fx.GraphModule, label: str = "graph") -> Plan:
    """Graph passes, partition and fusion IR for an annotated aten graph (`label` names its
    dump).  The input graph is left unchanged."""
    result: Plan = run_stages(PLAN_STAGES, graph, label)
    return result


# -- schedule: one call's shapes -> kernel signatures and arguments -----------------------------
# The schedule registry (nvfuse/schedules.py) chooses the kind, in one place, and plans it.
output_shapes = shapes.output_shapes  # eager's rules, beside the fusion IR
schedule = schedules.schedule
Launch = schedules.Launch


# -- build: one signature -> a compiled kernel --------------------------------------------------
@dataclass(frozen=True)
class _Emitted:
    kernel_ir: kir.Kernel
    source: str


def _lower(job: tuple[FusionIR, Any, Any]) -> kir.Kernel:
    return schedules.lower(*job)  # by the signature's kind


def _emit(kernel_ir: kir.Kernel) -> _Emitted:
    return _Emitted(kernel_ir, emit_cuda(kernel_ir))


BUILD_STAGES: tuple[Stage, ...] = (
    Stage("kernel_ir", _lower, lambda k, _: iter([(k.name, str(k))]), verify_kernel),
    Stage("cuda", _emit, lambda e, _: iter([(e.kernel_ir.name, e.source)])),
)


def build(ir: FusionIR, key: str, sig: Any, params: Any, gpu: bool) -> kernels.CompiledKernel:
    """The specialization of `ir` (content key `key`) for `sig`, from the process-wide cache or
    built now (counts compiles / memory_hits); with the cubin when `gpu` needs it.  A build that
    `prefetch` started is waited for, not repeated."""
    kernel = kernels.lookup(key, sig)
    if kernel is not None and (kernel.cubin is not None or not gpu):
        counters.bump("memory_hits")
        return kernel
    pending = kernels.pending(key, sig)
    if pending is not None:
        built: kernels.CompiledKernel = pending.result()
        return built
    return _complete(kernel, ir, key, sig, params, gpu)


def _complete(kernel: kernels.CompiledKernel | None, ir: FusionIR, key: str, sig: Any,
              params: Any, gpu: bool) -> kernels.CompiledKernel:
    if kernel is None:
        emitted: _Emitted = run_stages(BUILD_STAGES, (ir, sig, params), ir.name)
        counters.bump("compiles")
        kernel = kernels.CompiledKernel(emitted.kernel_ir.name, emitted.source, (key, sig),
                                        emitted.kernel_ir, params)
    return _finish(kernel, key, sig, gpu)


def _finish(kernel: kernels.CompiledKernel, key: str, sig: Any,
            gpu: bool) -> kernels.CompiledKernel:
    # the GPU needs the cubin; NVFUSE_DUMP=ptx asks NVRTC for PTX even when interpreting
    if kernel.cubin is None and (gpu or "ptx" in config.get().dump):
        from nvfuse.runtime.cache import compile_source  # CuPy is imported lazily

        kernel.cubin = compile_source(kernel.source, sig.arch)
    kernels.store(key, sig, kernel)
    return kernel


# -- build_horizontal: several built kernels -> one launch -------------------------------------
HORIZONTAL_KEY = "horizontal"  # the cache's fusion key for horizontal kernels


def _combine(job: tuple[str, tuple[kir.Kernel, ...]]) -> kir.Kernel:
    return combine(*job)


HORIZONTAL_STAGES: tuple[Stage, ...] = (
    Stage("kernel_ir", _combine, lambda k, _: iter([(k.name, str(k))]), verify_kernel),
    BUILD_STAGES[1],
)


def build_horizontal(members: Sequence[kernels.CompiledKernel], arch: str,
                     gpu: bool) -> kernels.CompiledKernel:
    """One kernel running `members` (built kernels, in block order) side by side
    (lower/horizontal.py), from the cache or built now; with the cubin when `gpu` needs it."""
    sig = HorizontalSignature(tuple(m.signature for m in members), arch)
    kernel = kernels.lookup(HORIZONTAL_KEY, sig)
    if kernel is not None and (kernel.cubin is not None or not gpu):
        counters.bump("memory_hits")
        return kernel
    if kernel is None:
        digest = hashlib.sha1(repr(sig.members).encode()).hexdigest()[:12]
        name = f"horizontal_{len(members)}_{digest}"
        emitted: _Emitted = run_stages(
            HORIZONTAL_STAGES, (name, tuple(m.kernel_ir for m in members)), name)
        counters.bump("compiles")
        kernel = kernels.CompiledKernel(name, emitted.source, (HORIZONTAL_KEY, sig),
                                        emitted.kernel_ir,
                                        HorizontalParams(emitted.kernel_ir.block))
    return _finish(kernel, HORIZONTAL_KEY, sig, gpu)


def prefetch(ir: FusionIR, key: str, sig: Any, params: Any) -> Future[kernels.CompiledKernel]:
    """Start building the GPU specialization of `ir` for `sig` (lower, emit, NVRTC) on a worker
    thread unless it is built or being built; `build` then waits for it.  NVRTC releases the
    GIL, so a plan's kernels compile in parallel, one per core.  A failed build raises from
    `build` as it would have there."""
    def work(found: kernels.CompiledKernel | None) -> kernels.CompiledKernel:
        return _complete(found, ir, key, sig, params, gpu=True)
    return kernels.start(key, sig, work)
