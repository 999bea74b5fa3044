"""The public entry point: nvfuse.fuse(obj, example_inputs) -> FusedModule.

FusedModule keeps one *plan* per input key (dtypes, ranks and devices; exact sizes too for
frontends whose traces bake sizes in).  A plan is the partitioned graph IR: the graph after the
cleanup passes, with each fusion group replaced by a `FusionGroup` that runs its kernel.  Plans
are cheap; kernels are shared across plans and modules through the signature cache, so a new
batch size costs a retrace at most, never a recompile.
"""

from __future__ import annotations

import itertools
from typing import Any
from collections.abc import Callable, Sequence

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch.multiprocessing.reductions import StorageWeakRef

from nvfuse import config, pipeline
from nvfuse.errors import NvfuseError
from nvfuse.frontend.cross_entropy import training_cross_entropy
from nvfuse.frontend.functional import Unfunctionalizable
from nvfuse.frontend.fx import raises_eagerly
from nvfuse.frontend.protocol import Untraceable, frontend_for
from nvfuse.fusion.build import dim_order
from nvfuse.runtime.executor import FusionGroup, prefetch_groups, warn_once
from nvfuse.runtime.graphs import GraphedReplay, GraphSet
from nvfuse.runtime.horizontal import HorizontalGroup
from nvfuse.runtime.kernels import CompiledKernel
from nvfuse.runtime.replay import Replay, record, replay_key, replayable

REPLAY_CACHE_SIZE = 64  # replays kept per module (distinct input shapes and layouts in use)


_GRAPH_IDS = itertools.count()


class Plan:
    """One partitioned graph and its fusion groups (gm None: run the original, unfused).
    `grad_params`: the graph reads a tensor attribute that requires grad (a trainable weight).
    `compiled`: make_fx could not trace the callable (data-dependent control flow, outputs it
    cannot represent), so it runs through torch.compile with the nvfuse backend, whose graph
    breaks leave such code to Python and fuse the graphs between them.  `eager`: the callable
    runs as it is, always (it raises eager's own error on these inputs, or it does what a
    traced graph cannot reproduce).  `mutates_inputs`: the graph writes into an input, which is
    exact only while no two inputs share memory.  `offsets`: the graph holds an `as_strided`,
    whose storage offset is absolute (a view of a written input rebuilt after the write takes
    the example's offset), so the plan holds for the inputs' storage offsets it was traced at."""

    def __init__(self, gm: fx.GraphModule | None, groups: list[FusionGroup],
                 grad_params: bool = False, sized: bool = False, compiled: bool = False,
                 eager: bool = False) -> None:
        self.gm = gm
        self.groups = groups
        self.grad_params = grad_params
        self.sized = sized  # the graph passes decided on the example's sizes (sunk views)
        self.compiled = compiled
        self.eager = eager
        self.mutates_inputs = gm is not None and (
            _writes_placeholder(gm) or any(g.writes for g in groups))
        self.replayable = gm is not None and not self.mutates_inputs and replayable(gm)
        self.offsets = gm is not None and any(
            node.target is torch.ops.aten.as_strided.default for node in gm.graph.nodes)


class _ReplayEntry:
    """A cached call's replay, the plan it replays and the flags it was recorded under.
    `grad_sensitive`: an input or weight requires grad, so with grad mode on the call must go
    through autograd instead."""

    __slots__ = ("replay", "plan", "config", "grad_sensitive")

    def __init__(self, replay: Replay | GraphedReplay, plan: Plan, cfg: config.Config,
                 grad_sensitive: bool) -> None:
        self.replay, self.plan, self.config, self.grad_sensitive = replay, plan, cfg, grad_sensitive


