"""FX frontend: an nn.Module, fx.GraphModule or any callable of tensors -> graph IR.

Input: the callable and concrete inputs.  Output: an aten-level `fx.GraphModule` (make_fx with
torch's core decompositions) whose nodes carry FakeTensor metadata and whose forward takes the
same flat inputs and returns the same output structure as the callable.  Tracing specializes
on the inputs' sizes (views record them), so the caller traces once per input shape; kernels are
still shared across shapes through the signature cache.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx


def trace_to_aten(fn: Callable[..., Any], inputs: Sequence[Any]) -> fx.GraphModule:
    """make_fx `fn` on `inputs` with the core aten decompositions (real tensors, no grad)."""
    def call(*args: Any) -> Any:  # hides defaulted parameters, which make_fx would demand
        return fn(*args)

    with torch.no_grad():
        gm = make_fx(call, decomposition_table=core_aten_decompositions(),
                     tracing_mode="real")(*inputs)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm
