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
Zero-size outputs store nothing: they are left out of the launch (nvfuse.fusion.subset), and
a call whose outputs are all empty launches nothing; a reduction over empty rows with non-empty
results runs the kernel (sums give 0, products 1, means NaN, as eager) except amax / amin /
argmax / argmin, which eager refuses: those run eagerly so that eager raises its own error.
Any failure runs the eager subgraph instead, warns once naming the cause and counts a
fallback; NVFUSE_STRICT=1 raises instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from nvfuse import config, counters
from nvfuse.errors import NvfuseError
from nvfuse.fusion.ir import FusionIR, Output, reduced_positions
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.subset import select_outputs
from nvfuse.runtime import devices, kernels
from nvfuse.runtime.dump import dump
from nvfuse.schedule import concat, pointwise, reduction, split

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

    def __init__(self, ir: FusionIR, eager: fx.GraphModule, built: list[Any]) -> None:
        super().__init__()
        self.name = ir.name
        self.fusion_ir = ir
        self.ops = OpNames(ir.ops)
        self.eager = eager
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
            return tuple(self.eager(*inputs))

    def _run_kernel(self, inputs: tuple[Any, ...], cfg: config.Config) -> tuple[torch.Tensor, ...]:
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
        outputs = tuple(_allocate(s, o, ready.device)
                        for s, o in zip(ready.out_shapes, self.fusion_ir.outputs))
        if not ready.stages:  # zero-size outputs: nothing to compute
            return outputs
        inputs = devices.place_inputs(inputs, ready.device)  # 0-dim CPU tensors: to the GPU
        if POISON_OUTPUTS:
            for o in outputs:
                o.fill_(float("nan")) if o.is_floating_point() else o.untyped_storage().fill_(255)  # type: ignore[attr-defined]
        kernel_inputs, kernel_outputs = inputs, outputs
        if ready.operands is not None:  # the empty outputs are left out (nvfuse.fusion.subset)
            kernel_inputs = tuple(inputs[i] for i in ready.operands[0])
            kernel_outputs = tuple(outputs[o] for o in ready.operands[1])
        # a split reduction's workspaces: torch's caching allocator, the same device / stream
        tensors = [*kernel_inputs, *kernel_outputs,
                   *(torch.empty(n, dtype=d.torch, device=ready.device)
                     for d, n in ready.workspaces)]
        scalars = ready.scalars
        if ready.random:  # a fresh seed per launch; torch.manual_seed reproduces it
            scalars = (*scalars, int(torch.randint(0, 2**62, (), dtype=torch.int64)))
        for kernel, grid in ready.stages:
            if "launch" in cfg.dump:
                dump("launch", kernel.name, f"grid={grid} block={kernel.params.block} "
                     f"scalars={scalars} shapes={[tuple(t.shape) for t in inputs]}")
            if ready.gpu:
                _launch_gpu(kernel, ready.device, grid, tensors, scalars)
            else:
                from nvfuse.interpret.machine import run_kernel

                run_kernel(kernel.kernel_ir, tensors, scalars, grid)
            counters.bump("launches")
        return outputs

    def _prepare(self, inputs: tuple[Any, ...], cfg: config.Config) -> _Ready:
        """The slow path of a call: checks, output shapes, signature, the kernel (built once)."""
        ir = self.fusion_ir
        _check_inputs(ir, inputs)
        device = devices.group_device(inputs, self._recorded_device)
        gpu = device.type == "cuda" and not cfg.interpret
        if not gpu and not (cfg.interpret and device.type == "cpu"):
            raise CannotRun(f"inputs on {device}: kernels run on CUDA tensors, or on CPU "
                            "tensors with NVFUSE_INTERPRET=1")
        shapes = [t.shape for t in inputs]
        schedule = (reduction if ir.reduce_ndim else concat if ir.concats
                    else pointwise)
        try:
            out_shapes = schedule.output_shapes(ir, shapes)
        except RuntimeError as e:
            raise CannotRun(f"input shapes {[tuple(s) for s in shapes]} do not broadcast") from e
        outputs = tuple(_allocate(s, o, device) for s, o in zip(out_shapes, ir.outputs))
        filled = tuple(i for i, o in enumerate(outputs) if o.numel())
        if not filled:
            return _Ready(device, gpu, out_shapes, (), ())
        key, operands = self._key, None
        if len(filled) < len(outputs):  # empty outputs store nothing: leave them out
            ir, used = select_outputs(ir, filled)
            key, operands = kernels.fusion_key(ir), (used, filled)
            inputs = tuple(inputs[i] for i in used)
            outputs = tuple(outputs[o] for o in filled)
            shapes = [t.shape for t in inputs]
            schedule = reduction if ir.reduce_ndim else concat if ir.concats else pointwise
        if _nothing_to_do(ir, shapes):
            raise CannotRun(f"input shapes {[tuple(s) for s in shapes]}: an empty iteration "
                            "space for non-empty outputs")
        arch = _arch(device) if gpu else cfg.arch
        try:
            launch = schedule.plan_launch(ir, inputs, outputs, arch)
        except (RuntimeError, ValueError) as e:  # no common broadcast shape; bad reduction
            raise CannotRun(f"input shapes {[tuple(s) for s in shapes]}: {e}") from e
        plan = (split.plan_split(ir, launch)
                if isinstance(launch, reduction.ReductionLaunch) else None)
        if plan is not None:
            stages = tuple((self._kernel(ir, key, sig, params, gpu), grid)
                           for sig, params, grid in plan.stages)
            return _Ready(device, gpu, out_shapes, stages, plan.scalars, plan.workspaces,
                          operands, ir.random)
        kernel = self._kernel(ir, key, launch.signature, launch.params, gpu)
        return _Ready(device, gpu, out_shapes, ((kernel, launch.grid),), launch.scalar_args,
                      operands=operands, random=ir.random)

    def _kernel(self, ir: FusionIR, key: str, sig: Any, params: Any,
                gpu: bool) -> kernels.CompiledKernel:
        kernel = kernels.get_kernel(ir, key, sig, params, gpu)
        if all(k is not kernel for k in self._built):
            self._built.append(kernel)
        return kernel