class FusedModule:
    """Callable like the object given to `nvfuse.fuse`; fused where nvfuse can, eager elsewhere.

    `fusion_groups`: the groups of the most recent plan.  `kernels`: every specialization built
    for this module so far (`.name`, `.source`, `.signature`, `.kernel_ir`).

    `cuda_graphs=True`: a fully fused call is captured into a CUDA graph per input shape and
    layout at its second call and replayed after (nvfuse/runtime/graphs.py: which calls are
    captured, and the output reuse rule); `cuda_graph_skips` counts the calls that were not,
    by reason."""

    def __init__(self, obj: Any, example_inputs: Sequence[Any] | None = None,
                 trace_now: bool = True, compile_fallback: bool = True, *,
                 cuda_graphs: bool = False) -> None:
        self._original = obj
        self._graphs = GraphSet() if cuda_graphs else None
        self._compile_fallback = compile_fallback
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._sized: set[tuple[Any, ...]] = set()  # keys whose plans also need the sizes
        self._offset: set[tuple[Any, ...]] = set()  # keys whose plans need storage offsets
        self._latest: Plan | None = None
        self.kernels: list[CompiledKernel] = []
        self._autograd: Callable[..., Any] | None = None
        self._replays: dict[tuple[Any, ...], _ReplayEntry] = {}
        if not config.get().interpret and torch.cuda.is_available():
            from nvfuse.runtime.nvrtc import target_arch, warm_up_async

            warm_up_async(target_arch())  # overlaps NVRTC's start-up with tracing
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)  # one input, not a sequence of its rows
        self._frontend = frontend_for(obj, example_inputs)
        self._arity = self._frontend.arity  # (least, most) positional inputs, where known
        if example_inputs is not None:
            example_inputs = tuple(example_inputs)
            self._check_arity(example_inputs, " example input(s)")
            if trace_now and not config.get().disable:
                self._plan_for(example_inputs)

    # -- public ------------------------------------------------------------------------------
    @property
    def fusion_groups(self) -> list[FusionGroup]:
        return list(self._latest.groups) if self._latest is not None else []

    @property
    def cuda_graph_skips(self) -> dict[str, int]:
        """Calls that ran without a CUDA graph, by reason (empty without cuda_graphs=True)."""
        return dict(self._graphs.skips) if self._graphs is not None else {}

    def graph_inputs(self, *inputs: Any) -> tuple[torch.Tensor, ...] | None:
        """The static input buffers of the CUDA graph for calls like `inputs` (None: no
        capture yet).  Write new values into them and pass them themselves: nothing is copied."""
        entry = self._replays.get(replay_key(inputs)) if self._replays else None  # type: ignore[arg-type]
        graphed = entry.replay if entry is not None else None
        if isinstance(graphed, GraphedReplay) and graphed.static is not None:
            return tuple(graphed.static)
        return None

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
                    self._drop_replays()  # the plan's own path falls back group by group
        self._check_arity(inputs)
        cfg = config.get()
        graphs = self._graphs
        if cfg.disable:
            if graphs is not None:
                graphs.skip("nvfuse is disabled (NVFUSE_DISABLE=1)")
            return self._original(*inputs)
        plan = self._plan_for(inputs)
        if plan.eager or plan.mutates_inputs and _share_memory(inputs):
            if graphs is not None:
                graphs.skip("the call runs eagerly" if plan.eager else
                            "the plan writes into an input")
            return self._original(*inputs)
        grad_sensitive = plan.grad_params or any(isinstance(t, torch.Tensor) and t.requires_grad
                                                 for t in pytree.tree_leaves(list(inputs)))
        if plan.compiled or grad_sensitive and torch.is_grad_enabled():
            if graphs is not None:
                graphs.skip("the call runs through torch.compile (graph breaks)" if plan.compiled
                            else "the call needs autograd")
            return self._call_with_autograd(inputs)
        if plan.gm is None:
            if graphs is not None:
                graphs.skip("the graph runs unfused")
            return self._original(*inputs)
        key = replay_key(inputs) if plan.replayable and "launch" not in cfg.dump else None
        if key is None:
            if graphs is not None:
                graphs.skip(_not_replayable(plan, inputs, cfg))
            return plan.gm.forward(*inputs)  # a plan's graph has no hooks: skip nn.Module.__call__
        result, replay = record(plan.gm, inputs)
        if replay is not None:
            if len(self._replays) >= REPLAY_CACHE_SIZE:
                self._drop_replays()
            run: Any = replay if graphs is None else graphs.wrap(replay, inputs, cfg)
            self._replays[key] = _ReplayEntry(run, plan, cfg, grad_sensitive)
        elif graphs is not None:
            graphs.skip("a group ran eagerly, or the call is not replayable (an input passed "
                        "twice, container inputs)")
        return result

    def _drop_replays(self) -> None:
        self._replays.clear()
        if self._graphs is not None:
            self._graphs.clear()

    def _call_with_autograd(self, inputs: Sequence[Any]) -> Any:
        """Kernels return tensors without autograd history, so a call that needs gradients goes
        through AOTAutograd (the torch.compile path): forward and backward both fused, on the
        frontend's `autograd_target` (a TorchScript function's converted aten graph, which
        shares the script's parameters and buffers, so gradients and running statistics land on
        the user's).  So does any call of a callable make_fx cannot trace (`Plan.compiled`).
        A frame Dynamo cannot compile (its fake tensors refuse an op eager runs, e.g. an empty
        matmul of mixed dtypes) runs eagerly, frame by frame as Dynamo's own fallback does, so
        nothing runs twice; eager's own error where eager raises too.  Strict mode
        (NVFUSE_STRICT=1) raises Dynamo's error instead."""
        if self._autograd is None:
            target = self._frontend.autograd_target()
            if target is None:
                warn_once("nvfuse: this TorchScript function runs unfused when gradients are "
                          "needed (use torch.compile(model, backend='nvfuse') to train fused)")
                return self._original(*inputs)
            self._autograd = torch.compile(target, backend=nvfuse_backend)
        if config.get().strict:
            return self._autograd(*inputs)
        with torch._dynamo.config.patch(suppress_errors=True):
            return self._autograd(*inputs)

    # -- plans -------------------------------------------------------------------------------
    def _check_arity(self, inputs: Sequence[Any], what: str = "") -> None:
        if self._arity is None:
            return
        least, most = self._arity
        if least <= len(inputs) and (most is None or len(inputs) <= most):
            return
        expected = (f"at least {least}" if most is None else str(least) if least == most
                    else f"{least} to {most}")
        name = getattr(self._original, "__name__", type(self._original).__name__)
        raise TypeError(f"nvfuse: {name} takes {expected} input(s), got {len(inputs)}{what}")

    def _plan_for(self, inputs: Sequence[Any]) -> Plan:
        generic = self._key(inputs)
        key = self._specialized(generic, inputs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(inputs)
            device = _cuda_device(inputs)
            if device is not None and not config.get().interpret:
                prefetch_groups(plan.groups, device)
            if plan.sized and self._frontend.size_generic:
                # a size-generic TorchScript key, but the plan moved views using these sizes
                self._sized.add(generic)
            if plan.offsets:
                self._offset.add(generic)
            key = self._specialized(generic, inputs)
            self._plans[key] = plan
        self._latest = plan
        return plan

    def _specialized(self, generic: tuple[Any, ...], inputs: Sequence[Any]) -> tuple[Any, ...]:
        """The plan key: `generic` plus the sizes or storage offsets where a plan made for it
        depends on them (`Plan.sized`, `Plan.offsets`)."""
        key = generic
        if generic in self._sized:
            key = (*key, _sizes(inputs))
        if generic in self._offset:
            key = (*key, ("offsets", *(t.storage_offset() if isinstance(t, torch.Tensor) else None
                                       for t in pytree.tree_leaves(list(inputs)))))
        return key

    def _untraceable(self, inputs: Sequence[Any], error: Exception) -> Plan:
        """The plan for a callable make_fx refused.  Where the program itself raises on these
        inputs (an op refusing its dtype), a call runs it eagerly so the caller gets eager's
        own error.  Otherwise it goes through torch.compile with the nvfuse backend, except for
        a graph that backend handed over (`compile_fallback` False): compiling that again
        would recurse, so it runs as it is."""
        if raises_eagerly(self._original, inputs):
            return Plan(None, [], eager=True)
        if not self._compile_fallback:
            warn_once(f"nvfuse: make_fx cannot trace a graph torch.compile handed over "
                      f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); it runs "
                      "eagerly")
            return Plan(None, [], eager=True)
        warn_once(f"nvfuse: make_fx cannot trace {type(self._original).__name__} "
                  f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); it runs "
                  "through torch.compile(backend='nvfuse') instead")
        return Plan(None, [], compiled=True)

    def _key(self, inputs: Sequence[Any]) -> tuple[Any, ...]:
        """What a plan is specialized on: dtypes, devices, grad flags, memory layouts (outputs
        take eager's layout, which follows the inputs'), and sizes where the trace bakes them
        in (make_fx; TorchScript graphs stay size-generic, so only ranks there)."""
        return tuple(_input_key(t, self._frontend.size_generic) for t in inputs)

    def _make_plan(self, inputs: Sequence[Any]) -> Plan:
        try:
            gm = self._frontend.trace(inputs)
        except Unfunctionalizable as e:
            warn_once(f"nvfuse: {e}; {type(self._original).__name__} runs eagerly")
            return Plan(None, [], eager=True)
        except Untraceable as e:
            return self._untraceable(inputs, e.__cause__ if isinstance(e.__cause__, Exception)
                                     else e)
        except NvfuseError as e:
            if config.get().strict:
                raise
            warn_once(f"nvfuse: {e}; the TorchScript function runs unfused")
            return Plan(None, [])
        # dump file names: one per graph (a per-process count) and per group of that graph
        graph_id = f"g{next(_GRAPH_IDS)}_" \
            f"{getattr(self._original, '__name__', type(self._original).__name__)}"
        planned = pipeline.plan(gm, graph_id)
        groups = []
        by_name = {}
        for g in planned.groups:
            group = FusionGroup(g.ir, g.eager, self.kernels, g.writes)
            setattr(planned.fused, g.name, group)
            groups.append(group)
            by_name[g.name] = (group, sum(n.op == "placeholder" for n in g.eager.graph.nodes))
        for name, members in planned.bundles:
            setattr(planned.fused, name, HorizontalGroup(
                name, [by_name[m][0] for m in members], [by_name[m][1] for m in members]))
        return Plan(planned.fused, groups, _reads_trainable_tensor(planned.graph), planned.sized)


