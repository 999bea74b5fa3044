"""HorizontalGroup: a bundle of independent fusion groups (nvfuse/fusion/horizontal.py), run with
as few launches as the horizontal schedule allows.

Input: the members' inputs, concatenated in member order.  Output: their outputs, concatenated
in member order -- exactly what the members return when called one by one.  Each call prepares
every member as it would alone (`FusionGroup.ready`: checks, output recipes, its own schedule and
kernel), asks the horizontal schedule which members share a launch (block size, argument space),
builds each shared kernel once (pipeline.build_horizontal) and launches it with every member's
tensors and, bound by name once per prepared call (`bind`), every member's scalars under its
renamed parameters plus the block offset table.  Members that cannot share (two stages, nothing
to launch, a unique block size) launch alone; a member that cannot run as a kernel runs through
its own fallback; a shared kernel that fails to build runs its members alone (warned once, and
raised under NVFUSE_STRICT=1).  Prepared calls are cached per member launch keys, as a group's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from nvfuse import config, counters, pipeline
from nvfuse.runtime import executor, kernels
from nvfuse.runtime.dump import dump
from nvfuse.runtime.executor import FusionGroup, Stage, warn_once
from nvfuse.lower import kir
from nvfuse.lower.horizontal import first_block_param, member_name, param_bytes, shared_bytes
from nvfuse.schedule import horizontal, names

# Counted as a launch key of a whole bundle: each member's.
_Key = tuple[Any, ...]


class _Shared:
    """One shared launch: its members' positions in the bundle, the built stage (grid: the
    sum of the members' grids; member i's blocks start at `firsts[i]`) and its scalar
    arguments in the kernel's declared order, bound by name once (`bind`), with the positions
    of the members' seeds (a fresh one per member and launch)."""

    __slots__ = ("members", "stage", "firsts", "scalars", "seeds")

    def __init__(self, members: tuple[int, ...], stage: Stage, firsts: tuple[int, ...],
                 scalars: tuple[int, ...], seeds: tuple[int, ...]) -> None:
        self.members, self.stage, self.firsts = members, stage, firsts
        self.scalars, self.seeds = scalars, seeds