@dataclass(frozen=True)
class _Ready:
    """A prepared call: what a repeat call with the same launch key needs to run at once."""

    device: torch.device
    gpu: bool
    out_shapes: list[torch.Size]
    # the kernels to run in order with their grids: one, two for a split reduction, none for
    # zero-size outputs
    stages: tuple[tuple[kernels.CompiledKernel, int], ...]
    scalars: tuple[int, ...]
    workspaces: tuple[tuple[Any, int], ...] = ()  # a split reduction's (dtype, numel)
    # (input indices, output indices) the kernels take when some outputs are empty; None: all
    operands: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    random: bool = False  # the kernels draw random numbers: each launch takes a fresh seed


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
        return 0 in pointwise.broadcast_shape(shapes)
    space = reduction.iteration_space(shapes)
    reduced = reduced_positions(ir.reduce_axes, len(space))
    if any(n == 0 for d, n in enumerate(space) if d not in reduced):
        return True  # no rows
    if any(space[d] == 0 for d in reduced) and any(n.op in _NEED_ELEMENTS for n in ir.nodes):
        raise CannotRun("amax / amin / argmax / argmin over an empty dim (eager raises)")
    return False


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


def _launch_gpu(kernel: kernels.CompiledKernel, device: torch.device, grid: int,
                tensors: list[torch.Tensor], scalars: tuple[int, ...]) -> None:
    from nvfuse.runtime.launch import current_stream_handle, load_kernel

    index = device.index if device.index is not None else torch.cuda.current_device()
    loaded = kernel._loaded.get(index)
    if loaded is None:
        assert kernel.cubin is not None
        loaded = load_kernel(kernel.cubin, kernel.name, index)
        kernel._loaded[index] = loaded
    params = kernel.kernel_ir.scalars  # each scalar passed as its declared C type
    args = [*tensors, *((value, p.dtype) for value, p in zip(scalars, params, strict=True))]
    loaded.launch(grid, kernel.params.block, args, 0, current_stream_handle(device))
