"""FX frontend: an nn.Module, fx.GraphModule or any callable of tensors -> graph IR.

Input: the callable and concrete inputs.  Output: an aten-level `fx.GraphModule` (make_fx with
the elementwise subset of torch's core decompositions) whose nodes carry FakeTensor metadata and
whose forward takes the same flat inputs and returns the same output structure as the callable.
Tracing specializes on the inputs' sizes (views record them), so the caller traces once per input
shape; kernels are still shared across shapes through the signature cache.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch._decomp import core_aten_decompositions
from torch._subclasses.fake_tensor import FakeTensor
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import _disable_current_modes

from nvfuse.frontend.foreach import foreach_decompositions
from nvfuse.frontend.functional import functionalize
from nvfuse.frontend.norm_backward import backward_decompositions
from nvfuse.frontend.norms import norm_decompositions
from nvfuse.frontend.promotion import converted_first
from nvfuse.graph.annotate import rng_preserved, twins


# Decomposed in addition to the ops torch tags pointwise (the tags miss these): activation
# backwards and composites whose decompositions are purely elementwise, hence fusible.
_POINTWISE_FAMILY = frozenset({
    "gelu_backward", "silu_backward", "sigmoid_backward", "tanh_backward", "threshold_backward",
    "logit_backward", "elu_backward", "hardtanh_backward", "leaky_relu_backward",
    "hardswish_backward", "hardsigmoid_backward", "softplus_backward", "mish_backward",
    "log_sigmoid_backward", "native_dropout_backward", "rsub",
})
# Kept whole although tagged pointwise: the op table lowers them as eager computes them, in
# opmath with one rounding of a half result; their decompositions round every intermediate
# (a bf16 optimizer's moments would drift from eager's).
_KEPT_WHOLE = frozenset({"lerp", "addcmul", "addcdiv"})


def native_dropout(x: torch.Tensor, p: float, train: bool | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dropout as rand_like and elementwise ops (fusible); returns (output, keep mask) as eager
    does, the mask being what the backward multiplies by.  Eval mode copies, never aliases."""
    if not train or p == 0:
        return x.clone(), torch.ones_like(x, dtype=torch.bool)
    if p == 1:
        return torch.zeros_like(x), torch.zeros_like(x, dtype=torch.bool)
    keep = torch.rand_like(x) > p
    return keep * x * (1.0 / (1.0 - p)), keep


@functools.cache
def pointwise_decompositions() -> dict[Any, Callable[..., Any]]:
    """The subset of torch's core decompositions that turn an op into elementwise ops, and the
    foreach ops as per-tensor ops (nvfuse/frontend/foreach.py).

    Only these: every other op keeps its real kernel, so its result has exactly eager's
    numerics and memory layout (the views of an AOTAutograd graph rely on those layouts, and
    e.g. attention's decomposition returns a different layout than its kernel)."""
    def elementwise(op: Any) -> bool:
        return isinstance(op, torch._ops.OpOverload) and op._opname not in _KEPT_WHOLE and (
            torch.Tag.pointwise in op.tags or op._opname in _POINTWISE_FAMILY)
    # converted_first: operands reach the decomposition in eager's common dtype
    table = {op: converted_first(fn) for op, fn in core_aten_decompositions().items()
             if elementwise(op)}
    table[torch.ops.aten.native_dropout.default] = native_dropout
    table.update(norm_decompositions())  # multi-output norms -> single-output reductions
    table.update(backward_decompositions())  # layer norm / softmax backwards -> the same
    wrapped = {op: _in_eager_layout(op, fn) for op, fn in table.items()}
    # foreach ops -> per-tensor ops (their own entries keep eager's layouts)
    wrapped.update(foreach_decompositions())
    return wrapped