def _not_replayable(plan: Plan, inputs: Sequence[Any], cfg: config.Config) -> str:
    """Why a call of `plan` cannot be replayed (so cannot be captured either)."""
    if "launch" in cfg.dump:
        return "NVFUSE_DUMP=launch prints every launch"
    if plan.mutates_inputs:
        return "the plan writes into an input"
    if not plan.replayable:
        return "the plan is not fully fused (eager ops run between its kernels)"
    return "an input is not a tensor"


def _cuda_device(inputs: Sequence[Any]) -> torch.device | None:
    for t in pytree.tree_leaves(list(inputs)):
        if isinstance(t, torch.Tensor) and t.device.type == "cuda":
            return t.device
    return None


def _writes_placeholder(gm: fx.GraphModule) -> bool:
    """Whether an op of `gm` writes into one of its inputs (functionalization's copy_ back)."""
    for node in gm.graph.nodes:
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload) \
                and target._schema.is_mutable:
            for arg, value in zip(target._schema.arguments, node.args):
                if arg.alias_info is not None and arg.alias_info.is_write and isinstance(
                        value, fx.Node) and value.op == "placeholder":
                    return True
    return False


def _share_memory(inputs: Sequence[Any]) -> bool:
    """Whether two tensors among `inputs` share a storage."""
    seen = set()
    for t in pytree.tree_leaves(list(inputs)):
        if isinstance(t, torch.Tensor):
            key = StorageWeakRef(t.untyped_storage())
            if key in seen:
                return True
            seen.add(key)
    return False


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


