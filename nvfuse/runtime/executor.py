"""Executor: runs one fusion group -- as a kernel when it can, eagerly when it can't.

Input: the group's FusionIR and its eager subgraph (an fx.GraphModule of the same nodes).
Output: `FusionGroup`, the nn.Module that replaces the group in the partitioned graph.  Each call
checks the inputs, allocates the outputs with torch (eager's dtype and shape), computes the
shape signature, fetches or builds the specialization, and launches it on torch's current
stream (or runs its kernel IR on the CPU under NVFUSE_INTERPRET=1).  A fusion with
`reduce_ndim` > 0 takes a reduction schedule (row or column, picked by strides) and lowering,
one with concatenations the concat schedule (nvfuse.schedule.concat), any other the pointwise
ones.
A reduction with few long rows may run as two kernels (nvfuse/schedule/split.py: partials into
torch-allocated workspaces, then the combine and epilogue), launched in order on one stream.
The schedule's scalars are named; a prepared call orders them once per kernel by its declared
parameters (`bind_launch`: a missing or unknown name is a LaunchError naming it), and a kernel
that declares `seed` gets a fresh one written into its prebuilt tuple at every launch.
Zero-size outputs store nothing: they are left out of the launch (nvfuse.fusion.subset), and
a call whose outputs are all empty launches nothing; a reduction over empty rows with non-empty
results runs the kernel (sums give 0, products 1, means NaN, as eager) except amax / amin /
argmax / argmin, which eager refuses: those run eagerly so that eager raises its own error.
Any failure runs the eager subgraph instead, warns once naming the cause and counts a
fallback; NVFUSE_STRICT=1 raises instead.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from nvfuse import config, counters, pipeline
from nvfuse.errors import LaunchError, NvfuseError
from nvfuse.fusion.inplace import Writes
from nvfuse.fusion.ir import FusionIR, Output, reduced_positions
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.shapes import broadcast_shape
from nvfuse.fusion.subset import select_outputs
from nvfuse.lower import kir
from nvfuse.runtime import devices, kernels
from nvfuse.runtime.dump import dump
from nvfuse.schedule import names, reduction

_warned: set[str] = set()
LAUNCH_CACHE_SIZE = 64  # prepared calls kept per group (distinct shapes/layouts in use)

# Tests set this to fill every output with garbage (NaN / all-ones bytes) before the kernel runs,
# so an element the kernel fails to write can never pass as correct.
POISON_OUTPUTS = False


class CannotRun(NvfuseError):
    """This call cannot run as a kernel (device, dtype, shapes); the group runs eagerly."""


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class OpNames(list):
    """The aten op names of a group ('aten::mul', ...).  `in` also accepts the short name
    ('mul') and FX spellings ('aten.mul', 'aten.mul.Tensor')."""

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        text = name.replace("::", ".")
        parts = text.split(".")
        candidates = {text, ".".join(parts[:2]) if parts[0] == "aten" else f"aten.{parts[0]}"}
        return any(op.replace("::", ".") in candidates for op in self)


class FusionGroup(torch.nn.Module):
    """One fusion group in a partitioned graph; `str(group)` is its fusion IR."""

    def __init__(self, ir: FusionIR, eager: fx.GraphModule, built: list[Any],
                 writes: Writes = ()) -> None:
        super().__init__()
        self.name = ir.name
        self.fusion_ir = ir
        self.ops = OpNames(ir.ops)
        self.eager = eager
        # (output k, input i): output k's values end in input i's tensor, which is returned
        # as output k (nvfuse/fusion/inplace.py); the kernel writes there when it may
        self.writes = writes
        self._key = kernels.fusion_key(ir)
        self._built = built  # the owning FusedModule's kernel list
        self._launches: dict[tuple[Any, ...], _Ready] = {}  # launch key -> prepared call
        self._recorded_device = devices.recorded_device(eager)  # for groups without inputs

    def __str__(self) -> str:
        return str(self.fusion_ir)

    def __repr__(self) -> str:
        return f"FusionGroup({self.name}: {', '.join(self.ops)})"

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward(*inputs)  # no hooks on a group: skip nn.Module's call machinery

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg = config.get()
        try:
            return self._run_kernel(inputs, cfg)
        except Exception as e:  # any failure falls back: never a wrong answer
            if cfg.strict:
                raise
            counters.bump("fallbacks")
            warn_once(f"nvfuse: group {self.name} ({', '.join(self.ops)}) runs eagerly: "
                      f"{type(e).__name__}: {e}")
            return tuple(copy_back(list(self.eager(*inputs)), inputs, self.writes))

    def _run_kernel(self, inputs: tuple[Any, ...], cfg: config.Config) -> tuple[torch.Tensor, ...]:
        ready = self.ready(inputs, cfg)
        if "launch" in cfg.dump:
            _dump_launch(ready, inputs)
        outputs = ready.run(inputs)
        counters.bump("launches", len(ready.stages))
        recording = _recorder.calls
        if recording is not None:
            recording.append((self, ready, inputs, outputs))
        return tuple(outputs)

    def ready(self, inputs: tuple[Any, ...], cfg: config.Config) -> _Ready:
        """The prepared call for inputs like `inputs`: cached by launch key, else prepared now
        (raises where the call cannot run as a kernel)."""
        key = _launch_key(inputs, cfg)
        ready = self._launches.get(key) if key is not None else None
        if ready is None:
            ready = self._prepare(inputs, cfg)
            if key is not None:
                if len(self._launches) >= LAUNCH_CACHE_SIZE:
                    self._launches.clear()
                self._launches[key] = ready
        else:
            counters.bump("memory_hits")
        return ready

    def _prepare(self, inputs: tuple[Any, ...], cfg: config.Config) -> _Ready:
        """The slow path of a call: checks, output shapes, signature, the kernel (built once)."""
        ir = self.fusion_ir
        _check_inputs(ir, inputs)
        device = devices.group_device(inputs, self._recorded_device)
        gpu = device.type == "cuda" and not cfg.interpret
        if not gpu and not (cfg.interpret and device.type == "cpu"):
            raise CannotRun(f"inputs on {device}: kernels run on CUDA tensors, or on CPU "
                            "tensors with NVFUSE_INTERPRET=1")
        arch = _arch(device) if gpu else cfg.arch
        launch = _plan_launch(ir, self._key, inputs, device, arch, self.writes)
        stages = tuple(_stage(self._kernel(launch.ir, launch.key, sig, params, gpu), grid, gpu)
                       for sig, params, grid in launch.stages)
        scalars, seeds = bind_launch([s.kernel.kernel_ir for s in stages], launch.scalars)
        place = device.type != "cpu" and any(devices.is_cpu_scalar(t) for t in inputs)
        return _Ready(device, gpu, launch.outputs, stages, launch.scalars, scalars, seeds,
                      launch.workspaces, launch.operands, any(i >= 0 for i in seeds), place,
                      launch.into, tuple(w for w in self.writes if launch.into[w[0]] is None))

    def prefetch(self, inputs: Sequence[torch.Tensor], arch: str) -> None:
        """Start compiling, on worker threads, the kernels a GPU call with inputs like `inputs`
        (meta tensors will do: only dtypes, shapes and strides are read) will need."""
        launch = _plan_launch(self.fusion_ir, self._key, inputs, torch.device("meta"), arch,
                              self.writes)
        for sig, params, _ in launch.stages:
            pipeline.prefetch(launch.ir, launch.key, sig, params)

    def _kernel(self, ir: FusionIR, key: str, sig: Any, params: Any,
                gpu: bool) -> kernels.CompiledKernel:
        kernel = pipeline.build(ir, key, sig, params, gpu)
        if all(k is not kernel for k in self._built):
            self._built.append(kernel)
        return kernel


def prefetch_groups(groups: Sequence[FusionGroup], device: torch.device) -> None:
    """Start compiling every group's kernels for `device` at once, each for the inputs its
    graph was traced with (the placeholders' metadata), so that a plan's first call waits for
    its slowest kernel, not their sum.  Best effort: a group whose inputs are not known or
    whose schedule refuses them builds at its first call as before."""
    arch = _arch(device)
    for group in groups:
        try:
            metas = [_meta_like(n.meta["val"]) for n in group.eager.graph.nodes
                     if n.op == "placeholder"]
            group.prefetch(metas, arch)
        except Exception:  # the call itself reports what is wrong
            continue


def _meta_like(value: torch.Tensor) -> torch.Tensor:
    shape = [int(n) for n in value.shape]  # symbolic sizes raise: no prefetch for that group
    strides = [int(n) for n in value.stride()]
    return torch.empty_strided(shape, strides, dtype=value.dtype, device="meta")


Recipe = tuple[torch.Size, tuple[int, ...], torch.dtype]  # an output's (shape, strides, dtype)


@dataclass(frozen=True)
class _Launch:
    """What the schedules decide for one call: every output's allocation recipe, the fusion
    actually launched (`ir`, content key `key`: the group's, or its non-empty outputs' subset)
    and its kernels' (signature, params, grid) in order (none: nothing to launch), with their
    scalars by parameter name, workspaces and the subset's (input, output) indices."""

    outputs: tuple[Recipe, ...]
    ir: FusionIR
    key: str
    stages: tuple[tuple[Any, Any, int], ...] = ()
    scalars: Mapping[str, int] = field(default_factory=dict)
    workspaces: tuple[tuple[Any, int], ...] = ()
    operands: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    into: tuple[int | None, ...] = ()  # per output: the input whose tensor it is, or None


def _plan_launch(ir: FusionIR, key: str, inputs: Sequence[torch.Tensor], device: torch.device,
                 arch: str, writes: Writes = ()) -> _Launch:
    """Output shapes and layouts, the outputs written into inputs where this call allows it
    (`written_in_place`), the empty outputs left out (nvfuse.fusion.subset), then the
    schedule (pipeline.schedule picks the kind)."""
    shapes = [t.shape for t in inputs]
    try:
        out_shapes = pipeline.output_shapes(ir, shapes)
    except RuntimeError as e:
        raise CannotRun(f"input shapes {[tuple(s) for s in shapes]} do not broadcast") from e
    outputs = tuple(_allocate(s, o, device) for s, o in zip(out_shapes, ir.outputs))
    recipes = tuple((o.shape, o.stride(), o.dtype) for o in outputs)
    into = written_in_place(outputs, inputs, writes)
    outputs = tuple(o if j is None else inputs[j] for o, j in zip(outputs, into))
    filled = tuple(i for i, o in enumerate(outputs) if o.numel())
    if not filled:
        return _Launch(recipes, ir, key, into=into)
    operands = None
    if len(filled) < len(outputs):  # empty outputs store nothing: leave them out
        ir, used = select_outputs(ir, filled)
        key, operands = kernels.fusion_key(ir), (used, filled)
        inputs = tuple(inputs[i] for i in used)
        outputs = tuple(outputs[o] for o in filled)
        shapes = [t.shape for t in inputs]
    if _nothing_to_do(ir, shapes):
        raise CannotRun(f"input shapes {[tuple(s) for s in shapes]}: an empty iteration "
                        "space for non-empty outputs")
    _check_full_outputs_over_empty_rows(ir, shapes)
    try:
        launch = pipeline.schedule(ir, inputs, outputs, arch)
    except (RuntimeError, ValueError) as e:  # no common broadcast shape; bad reduction
        raise CannotRun(f"input shapes {[tuple(s) for s in shapes]}: {e}") from e
    return _Launch(recipes, ir, key, tuple(launch.stages), dict(launch.scalars),
                   tuple(launch.workspaces), operands, into)


@dataclass(frozen=True)
class _Ready:
    """A prepared call: everything a repeat call with the same launch key needs, computed once
    (the outputs' allocation recipes, the kernels with their grids and launchers, each
    kernel's scalar arguments in its declared order), so that `run` only allocates and
    launches."""

    device: torch.device
    gpu: bool
    outputs: tuple[Recipe, ...]
    # the kernels to run in order: one, two for a split reduction, none for zero-size outputs
    stages: tuple[Stage, ...]
    named: Mapping[str, int]  # the schedule's scalars by name (a horizontal launch binds them)
    scalars: tuple[tuple[int, ...], ...]  # per stage, ordered by its kernel's parameters
    seeds: tuple[int, ...]  # per stage, the position of its `seed` parameter (-1: none)
    workspaces: tuple[tuple[Any, int], ...]  # a split reduction's (dtype, numel)
    # (input indices, output indices) the kernels take when some outputs are empty; None: all
    operands: tuple[tuple[int, ...], tuple[int, ...]] | None
    random: bool  # a kernel declares `seed`: each launch takes a fresh one
    place: bool  # a 0-dim CPU tensor input is copied to the device first
    # per output: the input whose tensor the kernel writes as this output (nothing allocated,
    # nothing copied), or None; () when none is
    into: tuple[int | None, ...] = ()
    copies: Writes = ()  # (output k, input i) the kernel cannot write in place: copied after
    # (stage, scalars) in launch order, prebuilt: the hot path zips nothing
    calls: tuple[tuple[Stage, tuple[int, ...]], ...] = field(init=False)
    # nothing but fresh outputs and the stages (no in-place output, placed input, left-out
    # operand, workspace, seed or copy back): `run` takes its shortest path
    plain: bool = field(init=False)
    # per output: (an empty tensor of its dtype on the device, shape, strides); the shortest
    # path allocates with `template.new_empty_strided`, which parses no dtype or device (a
    # template that is not a plain tensor -- made under a tensor subclass's mode -- leaves
    # the call off the shortest path)
    fresh: tuple[tuple[torch.Tensor, Any, Any], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calls", tuple(zip(self.stages, self.scalars)))
        object.__setattr__(self, "fresh", tuple(
            (torch.empty(0, dtype=dtype, device=self.device), shape, strides)
            for shape, strides, dtype in self.outputs))
        object.__setattr__(self, "plain", bool(
            self.stages and all(j is None for j in self.into) and not self.place
            and self.operands is None and not self.workspaces and not self.random
            and not self.copies and all(type(t) is torch.Tensor for t, _, _ in self.fresh)))

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Allocate the outputs and run the stages; the caller counts the launches."""
        if self.plain and not POISON_OUTPUTS:
            outputs = [template.new_empty_strided(shape, strides)
                       for template, shape, strides in self.fresh]
            tensors = [*inputs, *outputs]
            for stage, args in self.calls:
                stage.launch(tensors, args)
            return outputs
        outputs, tensors = self.arguments(inputs)
        calls = self.calls
        if self.random:  # a fresh seed per launch; torch.manual_seed reproduces it
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            calls = tuple((stage, args if i < 0 else (*args[:i], seed, *args[i + 1:]))
                          for (stage, args), i in zip(calls, self.seeds))
        for stage, args in calls:
            stage.launch(tensors, args)
        return self.finish(outputs, inputs)

    def finish(self, outputs: list[torch.Tensor], inputs: Sequence[torch.Tensor]
               ) -> list[torch.Tensor]:
        """After the stages ran (here or in a horizontal launch): the outputs written in place
        get their version bumps, the ones that could not be are copied into their inputs."""
        if self.into:  # written through a raw pointer: count the write as eager's copy_ would
            _bump_versions([o for o, j in zip(outputs, self.into) if j is not None])
        return copy_back(outputs, inputs, self.copies)

    def arguments(self, inputs: Sequence[torch.Tensor]
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The call's outputs (freshly allocated, or the inputs written in place: `into`), and
        the tensors its stages take (a horizontal launch runs them inside its own kernel, with
        its own scalars: runtime/horizontal.py); `finish` completes the call after the launch."""
        device = self.device
        outputs = [torch.empty_strided(shape, strides, dtype=dtype, device=device)
                   if not self.into or self.into[k] is None else inputs[self.into[k]]  # type: ignore[index]
                   for k, (shape, strides, dtype) in enumerate(self.outputs)]
        if not self.stages:  # zero-size outputs: nothing to compute
            return outputs, []
        if self.place:
            inputs = devices.place_inputs(tuple(inputs), device)
        if POISON_OUTPUTS:  # never an output that is an input: the kernel reads it first
            for k, o in enumerate(outputs):
                if self.into and self.into[k] is not None:
                    continue
                o.fill_(float("nan")) if o.is_floating_point() else o.untyped_storage().fill_(255)  # type: ignore[attr-defined]
        if self.operands is None:
            tensors = [*inputs, *outputs]
        else:  # the empty outputs are left out (nvfuse.fusion.subset)
            tensors = [*(inputs[i] for i in self.operands[0]),
                       *(outputs[o] for o in self.operands[1])]
        if self.workspaces:  # a split reduction's: torch's caching allocator, same stream
            tensors += [torch.empty(n, dtype=d.torch, device=device) for d, n in self.workspaces]
        return outputs, tensors


def bind_launch(kernels: Sequence[kir.Kernel], values: Mapping[str, int]) -> tuple[
        tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """Each kernel's scalar arguments ordered by its declared parameters (`kir.bind_scalars`:
    LaunchError for a name declared but not given, or given but not declared), with 0 where a
    kernel declares `seed`, and that position per kernel (-1: none): `_Ready.run` writes a
    fresh seed there for every launch."""
    if names.SEED in values:
        raise LaunchError(f"scalar {names.SEED!r} is the launcher's (a fresh one per launch), "
                          "not a schedule's")
    seeds = tuple(next((i for i, p in enumerate(k.scalars) if p.name == names.SEED), -1)
                  for k in kernels)
    if any(i >= 0 for i in seeds):
        values = {**values, names.SEED: 0}
    return kir.bind_scalars(kernels, values), seeds


def _bump_versions(tensors: list[torch.Tensor]) -> None:
    """Bump the version counters of tensors a kernel wrote in place, so autograd still sees
    the write (a tensor saved for a backward and then updated raises, as in eager)."""
    for t in tensors:
        torch.autograd.graph.increment_version(t)


def written_in_place(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                     writes: Writes) -> tuple[int | None, ...]:
    """Per output, the input whose tensor a pointwise kernel may write it into at this call,
    or None: where the group's plan says so (`writes`) and the input has the output's shape,
    strides, dtype and device, at least one element, and the shape of the whole iteration
    space (so no thread reads an element another writes: nothing broadcasts it)."""
    into: list[int | None] = [None] * len(outputs)
    if not writes:
        return tuple(into)
    space = broadcast_shape([t.shape for t in inputs])
    for k, i in writes:
        out, t = outputs[k], inputs[i]
        if (t.shape == out.shape == space and t.stride() == out.stride()
                and t.dtype == out.dtype and t.device == out.device and t.numel()):
            into[k] = i
    return tuple(into)


def copy_back(outputs: list[torch.Tensor], inputs: Sequence[torch.Tensor],
              writes: Writes) -> list[torch.Tensor]:
    """Copy each output k of `writes` into input i (where the kernel could not write it
    there, or the group ran eagerly); output k is then that input, as the graph expects."""
    for k, i in writes:
        if outputs[k] is not inputs[i]:
            inputs[i].copy_(outputs[k])
            outputs[k] = inputs[i]
    return outputs


class Stage:
    """One kernel of a prepared call with its grid; `launch(tensors, scalars)` runs it on the
    interpreter (GpuStage: on torch's current stream of the tensors' device), `scalars` being
    its kernel's scalar arguments in declared order (`bind_launch`)."""

    __slots__ = ("kernel", "grid", "_gpu_launch")

    def __init__(self, kernel: kernels.CompiledKernel, grid: int) -> None:
        self.kernel = kernel
        self.grid = grid
        self._gpu_launch: Any = None

    def launch(self, tensors: list[torch.Tensor], scalars: tuple[int, ...]) -> None:
        from nvfuse.interpret.machine import run_kernel

        run_kernel(self.kernel.kernel_ir, tensors, scalars, self.grid)


class GpuStage(Stage):
    """A stage on the GPU: the kernel is loaded on the tensors' device at first launch, and each
    launch goes through a `PackedLaunch` (prebuilt driver argument buffer)."""

    __slots__ = ()

    def launch(self, tensors: list[torch.Tensor], scalars: tuple[int, ...]) -> None:
        from nvfuse.runtime.packed import launch_packed

        launch_packed(self, tensors, scalars)


def _stage(kernel: kernels.CompiledKernel, grid: int, gpu: bool) -> Stage:
    return GpuStage(kernel, grid) if gpu else Stage(kernel, grid)


def _dump_launch(ready: _Ready, inputs: tuple[torch.Tensor, ...]) -> None:
    for stage, args in zip(ready.stages, ready.scalars):
        named = dict(zip((p.name for p in stage.kernel.kernel_ir.scalars), args))
        dump("launch", stage.kernel.name, f"grid={stage.grid} block={stage.kernel.params.block} "
             f"scalars={named} shapes={[tuple(t.shape) for t in inputs]}")


class _Recorder(threading.local):
    """Per thread: the list a plan's replay recorder collects (group, ready, inputs, outputs)
    into while it runs the plan once (nvfuse/runtime/replay.py), else None."""

    # (group or bundle, its prepared call, inputs, outputs)
    calls: list[tuple[Any, Any, tuple[Any, ...], list[torch.Tensor]]] | None = None


_recorder = _Recorder()


def _launch_key(inputs: tuple[Any, ...], cfg: config.Config) -> tuple[Any, ...] | None:
    """Everything a prepared call depends on: per input its dtype, shape, strides, device and
    16-byte alignment class (vector width), plus the interpreter flag.  Outputs need no entry:
    torch's allocators align fresh tensors to at least 64 bytes.  None for non-tensor inputs
    (the slow path then reports them)."""
    try:
        return (cfg.interpret, *((t.dtype, t.shape, t.stride(), t.data_ptr() & 15, t.device)
                                 for t in inputs))
    except AttributeError:
        return None


# reductions eager refuses over an empty dim
_NEED_ELEMENTS = (Prim.REDUCE_MAX, Prim.REDUCE_MIN, Prim.REDUCE_ARGMAX, Prim.REDUCE_ARGMIN)


def _nothing_to_do(ir: FusionIR, shapes: list[torch.Size]) -> bool:
    """Whether a fusion whose outputs all have elements has an empty iteration space (the
    caller then cannot run it as a kernel).  Raises CannotRun for a reduction eager refuses
    (see the module docstring)."""
    if ir.concats:  # the space is the concatenations' shape, hence an output's
        return False
    if not ir.reduce_ndim:
        return 0 in broadcast_shape(shapes)
    space = reduction.iteration_space(shapes)
    reduced = reduced_positions(ir.reduce_axes, len(space))
    if any(n == 0 for d, n in enumerate(space) if d not in reduced):
        return True  # no rows
    if any(space[d] == 0 for d in reduced) and any(n.op in _NEED_ELEMENTS for n in ir.nodes):
        raise CannotRun("amax / amin / argmax / argmin over an empty dim (eager raises)")
    return False


def _check_full_outputs_over_empty_rows(ir: FusionIR, shapes: list[torch.Size]) -> None:
    """Raise CannotRun where a non-row output would be stored from an empty row loop: a
    reduced dim of the space is empty, an input has size 1 there (it has elements) and it
    varies along the row (size 1 along a reduced dim of size 1 keeps its own stride, see
    nvfuse.schedule.pointwise.iteration_strides), so it is read, and every output computed
    from it stored, per element of the row, of which there are none (`x.sum() + y` with x
    (1, 0), y (1, 1): the output has an element the kernel never stores)."""
    if not ir.reduce_ndim or ir.concats or all(o.shape.is_row for o in ir.outputs):
        return
    space = reduction.iteration_space(shapes)
    reduced = reduced_positions(ir.reduce_axes, len(space))
    if not any(space[d] == 0 for d in reduced):
        return
    if any(not o.shape.is_row and not o.shape_from for o in ir.outputs):
        # a value read from no input with a reduction's shape (`var(x).clone().fill_(1.5)`):
        # the row loop would store it, and there is no row element to store it at
        raise CannotRun(f"input shapes {[tuple(s) for s in shapes]}: an output of a "
                        "reduction's shape stored along rows that are empty")
    for shape in shapes:
        own = [d for d in reduced if d >= len(space) - len(shape)]
        sizes = {d: shape[d - len(space) + len(shape)] for d in own}
        if any(space[d] == 0 and sizes[d] == 1 for d in own) and any(
                sizes[d] == space[d] == 1 for d in own):
            raise CannotRun(f"input shapes {[tuple(s) for s in shapes]}: an output read "
                            "along rows that are empty")


def _allocate(shape: torch.Size, out: Output, device: torch.device) -> torch.Tensor:
    """An output of eager's dtype, shape and memory layout (dim order)."""
    if out.layout is not None and len(out.layout) == len(shape):
        return torch.empty_permuted(shape, out.layout, dtype=out.dtype.torch, device=device)
    return torch.empty(shape, dtype=out.dtype.torch, device=device)


def _check_inputs(ir: FusionIR, inputs: tuple[Any, ...]) -> None:
    if len(inputs) != len(ir.inputs):
        raise CannotRun(f"expected {len(ir.inputs)} inputs, got {len(inputs)}")
    for t, spec in zip(inputs, ir.inputs):
        if not isinstance(t, torch.Tensor):
            raise CannotRun(f"input {spec.name} is a {type(t).__name__}, not a tensor")
        if t.dtype != spec.dtype.torch or t.dim() != spec.ndim:
            raise CannotRun(f"input {spec.name} is {t.dtype}[{t.dim()}d], the group was built "
                            f"for {spec.dtype}[{spec.ndim}d]")


def _arch(device: torch.device) -> str:
    from nvfuse.runtime.nvrtc import target_arch

    return target_arch(device)