def _in_eager_layout(op: Any, decomposition: Callable[..., Any]) -> Callable[..., Any]:
    """`decomposition` whose tensor results have the memory layout of `op`'s own (a layer
    norm's output is contiguous whatever its input's layout; its elementwise decomposition
    would follow the input's).  Tracing runs on real tensors, so the op itself runs once on
    them to say (meta kernels do not always agree with eager's layouts); not for in-place or
    random ops (their results follow `self`, or must not draw twice)."""
    if op._schema.is_mutable or torch.Tag.nondeterministic_seeded in op.tags:
        return decomposition

    @functools.wraps(decomposition)
    def run(*args: Any, **kwargs: Any) -> Any:
        out = decomposition(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) and (t.is_meta or isinstance(t, FakeTensor))
               for t in pytree.tree_leaves((args, kwargs))):
            return out  # not a real trace: nothing to ask
        try:
            with _disable_current_modes(), torch.no_grad():
                expected = op(*args, **kwargs)
        except Exception:  # eager refuses what the decomposition took: keep its result
            return out
        if isinstance(out, torch.Tensor) and isinstance(expected, torch.Tensor):
            return _restrided(out, expected)
        if isinstance(out, (tuple, list)) and isinstance(expected, (tuple, list)) \
                and len(out) == len(expected):
            return type(out)(_restrided(o, e) for o, e in zip(out, expected))
        return out
    return run


def _dim_order(t: torch.Tensor) -> list[int]:
    """t's dims from outermost to innermost in memory (size-1 dims, which any stride fits,
    left out)."""
    dims = [d for d in range(t.dim()) if t.shape[d] != 1]
    return sorted(dims, key=lambda d: (-t.stride()[d], d))


def _dense(t: torch.Tensor) -> bool:
    """Whether t's elements fill a block of memory exactly, in some dim order."""
    span = 1
    for d in reversed(_dim_order(t)):
        if t.stride()[d] != span:
            return False
        span *= t.shape[d]
    return True


def _restrided(out: Any, expected: Any) -> Any:
    """`out` with `expected`'s dim order where both are dense tensors of one shape whose
    orders differ."""
    if not isinstance(out, torch.Tensor) or not isinstance(expected, torch.Tensor) \
            or out.shape != expected.shape or out.dtype != expected.dtype \
            or _dim_order(out) == _dim_order(expected) \
            or not _dense(expected):
        return out
    if expected.is_contiguous():
        return out.contiguous()
    order = sorted(range(expected.dim()), key=lambda d: (-expected.stride()[d], d))
    fresh = torch.empty_permuted(out.shape, order, dtype=out.dtype, device=out.device)
    return torch.ops.aten.copy.default(fresh, out)


def trace_to_aten(fn: Callable[..., Any], inputs: Sequence[Any]) -> fx.GraphModule:
    """make_fx `fn` on `inputs` with the elementwise core decompositions (real tensors, no
    grad).  Random ops run while tracing, but leave torch's generators as they were."""
    def call(*args: Any) -> Any:  # hides defaulted parameters, which make_fx would demand
        return fn(*args)

    # functionalize (mutations only, views kept): in-place ops on temporaries become their
    # functional forms (eager's CPU dropout is bernoulli_ on an empty tensor), mutated inputs
    # get an explicit copy_ back.  Raises Unfunctionalizable where that would change eager's
    # meaning (writes through overlapping views).
    functional = functionalize(call)
    with _state_preserved(fn, inputs):
        # on copies: tracing runs the program, which must not write the caller's tensors
        gm = make_fx(functional, decomposition_table=pointwise_decompositions(),
                     tracing_mode="real")(*twins(inputs))
    _functional_temporaries(gm)
    _same_layout_copies(gm)
    _shape_only_buffers(gm)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def optimizer_step(fn: Any) -> torch.optim.Optimizer | None:
    """The optimizer whose bound method `fn` is (its step), else None.  make_fx would capture
    its parameters and state as constants, and running it updates them: such a callable is
    traced by torch.compile (dynamo lifts parameters and state to graph inputs) and never run
    to see whether it raises."""
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.optim.Optimizer) else None


def raises_eagerly(fn: Callable[..., Any], inputs: Sequence[Any]) -> bool:
    """Whether running `fn` eagerly on copies of `inputs` raises (then a call raises eager's
    own error).  Leaves the inputs, a module's buffers and the random generators unchanged.
    An optimizer's step is not run (it would update the parameters): False."""
    if optimizer_step(fn) is not None:
        return False
    try:
        with _state_preserved(fn, inputs):
            fn(*twins(inputs))
    except Exception:
        return True
    return False


