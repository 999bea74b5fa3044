"""`torch.compile(model, backend="nvfuse")`: the dynamo backend, inference and training.

Registered through the `torch_dynamo_backends` entry point (setup.py), so it works without
importing nvfuse first.  Dynamo hands over a torch-level fx.GraphModule; AOTAutograd turns it
into aten-level forward and backward graphs, split by the min-cut rematerialization partitioner
(so the backward recomputes cheap pointwise work instead of saving it), and nvfuse fuses each
graph like any other callable.  AOTAutograd passes fake example inputs, so each FusedModule
traces on its first real call, once per input shape; kernels are shared through the signature
cache, so a new batch size costs a retrace, never a recompile.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import torch.fx as fx


def _fuse_graph(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    from functorch.compile import make_boxed_func

    from nvfuse.api import FusedModule

    return make_boxed_func(FusedModule(gm, list(example_inputs), trace_now=False))


def nvfuse_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Any:
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    backend = aot_autograd(
        fw_compiler=_fuse_graph, bw_compiler=_fuse_graph,
        partition_fn=min_cut_rematerialization_partition,
    )
    return backend(gm, example_inputs, **kwargs)
