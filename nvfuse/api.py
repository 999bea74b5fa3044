"""The public entry point: nvfuse.fuse(obj, example_inputs) -> FusedModule.

FusedModule keeps one *plan* per input key (dtypes, ranks and devices; exact sizes too for
frontends whose traces bake sizes in).  A plan is the partitioned graph IR: the graph after the
cleanup passes, with each fusion group replaced by a `FusionGroup` that runs its kernel.  Plans
are cheap; kernels are shared across plans and modules through the signature cache, so a new
batch size costs a retrace at most, never a recompile.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import torch
import torch.fx as fx
import torch.utils._pytree as pytree

from nvfuse import config
from nvfuse.errors import NvfuseError
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.frontend.torchscript import graph_module_from_script, is_torchscript
from nvfuse.fusion.build import build_fusion, dim_order
from nvfuse.fusion.partition import partition
from nvfuse.graph.passes import annotate, run_passes
from nvfuse.graph.views import SIZED
from nvfuse.runtime.dump import dump
from nvfuse.runtime.executor import FusionGroup, prefetch_groups, warn_once
from nvfuse.runtime.kernels import CompiledKernel
from nvfuse.runtime.replay import Replay, record, replay_key, replayable

REPLAY_CACHE_SIZE = 64  # replays kept per module (distinct input shapes and layouts in use)


class Plan:
    """One partitioned graph and its fusion groups (gm None: run the original, unfused).
    `grad_params`: the graph reads a tensor attribute that requires grad (a trainable weight).
    `compiled`: make_fx could not trace the callable (data-dependent control flow, outputs it
    cannot represent), so it runs through torch.compile with the nvfuse backend, whose graph
    breaks leave such code to Python and fuse the graphs between them."""

    def __init__(self, gm: fx.GraphModule | None, groups: list[FusionGroup],
                 grad_params: bool = False, sized: bool = False, compiled: bool = False) -> None:
        self.gm = gm
        self.groups = groups
        self.grad_params = grad_params
        self.sized = sized  # the graph passes decided on the example's sizes (sunk views)
        self.compiled = compiled
        self.replayable = gm is not None and replayable(gm)


class _ReplayEntry:
    """A cached call's replay, the plan it replays and the flags it was recorded under.
    `grad_sensitive`: an input or weight requires grad, so with grad mode on the call must go
    through autograd instead."""

    __slots__ = ("replay", "plan", "config", "grad_sensitive")

    def __init__(self, replay: Replay, plan: Plan, cfg: config.Config,
                 grad_sensitive: bool) -> None:
        self.replay, self.plan, self.config, self.grad_sensitive = replay, plan, cfg, grad_sensitive


class FusedModule:
    """Callable like the object given to `nvfuse.fuse`; fused where nvfuse can, eager elsewhere.

    `fusion_groups`: the groups of the most recent plan.  `kernels`: every specialization built
    for this module so far (`.name`, `.source`, `.signature`, `.kernel_ir`)."""

    def __init__(self, obj: Any, example_inputs: Sequence[Any] | None = None,
                 trace_now: bool = True) -> None:
        self._original = obj
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._sized: set[tuple[Any, ...]] = set()  # keys whose plans also need the sizes
        self._latest: Plan | None = None
        self.kernels: list[CompiledKernel] = []
        self._autograd: Callable[..., Any] | None = None
        self._replays: dict[tuple[Any, ...], _ReplayEntry] = {}
        self._script_gm: fx.GraphModule | None = None
        self._is_script = is_torchscript(obj)
        if self._is_script:
            self._arity = _script_arity(obj)
            try:
                self._script_gm = graph_module_from_script(obj, example_inputs)
            except NvfuseError:
                pass  # some scripts need input types (x.dtype): converted per plan instead
        else:
            if not callable(obj):
                raise TypeError(
                    f"nvfuse.fuse: expected a TorchScript function or module, an fx.GraphModule, "
                    f"an nn.Module or a callable of tensors; got {type(obj).__name__}")
            if example_inputs is None:
                raise ValueError(
                    "nvfuse.fuse: example_inputs are required for an nn.Module, fx.GraphModule or "
                    "callable (nvfuse traces it with them); pass a tuple of example tensors")
            self._arity = len(tuple(example_inputs))
        if not config.get().interpret and torch.cuda.is_available():
            from nvfuse.runtime.nvrtc import target_arch, warm_up_async

            warm_up_async(target_arch())  # overlaps NVRTC's start-up with tracing
        if example_inputs is not None:
            example_inputs = tuple(example_inputs)
            self._check_arity(example_inputs)
            if trace_now and not config.get().disable:
                self._plan_for(example_inputs)

    # -- public ------------------------------------------------------------------------------
    @property
    def fusion_groups(self) -> list[FusionGroup]:
        return list(self._latest.groups) if self._latest is not None else []

    def __call__(self, *inputs: Any) -> Any:
        if self._replays:  # the fast path: a fully fused plan already run with such inputs
            entry = self._replays.get(replay_key(inputs))  # type: ignore[arg-type]
            if (entry is not None and entry.config is config.get()
                    and not (entry.grad_sensitive and torch.is_grad_enabled())):
                self._latest = entry.plan
                try:
                    return entry.replay.run(inputs)
                except Exception:
                    if entry.config.strict:
                        raise
                    self._replays.clear()  # the plan's own path falls back group by group
        self._check_arity(inputs)
        cfg = config.get()
        if cfg.disable:
            return self._original(*inputs)
        plan = self._plan_for(inputs)
        grad_sensitive = plan.grad_params or any(isinstance(t, torch.Tensor) and t.requires_grad
                                                 for t in pytree.tree_leaves(list(inputs)))
        if plan.compiled or grad_sensitive and torch.is_grad_enabled():
            return self._call_with_autograd(inputs)
        if plan.gm is None:
            return self._original(*inputs)
        if not plan.replayable or "launch" in cfg.dump:
            return plan.gm.forward(*inputs)  # a plan's graph has no hooks: skip nn.Module.__call__
        key = replay_key(inputs)
        if key is None:
            return plan.gm.forward(*inputs)
        result, replay = record(plan.gm, inputs)
        if replay is not None:
            if len(self._replays) >= REPLAY_CACHE_SIZE:
                self._replays.clear()
            self._replays[key] = _ReplayEntry(replay, plan, cfg, grad_sensitive)
        return result

    def _call_with_autograd(self, inputs: Sequence[Any]) -> Any:
        """Kernels return tensors without autograd history, so a call that needs gradients goes
        through AOTAutograd (the torch.compile path): forward and backward both fused.  A
        TorchScript function goes there as its converted aten graph, which shares the script's
        parameters and buffers, so gradients and running statistics land on the user's.  So
        does any call of a callable make_fx cannot trace (`Plan.compiled`)."""
        if self._autograd is None:
            from nvfuse.frontend.dynamo import nvfuse_backend

            if self._is_script and self._script_gm is None:
                # converted per plan only (its graph depends on the inputs' dtypes)
                warn_once("nvfuse: this TorchScript function runs unfused when gradients are "
                          "needed (use torch.compile(model, backend='nvfuse') to train fused)")
                return self._original(*inputs)
            target = self._script_gm if self._is_script else self._original
            self._autograd = torch.compile(target, backend=nvfuse_backend)
        return self._autograd(*inputs)

    # -- plans -------------------------------------------------------------------------------
    def _check_arity(self, inputs: Sequence[Any]) -> None:
        if self._arity is not None and len(inputs) != self._arity:
            raise TypeError(f"nvfuse: the fused function takes {self._arity} input(s), "
                            f"got {len(inputs)}")

    def _plan_for(self, inputs: Sequence[Any]) -> Plan:
        generic = self._key(inputs)
        key = (*generic, _sizes(inputs)) if generic in self._sized else generic
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(inputs)
            device = _cuda_device(inputs)
            if device is not None and not config.get().interpret:
                prefetch_groups(plan.groups, device)
            if plan.sized and self._is_script and key is generic:
                # a size-generic TorchScript key, but the plan moved views using these sizes
                self._sized.add(generic)
                key = (*generic, _sizes(inputs))
            self._plans[key] = plan
        self._latest = plan
        return plan

    def _key(self, inputs: Sequence[Any]) -> tuple[Any, ...]:
        """What a plan is specialized on: dtypes, devices, grad flags, memory layouts (outputs
        take eager's layout, which follows the inputs'), and sizes where the trace bakes them
        in (make_fx; TorchScript graphs stay size-generic, so only ranks there).  Also which
        inputs are one and the same tensor: a trace of f(x, x) reads one placeholder for both,
        so its plan must not serve f(a, b)."""
        key = tuple(_input_key(t, self._is_script) for t in inputs)
        return (*key, _repeats(inputs)) if len(inputs) > 1 else key

    def _make_plan(self, inputs: Sequence[Any]) -> Plan:
        if self._is_script:
            try:
                script_gm = self._script_gm or graph_module_from_script(self._original, inputs)
            except NvfuseError as e:
                if config.get().strict:
                    raise
                warn_once(f"nvfuse: {e}; the TorchScript function runs unfused")
                return Plan(None, [])
            gm = annotate(script_gm, list(inputs))
        else:
            try:
                gm = trace_to_aten(self._original, list(inputs))
            except Exception as e:  # make_fx's many refusals: RuntimeError, NotImplementedError..
                warn_once(f"nvfuse: make_fx cannot trace {type(self._original).__name__} "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); it runs "
                          "through torch.compile(backend='nvfuse') instead")
                return Plan(None, [], compiled=True)
        gm = run_passes(gm)
        if "graph" in config.get().dump:
            dump("graph", type(self._original).__name__, str(gm.graph))
        fused, names = partition(gm)
        groups = []
        for name in names:
            sub = getattr(fused, name)
            ir = build_fusion(name, sub)
            if "fusion_ir" in config.get().dump:
                dump("fusion_ir", name, str(ir))
            group = FusionGroup(ir, sub, self.kernels)
            setattr(fused, name, group)
            groups.append(group)
        return Plan(fused, groups, _reads_trainable_tensor(gm), bool(gm.meta.get(SIZED)))


def _input_key(value: Any, script: bool) -> Any:
    """One input's part of a plan key.  Containers (a traced function's tuple, list or dict
    inputs) are keyed by their structure and their tensors' facts, never by repr(), which would
    print the tensors' values and make every call a new plan."""
    if isinstance(value, torch.Tensor):
        if script:
            return (value.dtype, value.dim(), value.device, value.requires_grad, dim_order(value))
        # exact sizes: the strides themselves pin the layout, and are cheaper to read
        return (value.dtype, value.shape, value.stride(), value.device, value.requires_grad)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_input_key(v, script) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _input_key(v, script)) for k, v in value.items()))
    return ("value", repr(value))