def bind(kernel: kir.Kernel, readies: Sequence[Any],
         firsts: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The horizontal `kernel`'s scalar arguments from its members' named scalars (member k's
    `name` is `member_name(k, name)`, lower/horizontal.py) and block offsets, ordered by its
    declared parameters (`kir.bind_scalars`), 0 for each member's seed; and the seeds'
    positions."""
    values: dict[str, int] = {}
    seeds: list[str] = []
    for k, (ready, first) in enumerate(zip(readies, firsts)):
        values.update((member_name(k, n), v) for n, v in ready.named.items())
        values[first_block_param(k)] = first
        if ready.random:
            seeds.append(member_name(k, names.SEED))
            values[seeds[-1]] = 0
    (scalars,) = kir.bind_scalars([kernel], values)
    declared = [p.name for p in kernel.scalars]
    return scalars, tuple(declared.index(n) for n in seeds)


class HorizontalReady:
    """A bundle's prepared call: per member its prepared call, and the shared launches.  Like
    an executor `_Ready`: `run(inputs)` returns the outputs, `stages` lists every launch."""

    def __init__(self, split: tuple[slice, ...], members: Sequence[FusionGroup],
                 readies: tuple[Any, ...], shared: tuple[_Shared, ...]) -> None:
        self.split = split
        self.members = members
        self.readies = readies  # None: the member cannot run as a kernel with such inputs
        self.shared = shared
        together = {i for s in shared for i in s.members}
        self.alone = tuple(i for i in range(len(readies)) if i not in together)
        self.complete = None not in readies  # every member runs as a kernel (replayable)
        self.stages: tuple[Stage, ...] = (
            *(s.stage for s in shared),
            *(stage for i in self.alone if readies[i] is not None
              for stage in readies[i].stages))

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        parts = [inputs[s] for s in self.split]
        results: list[Sequence[torch.Tensor]] = [[] for _ in parts]
        for i in self.alone:
            ready = self.readies[i]
            results[i] = ready.run(parts[i]) if ready is not None else self.members[i](*parts[i])
        for s in self.shared:
            tensors: list[torch.Tensor] = []
            for i in s.members:
                outputs, member_tensors = self.readies[i].arguments(parts[i])
                results[i] = outputs
                tensors += member_tensors
            scalars = s.scalars
            if s.seeds:  # a fresh seed per member and launch; torch.manual_seed reproduces them
                fresh = list(scalars)
                for at in s.seeds:
                    fresh[at] = int(torch.randint(0, 2**62, (), dtype=torch.int64))
                scalars = tuple(fresh)
            s.stage.launch(tensors, scalars)
            for i in s.members:  # outputs written in place, or copied there (executor._Ready)
                results[i] = self.readies[i].finish(list(results[i]), parts[i])
        return [t for r in results for t in r]


class HorizontalGroup(torch.nn.Module):
    """A bundle in a partitioned graph: `members` (FusionGroups) in block order, called with
    their inputs concatenated."""

    def __init__(self, name: str, members: Sequence[FusionGroup], arities: Sequence[int]) -> None:
        super().__init__()
        self.name = name
        self.members = list(members)
        starts = [sum(arities[:i]) for i in range(len(arities) + 1)]
        self._split = tuple(slice(a, b) for a, b in zip(starts, starts[1:]))
        self._launches: dict[_Key, HorizontalReady] = {}

    def __repr__(self) -> str:
        return f"HorizontalGroup({self.name}: {', '.join(m.name for m in self.members)})"

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward(*inputs)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg = config.get()
        parts = [inputs[s] for s in self._split]
        key = tuple(executor._launch_key(p, cfg) for p in parts)
        ready = self._launches.get(key) if None not in key else None
        if ready is None:
            ready = self._prepare(parts, cfg)
            if None not in key:
                if len(self._launches) >= executor.LAUNCH_CACHE_SIZE:
                    self._launches.clear()
                self._launches[key] = ready
        else:
            counters.bump("memory_hits")
        if "launch" in cfg.dump:
            for s in ready.shared:
                dump("launch", s.stage.kernel.name,
                     f"grid={s.stage.grid} block={s.stage.kernel.params.block} members="
                     f"{[self.members[i].name for i in s.members]} first blocks={s.firsts}")
        outputs = ready.run(inputs)
        counters.bump("launches", len(ready.stages))
        recording = executor._recorder.calls
        if recording is not None and ready.complete:
            recording.append((self, ready, inputs, outputs))
        return tuple(outputs)

    def _prepare(self, parts: list[tuple[Any, ...]], cfg: config.Config) -> HorizontalReady:
        readies: list[Any] = []
        for m, p in zip(self.members, parts):
            try:
                readies.append(m.ready(p, cfg))
            except Exception:  # the member's own call falls back (or raises) each time
                if cfg.strict:
                    raise
                readies.append(None)
        devices = {(r.device, r.gpu) for r in readies if r is not None}
        if len(devices) != 1:
            return HorizontalReady(self._split, self.members, tuple(readies), ())
        (_, gpu), = devices
        candidates = [i for i, r in enumerate(readies) if r is not None and len(r.stages) == 1]
        plan = horizontal.bundle([_member(readies[i].stages[0].kernel.kernel_ir,
                                          readies[i].stages[0].grid) for i in candidates],
                                 param_space())
        groups = [tuple(candidates[p] for p in positions) for positions in plan]
        jobs = [[readies[i] for i in members] for members in groups]
        if gpu and len(jobs) > 1:  # NVRTC releases the GIL: compile the launches side by side
            with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
                stages = list(pool.map(lambda job: self._shared_stage(job, gpu, cfg), jobs))
        else:
            stages = [self._shared_stage(job, gpu, cfg) for job in jobs]
        shared = []
        for members, stage in zip(groups, stages):
            if stage is None:
                continue
            grids = [readies[i].stages[0].grid for i in members]
            firsts = tuple(sum(grids[:k]) for k in range(len(grids)))
            scalars, seeds = bind(stage.kernel.kernel_ir, [readies[i] for i in members], firsts)
            shared.append(_Shared(members, stage, firsts, scalars, seeds))
        return HorizontalReady(self._split, self.members, tuple(readies), tuple(shared))

    def _shared_stage(self, readies: list[Any], gpu: bool, cfg: config.Config) -> Stage | None:
        kernels = [r.stages[0].kernel for r in readies]
        arch = kernels[0].signature[1].arch
        try:
            kernel = pipeline.build_horizontal(kernels, arch, gpu)
        except Exception as e:
            if cfg.strict:
                raise
            warn_once(f"nvfuse: {self.name}: its groups launch one by one: "
                      f"{type(e).__name__}: {e}")
            return None
        built = self.members[0]._built  # the owning FusedModule's kernel list
        if all(k is not kernel for k in built):
            built.append(kernel)
        grid = sum(r.stages[0].grid for r in readies)
        return executor._stage(kernel, grid, gpu)


def param_space() -> int:
    """The kernel argument bytes a launch may take with the installed NVRTC (its cubins need a
    driver at least as new); the interpreter follows the same rule, so explain agrees."""
    global _param_space
    if _param_space is None:
        try:
            from nvfuse.runtime.nvrtc import nvrtc_version

            major, minor = (int(p) for p in nvrtc_version().split(".")[:2])
            new = (major, minor) >= (12, 1)
        except Exception:  # no NVRTC: only the interpreter runs kernels; keep the GPU's rule
            new = True
        _param_space = horizontal.MAX_PARAM_BYTES if new else horizontal.LEGACY_PARAM_BYTES
    return _param_space


_param_space: int | None = None


def _member(kernel: kir.Kernel, grid: int) -> horizontal.Member:
    return horizontal.Member(kernel.block, grid, param_bytes(kernel), shared_bytes(kernel))


def planned_launches(members: Sequence[tuple[Any, Any]], arch: str) -> list[list[int]]:
    """Which of a bundle's members would share launches for inputs like the ones each was
    traced with, without running anything: `members` are (fusion IR, eager subgraph) pairs,
    their placeholders annotated (meta["val"]).  What `nvfuse.explain` reports; a member whose
    inputs are unknown or symbolic counts as launching alone."""
    candidates: list[int] = []
    found: list[horizontal.Member] = []
    for i, (ir, eager) in enumerate(members):
        try:
            metas = [executor._meta_like(n.meta["val"]) for n in eager.graph.nodes
                     if n.op == "placeholder"]
            key = kernels.fusion_key(ir)
            launch = executor._plan_launch(ir, key, metas, torch.device("meta"), arch)
        except Exception:
            continue
        if len(launch.stages) != 1:
            continue
        sig, params, grid = launch.stages[0]
        kernel = pipeline.build(launch.ir, launch.key, sig, params, gpu=False)
        candidates.append(i)
        found.append(_member(kernel.kernel_ir, grid))
    return [[candidates[p] for p in b] for b in horizontal.bundle(found, param_space())]
