"""FX frontend: an nn.Module, fx.GraphModule or any callable of tensors -> graph IR.

Input: the callable and concrete inputs.  Output: an aten-level `fx.GraphModule` (make_fx with
the elementwise subset of torch's core decompositions) whose nodes carry FakeTensor metadata and
whose forward takes the same flat inputs and returns the same output structure as the callable.
Tracing specializes on the inputs' sizes (views record them), so the caller traces once per input
shape; kernels are still shared across shapes through the signature cache.
"""

from __future__ import annotations

import functools
from typing import Any
from collections.abc import Callable, Sequence

import torch
import torch.fx as fx
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from nvfuse.frontend.norm_backward import backward_decompositions
from nvfuse.frontend.norms import norm_decompositions
from nvfuse.graph.annotate import rng_preserved


# Decomposed in addition to the ops torch tags pointwise (the tags miss these): activation
# backwards and composites whose decompositions are purely elementwise, hence fusible.
_POINTWISE_FAMILY = frozenset({
    "gelu_backward", "silu_backward", "sigmoid_backward", "tanh_backward", "threshold_backward",
    "logit_backward", "elu_backward", "hardtanh_backward", "leaky_relu_backward",
    "hardswish_backward", "hardsigmoid_backward", "softplus_backward", "mish_backward",
    "log_sigmoid_backward", "native_dropout_backward", "rsub", "lerp", "addcmul", "addcdiv",
})


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
    """The subset of torch's core decompositions that turn an op into elementwise ops.

    Only these: every other op keeps its real kernel, so its result has exactly eager's
    numerics and memory layout (the views of an AOTAutograd graph rely on those layouts, and
    e.g. attention's decomposition returns a different layout than its kernel)."""
    def elementwise(op: Any) -> bool:
        return isinstance(op, torch._ops.OpOverload) and (
            torch.Tag.pointwise in op.tags or op._opname in _POINTWISE_FAMILY)
    table = {op: fn for op, fn in core_aten_decompositions().items() if elementwise(op)}
    table[torch.ops.aten.native_dropout.default] = native_dropout
    table.update(norm_decompositions())  # multi-output norms -> single-output reductions
    table.update(backward_decompositions())  # layer norm / softmax backwards -> the same
    return table


def trace_to_aten(fn: Callable[..., Any], inputs: Sequence[Any]) -> fx.GraphModule:
    """make_fx `fn` on `inputs` with the elementwise core decompositions (real tensors, no
    grad).  Random ops run while tracing, but leave torch's generators as they were."""
    def call(*args: Any) -> Any:  # hides defaulted parameters, which make_fx would demand
        return fn(*args)

    # functionalize (mutations only, views kept): in-place ops on temporaries become their
    # functional forms (eager's CPU dropout is bernoulli_ on an empty tensor), mutated inputs
    # get an explicit copy_ back
    functional = torch.func.functionalize(call, remove="mutations")
    # tracing runs the ops for real: a module's buffers (batch norm's running statistics) are
    # written once by the trace itself, so they are put back as they were (and the random
    # generator, by rng_preserved)
    buffers = list(fn.buffers()) if isinstance(fn, torch.nn.Module) else []
    saved = [b.clone() for b in buffers]
    try:
        with torch.no_grad(), rng_preserved(inputs):
            gm = make_fx(functional, decomposition_table=pointwise_decompositions(),
                         tracing_mode="real")(*inputs)
    finally:
        with torch.no_grad():
            for b, value in zip(buffers, saved):
                b.copy_(value)
    _functional_temporaries(gm)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


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