def _cuda_device(inputs: Sequence[Any]) -> torch.device | None:
    for t in pytree.tree_leaves(list(inputs)):
        if isinstance(t, torch.Tensor) and t.device.type == "cuda":
            return t.device
    return None


def _repeats(inputs: Sequence[Any]) -> tuple[int, ...] | None:
    """Per tensor leaf of `inputs`, the index of the first leaf that is the same tensor; None
    when every leaf is distinct (the usual case)."""
    leaves = pytree.tree_leaves(list(inputs))
    ids = [id(t) for t in leaves if isinstance(t, torch.Tensor)]
    if len(set(ids)) == len(ids):
        return None
    return tuple(ids.index(i) for i in ids)


def _sizes(inputs: Sequence[Any]) -> tuple[Any, ...]:
    return ("sizes", *(tuple(t.shape) if isinstance(t, torch.Tensor) else None
                       for t in pytree.tree_leaves(list(inputs))))


def _reads_trainable_tensor(gm: fx.GraphModule) -> bool:
    """Whether a get_attr of `gm` is a tensor requiring grad (then eager's result would too)."""
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value: Any = gm
            for part in str(node.target).split("."):
                value = getattr(value, part, None)
            if isinstance(value, torch.Tensor) and value.requires_grad:
                return True
    return False


def _script_arity(obj: Any) -> int | None:
    try:
        n = len(list(obj.graph.inputs()))
    except (AttributeError, RuntimeError):
        return None
    return n - 1 if isinstance(obj, torch.jit.ScriptModule) else n


def fuse(obj: Callable[..., Any], example_inputs: Sequence[Any] | None = None) -> FusedModule:
    """Fuse `obj` (see FusedModule).  TorchScript objects need no example inputs."""
    return FusedModule(obj, example_inputs)