def aot_backend(fw_compiler: Callable[..., Any], bw_compiler: Callable[..., Any]) -> Any:
    """AOTAutograd as nvfuse uses it (explain builds the same, so its report matches what
    runs): the min-cut partitioner and no AOT-level decompositions; the graphs keep whole aten
    ops (native_layer_norm_backward, _softmax_backward_data) and nvfuse's own table
    (nvfuse/frontend/fx.py) decomposes them when each graph is retraced.

    A graph that needs no gradients (an optimizer step) keeps its writes into its inputs
    (`copy_` at the end: the parameters and their state) instead of returning the new values
    for AOTAutograd's wrapper to copy eagerly, so the kernel computing a value writes it in
    place (nvfuse/fusion/inplace.py).  A training graph returns them as before: there torch
    would keep buffer writes too (batch norm's running statistics), through views that keep
    the update out of the statistics' kernel.

    A training cross-entropy becomes nvfuse's own ops first (nvfuse/frontend/cross_entropy.py),
    so autograd saves row statistics instead of the log-probabilities."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    def backend(gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Any:
        if not config.get().disable:
            gm = training_cross_entropy(gm)
        return aot_autograd(fw_compiler=fw_compiler, bw_compiler=bw_compiler,
                            partition_fn=min_cut_rematerialization_partition,
                            keep_inference_input_mutations=_needs_no_grad(gm),
                            )(gm, example_inputs, **kwargs)
    return backend


def _needs_no_grad(gm: fx.GraphModule) -> bool:
    """Whether dynamo's graph `gm` computes nothing that needs gradients: grad mode is off, or
    no output requires grad (dynamo's `example_value`s say; unknown: assume it does)."""
    if not torch.is_grad_enabled():
        return True
    for node in gm.graph.nodes:
        if node.op == "output":
            for value in pytree.tree_leaves(node.args):
                if not isinstance(value, fx.Node):
                    continue  # a constant
                example = value.meta.get("example_value")
                if example is None or isinstance(example, torch.Tensor) and example.requires_grad:
                    return False
    return True


def _graph_fuser(cuda_graphs: bool) -> Callable[..., Any]:
    """AOTAutograd's compiler: each aten graph becomes a FusedModule (capturing CUDA graphs
    with `cuda_graphs`)."""
    from functorch.compile import make_boxed_func  # type: ignore[import-untyped]

    def fuse_graph(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        fused = FusedModule(gm, list(example_inputs), trace_now=False, compile_fallback=False,
                            cuda_graphs=cuda_graphs)
        return make_boxed_func(fused)  # type: ignore[no-any-return]
    return fuse_graph


_fuse_graph = _graph_fuser(False)
_fuse_graph_captured = _graph_fuser(True)

BACKEND_OPTIONS = ("cuda_graphs",)  # torch.compile(..., options={...}) keys nvfuse reads


def backend_options(options: dict[str, Any] | None = None, mode: str | None = None
                    ) -> dict[str, Any]:
    """nvfuse's settings from torch.compile's `options` and `mode` (torch 2.x hands both to a
    named backend as keyword arguments when they are given).  `mode="reduce-overhead"` means
    cuda_graphs, as it does for inductor; "default", "max-autotune-no-cudagraphs" and
    "max-autotune" change nothing else.  Raises ValueError naming an unknown option."""
    settings: dict[str, Any] = {"cuda_graphs": mode == "reduce-overhead"}
    unknown = sorted(set(options or {}) - set(BACKEND_OPTIONS))
    if unknown:
        raise ValueError(f"nvfuse: unknown torch.compile option(s) {unknown}; nvfuse reads "
                         f"{list(BACKEND_OPTIONS)}")
    settings.update(options or {})
    if not isinstance(settings["cuda_graphs"], bool):
        raise ValueError(f"nvfuse: option cuda_graphs={settings['cuda_graphs']!r}: expected "
                         "True or False")
    return settings


def nvfuse_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], *,
                   options: dict[str, Any] | None = None, mode: str | None = None,
                   **kwargs: Any) -> Any:
    """The `torch.compile(model, backend="nvfuse")` backend (nvfuse/frontend/dynamo.py);
    `options={"cuda_graphs": True}` (or `mode="reduce-overhead"`) captures CUDA graphs of the
    graphs that need no gradients (inference, optimizer steps); a training graph is not
    captured (its forward's outputs are saved for the backward) and says so once."""
    captured = backend_options(options, mode)["cuda_graphs"]
    if captured and not _needs_no_grad(gm):
        warn_once("nvfuse: cuda_graphs: a graph that needs autograd runs without CUDA graphs")
        captured = False
    fuser = _fuse_graph_captured if captured else _fuse_graph
    try:
        return aot_backend(fuser, fuser)(gm, example_inputs, **kwargs)
    except Exception as e:  # AOTAutograd refused the graph (an in-place write to an expanded
        # input fails its functionalization): the graph runs as dynamo captured it, which
        # raises eager's own error where eager does
        if config.get().strict:
            raise
        warn_once(f"nvfuse: AOTAutograd cannot trace a graph ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:200]}); it runs eagerly")
        return gm.forward


def backend(*, cuda_graphs: bool = False) -> Callable[..., Any]:
    """The backend as a callable with its settings bound:
    `torch.compile(m, backend=nvfuse.backend(cuda_graphs=True))` (the same as
    `backend="nvfuse", options={"cuda_graphs": True}`)."""
    def nvfuse_configured(gm: fx.GraphModule, example_inputs: Sequence[Any],
                          **kwargs: Any) -> Any:
        kwargs.setdefault("options", {"cuda_graphs": cuda_graphs})
        return nvfuse_backend(gm, example_inputs, **kwargs)
    return nvfuse_configured


def fuse(obj: Callable[..., Any], example_inputs: Sequence[Any] | None = None, *,
         cuda_graphs: bool = False) -> FusedModule:
    """Fuse `obj` (see FusedModule).  TorchScript objects need no example inputs.
    `cuda_graphs=True`: capture fully fused calls into CUDA graphs (FusedModule)."""
    return FusedModule(obj, example_inputs, cuda_graphs=cuda_graphs)