@contextlib.contextmanager
def _state_preserved(fn: Callable[..., Any], inputs: Sequence[Any]) -> Iterator[None]:
    """Run `fn` for real (to trace it) without grad and without lasting effects on a module's
    buffers (batch norm's running statistics) or the random generators (`rng_preserved`)."""
    buffers = list(fn.buffers()) if isinstance(fn, torch.nn.Module) else []
    saved = [b.clone() for b in buffers]
    try:
        # the caller's dispatch modes (AOTAutograd's runtime checks run the first call of a
        # compiled graph under one) would see functionalization's tensors without its mode
        with torch.no_grad(), rng_preserved(inputs), _disable_current_modes():
            yield
    finally:
        with torch.no_grad():
            for b, value in zip(buffers, saved):
                b.copy_(value)


def _same_layout_copies(gm: fx.GraphModule) -> None:
    """`copy(a, b)` -> b where a and b have the same dtype, sizes and strides and b is a fresh
    result of this graph (not an input or a view): the copy only gives b's values a's layout
    (functionalization writes each in-place result that way)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.copy.default:
            continue
        a, b = node.args[0], node.args[1]
        if not isinstance(b, fx.Node) or b.op != "call_function" or not isinstance(
                b.target, torch._ops.OpOverload) or b.target.is_view:
            continue  # b may be an input or share one's memory: the copy is a fresh tensor
        va, vb = (x.meta.get("val") if isinstance(x, fx.Node) else None for x in (a, b))
        if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) \
                and va.dtype == vb.dtype and va.shape == vb.shape \
                and (va.stride() == vb.stride() or va.numel() <= 1):
            node.replace_all_uses_with(b)
            gm.graph.erase_node(node)


def _functional_temporaries(gm: fx.GraphModule) -> None:
    """Replace in place an in-place op (`add_`) whose written tensor is a temporary only it uses
    -- the output of a non-view op of this graph -- by its functional form (`add`).  Composite
    ops decomposed above functionalization (rms_norm's eps add) leave such writes, and an
    in-place op never fuses."""
    for node in gm.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        name = target._schema.name.split("::")[-1]
        if not name.endswith("_") or name.endswith("__") or not node.args:
            continue
        written = node.args[0]
        if (not isinstance(written, fx.Node) or written.op != "call_function"
                or len(written.users) != 1 or not isinstance(written.target, torch._ops.OpOverload)
                or written.target.is_view or written.target._schema.is_mutable):
            continue
        packet = getattr(torch.ops.aten, name[:-1], None)
        functional = getattr(packet, target._overloadname, None) if packet is not None else None
        if functional is None or functional._schema.is_mutable:
            continue
        node.target = functional


# Functional ops whose result depends on their tensor operand's sizes, dtype and device only
# (the functional forms of eager's in-place random fills).
_IGNORE_VALUES = frozenset({
    torch.ops.aten.bernoulli.p, torch.ops.aten.uniform.default,
    torch.ops.aten.exponential.default, torch.ops.aten.fill.Scalar})


def _shape_only_buffers(gm: fx.GraphModule) -> None:
    """`empty_like(x)` read only for its shape (eager's CPU dropout draws its mask with
    `empty_like(x).bernoulli_(p)`) -> a 0-dim `empty` expanded to x's shape: it no longer
    depends on x (a mask after a softmax joins the softmax's kernel) and a kernel reads it
    through stride 0 instead of a whole uninitialised tensor."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.empty_like.default \
                or not node.users or any(u.target not in _IGNORE_VALUES or u.args[0] is not node
                                         for u in node.users):
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        with gm.graph.inserting_before(node):
            empty = gm.graph.call_function(
                torch.ops.aten.empty.memory_format, ([],),
                {"dtype": val.dtype, "layout": torch.strided, "device": val.device})
            expand = gm.graph.call_function(torch.ops.aten.expand.default,
                                            (empty, list(val.shape)))
        empty.meta["val"] = val.new_empty(())
        expand.meta["val"] = empty.meta["val"].expand(val.shape)
        node.replace_all_uses_with(expand)
