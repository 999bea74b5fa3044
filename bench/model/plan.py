"""Plan a bench case's kernels at its real GPU size without running them (no GPU, no memory).

Input: a `bench.cases.Case`.  Output: `PlannedCall`s, one per fusion-group call the case makes,
each holding the kernels (kernel IR + CUDA source, not compiled) and grids that the executor
would launch for the full-size shapes, the full-size tensors as *meta* tensors (shapes, strides
and byte counts without storage), and the scalar arguments.

How: the case's inputs are made on the meta device, the case runs through nvfuse (the training
case through torch.compile with the nvfuse backend, forward and backward) while
`FusionGroup.forward` is replaced by a recorder that plans the call exactly as the executor's
slow path does (`pipeline.output_shapes`, `pipeline.schedule`, `pipeline.build`) and returns
meta outputs of eager's shape, so later groups see the real shapes too.  Eager ops between
groups run on meta tensors (a case whose `plan_device` is "cpu" runs on CPU tensors instead,
its groups returning zero-filled outputs).  Meta tensors report data pointer 0, i.e. 16-byte
aligned, which is what torch's allocators give fresh GPU tensors.

`scaled_copy` makes the same call at a smaller size with real CPU tensors (for the interpreter's
byte counts, bench/model/traffic.py): kept (outer) dims of the iteration space shrink, the
reduced dims and the innermost dim keep their sizes, and the copy is only used when every stage's
signature equals the full-size one (so it is the same kernel).  Where that fails because the
reduced dims cannot shrink without another signature -- a split column reduction (`[16384,
8192].sum(0)`): a shorter reduced extent or fewer column blocks give another split count, hence
another chunk length and kernel-1 block -- the `pinned` copy shrinks the kept dims only, the
innermost one included (in multiples of KEPT_INNER_STEP elements, so column blocks stay whole
and vector widths stay), and plans it at the full call's split count (nvfuse's `choose_splits`
answers it while the copy is planned; S is a kernel argument, not part of the signature).
Each block of that copy then does exactly a full-size block's work (the same chunk of the same
reduced extent over the same kept elements), only fewer blocks run, and the workspaces (kept
elements x S) shrink with the kept elements.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

import nvfuse
from bench.cases import Case, train_step
from nvfuse.fusion.ir import reduced_positions
from nvfuse import pipeline
from nvfuse.runtime import executor, kernels
from nvfuse.runtime.executor import FusionGroup
from nvfuse.runtime.horizontal import HorizontalGroup
from nvfuse.schedule import names, pointwise, reduction, split

# A pinned copy's innermost kept dim shrinks in multiples of this: COLUMN_X threads x the most
# lanes a column block has (nvfuse/schedule/reduction.py), so every column block stays whole.
KEPT_INNER_STEP = reduction.COLUMN_X * reduction.COLUMN_MAX_LANES


@dataclass
class Stage:
    kernel: kernels.CompiledKernel
    grid: int


@dataclass
class PlannedCall:
    """One fusion-group call: its stages in launch order and the tensors the kernels take
    (inputs, outputs, split workspaces -- the kernels' tensor parameters, in order)."""

    group: FusionGroup
    inputs: tuple[torch.Tensor, ...]
    stages: list[Stage]
    tensors: list[torch.Tensor]
    scalars: tuple[tuple[int, ...], ...]  # per stage, its kernel's (a seed is 0)
    bundle: int | None = None  # the horizontal bundle whose call made it (None: alone)
    splits: int = 1  # a split reduction's chunks per row (schedule/split.py S); 1: not split


def plan_call(group: FusionGroup, inputs: Sequence[torch.Tensor], arch: str,
              device: torch.device) -> tuple[PlannedCall | None, tuple[torch.Tensor, ...]]:
    """The executor's slow path (FusionGroup._prepare) without a launch, through the same
    pipeline functions: the stages for these tensors, and outputs of eager's dtype and shape on
    `device`, zero-filled off the meta device (None: nothing to launch)."""
    launch = executor._plan_launch(group.fusion_ir, group._key, inputs, device, arch)
    outputs = tuple(torch.empty_strided(shape, strides, dtype=dtype, device=device)
                    for shape, strides, dtype in launch.outputs)
    if device.type != "meta":  # eager ops between groups may index with them: zeros, in range
        outputs = tuple(o.zero_() for o in outputs)
    if not launch.stages:
        return None, outputs
    ins, outs = tuple(inputs), outputs
    if launch.operands is not None:  # the empty outputs are left out of the launch
        ins = tuple(ins[i] for i in launch.operands[0])
        outs = tuple(outs[o] for o in launch.operands[1])
    stages = [Stage(pipeline.build(launch.ir, launch.key, sig, params, False), grid)
              for sig, params, grid in launch.stages]
    work = [torch.empty(n, dtype=d.torch, device=device) for d, n in launch.workspaces]
    scalars, _ = executor.bind_launch([s.kernel.kernel_ir for s in stages], launch.scalars)
    call = PlannedCall(group, ins, stages, [*ins, *outs, *work], scalars,
                       splits=launch.scalars.get(names.SPLITS, 1))
    return call, outputs


@contextlib.contextmanager
def _recording(calls: list[PlannedCall], arch: str, device: str = "meta") -> Iterator[None]:
    """Replace FusionGroup.forward by a planner returning uninitialised outputs on `device`
    (meta: module docstring)."""
    original = FusionGroup.forward
    original_bundle = HorizontalGroup.forward
    bundles = itertools.count()

    def forward(self: FusionGroup, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        call, outputs = plan_call(self, inputs, arch, torch.device(device))
        if call is not None:
            calls.append(call)
        return outputs

    def bundle_forward(self: HorizontalGroup, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # each member planned alone, tagged with the bundle (the model merges its shared
        # launches as the runtime's horizontal schedule would form them)
        tag, first = next(bundles), len(calls)
        outputs = [o for m, part in zip(self.members, self._split)
                   for o in forward(m, *inputs[part])]
        for call in calls[first:]:
            call.bundle = tag
        return tuple(outputs)

    FusionGroup.forward = forward  # type: ignore[method-assign]
    HorizontalGroup.forward = bundle_forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        FusionGroup.forward = original  # type: ignore[method-assign]
        HorizontalGroup.forward = original_bundle  # type: ignore[method-assign]


def plan_case(case: Case, arch: str = "sm_90") -> list[PlannedCall]:
    """Every fusion-group call `case` makes at its full size, planned on meta tensors."""
    from bench.__main__ import nvfuse_backend

    torch._dynamo.reset()
    inputs = case.make_inputs("full", case.plan_device)
    calls: list[PlannedCall] = []
    with _recording(calls, arch, case.plan_device):
        if case.train:
            fn = train_step(torch.compile(case.fn, backend=nvfuse_backend()))
        else:
            fn = nvfuse.fuse(case.fn, inputs)
        fn(*inputs)
    return calls


# -- the scaled copy ----------------------------------------------------------------------------


def _scaled_tensor(t: torch.Tensor, shape: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    """A CPU tensor of `shape` laid out like `t`: the same dim order, broadcast (stride 0) dims
    expanded, random values (never zeros)."""
    base = [1 if st == 0 and n != 1 else n for n, st in zip(shape, t.stride())]
    order = sorted(range(t.dim()), key=lambda d: (-t.stride()[d], d))
    if t.is_floating_point():
        data = torch.randn(base, generator=gen).to(t.dtype)
    elif t.dtype == torch.bool:
        data = torch.rand(base, generator=gen) > 0.5
    else:
        data = torch.randint(1, 8, base, generator=gen).to(t.dtype)
    data = data.permute(order).contiguous().permute([order.index(d) for d in range(t.dim())])
    return data.expand(list(shape))


def _space(call: PlannedCall) -> tuple[list[int], set[int]]:
    """The iteration space and the positions that do not shrink.  A reduction's space is the
    broadcast of its inputs; its innermost dim stays unless it is reduced.  Any other fusion's
    space is its first output's shape (a concatenation's inputs are pieces of it); its
    innermost dim stays unless it is its only one.  An innermost dim shrinks in multiples of
    128 elements, so vector widths stay."""
    ir = call.group.fusion_ir
    if ir.reduce_ndim:
        space = list(pointwise.broadcast_shape([t.shape for t in call.inputs]))
        keep = {len(space) - 1} - set(reduced_positions(ir.reduce_axes, len(space)))
    else:
        space = list(call.tensors[len(call.inputs)].shape)
        keep = {len(space) - 1} if len(space) > 1 else set()
    return space, keep


@dataclass
class ScaledCall:
    """A scaled copy of a call and, per kernel tensor, the factors that turn the copy's byte
    counts into the full size's: `requested[k]` for accesses (every access is per element of
    the iteration space it runs over), `unique[k]` for distinct bytes (the tensor's own size
    ratio); `pinned`: the kept dims shrank at the full call's split count (module docstring)."""

    call: PlannedCall
    requested: list[float]
    unique: list[float]
    pinned: bool = False


def _reach(t: torch.Tensor) -> int:
    """Elements the tensor can address (a broadcast view counts its storage once)."""
    if t.numel() == 0:
        return 0
    return 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()))


def _spans(call: PlannedCall, t: torch.Tensor, rank: int) -> list[bool] | None:
    """Per position of the iteration space, whether `t` varies along it (None: a workspace)."""
    ir = call.group.fusion_ir
    if t.dim() < rank and ir.reduce_ndim and any(t is o for o in call.tensors[
            len(call.inputs):len(call.inputs) + len(ir.outputs)]):
        t = reduction._row_view(t, ir.reduce_axes)  # an output with its reduced dims dropped
    elif t.dim() > rank or any(t is w for w in call.tensors[len(call.inputs) + len(ir.outputs):]):
        return None
    pad = rank - t.dim()
    return [False] * pad + [n != 1 and st != 0 for n, st in zip(t.shape, t.stride())]


def _shrink(space: list[int], keep: set[int], reduced: set[int], budget: int,
            step: int = 128) -> list[int]:
    """Smaller sizes for `space`: kept outer dims first (outermost first), then reduced ones,
    never those in `keep`, none below 2; an innermost dim that shrinks keeps a multiple of
    `step` elements (at least `step`)."""
    new = list(space)
    numel = math.prod(space)
    for d in [d for d in range(len(space)) if d not in reduced] + sorted(reduced):
        if numel <= budget:
            break
        if d in keep or space[d] <= 2:
            continue
        rest = numel // space[d]
        new[d] = max(2, min(space[d], budget // max(rest, 1)))
        if d == len(space) - 1:  # an innermost dim: keep its alignment and vector widths
            new[d] = min(space[d], max(step, new[d] // step * step))
        numel = rest * new[d]
    return new


@contextlib.contextmanager
def _splits_pinned(splits: int) -> Iterator[None]:
    """nvfuse's split heuristic (schedule/split.py `choose_splits`) answers `splits` (1: the
    one-kernel schedule) while a pinned copy is planned."""
    original = split.choose_splits
    split.choose_splits = lambda *args, **kwargs: splits  # type: ignore[assignment]
    try:
        yield
    finally:
        split.choose_splits = original  # type: ignore[assignment]


def scaled_copy(call: PlannedCall, budget: int, arch: str,
                pinned: bool = False) -> ScaledCall | None:
    """The same call with the iteration space shrunk to about `budget` elements, as CPU
    tensors, with its scale factors; None when nothing can shrink or the copy's kernels differ
    (another signature: another bucket, split or schedule).  `pinned`: only the kept dims
    shrink, the innermost one included, at the full call's split count (module docstring)."""
    space, keep = _space(call)
    ir = call.group.fusion_ir
    reduced = (set(reduced_positions(ir.reduce_axes, len(space))) if ir.reduce_ndim
               else set())
    if pinned:
        new = _shrink(space, reduced, reduced, budget, KEPT_INNER_STEP)
    else:
        new = _shrink(space, keep, reduced, budget)
    if math.prod(new) > budget:
        return None
    gen = torch.Generator().manual_seed(0)
    rank = len(space)
    scaled = []
    for t in call.inputs:
        pad = rank - t.dim()
        shape = [new[pad + i] if n == space[pad + i] and n != 1 else n
                 for i, n in enumerate(t.shape)]
        scaled.append(_scaled_tensor(t, shape, gen))
    try:
        with _splits_pinned(call.splits) if pinned else contextlib.nullcontext():
            copy, _ = plan_call(call.group, scaled, arch, torch.device("cpu"))
    except (RuntimeError, ValueError):
        return None
    if copy is None or [s.kernel.signature for s in copy.stages] != [
            s.kernel.signature for s in call.stages]:
        return None
    requested, unique = [], []
    for full, small in zip(call.tensors, copy.tensors):
        ratio = _reach(full) / max(_reach(small), 1)
        spans = _spans(call, full, rank)
        per_row = 1.0
        if spans is not None:  # read again for every index of a kept dim it is broadcast along
            per_row = math.prod(space[d] / new[d] for d in range(rank)
                                if d not in reduced and not spans[d])
        requested.append(ratio * per_row)
        unique.append(ratio)
    return ScaledCall(copy, requested, unique, pinned)
