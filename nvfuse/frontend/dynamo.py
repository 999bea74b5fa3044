"""`torch.compile(model, backend="nvfuse")`: the dynamo backend, inference and training.

Registered twice over: through the `torch_dynamo_backends` entry point (setup.py), so an
installed nvfuse works without importing it first, and by `import nvfuse` itself (`register`),
so a working tree on PYTHONPATH behaves like an installed copy.

Dynamo hands over a torch-level fx.GraphModule; AOTAutograd turns it into aten-level forward and
backward graphs, split by the min-cut rematerialization partitioner (so the backward recomputes
cheap pointwise work instead of saving it), and nvfuse fuses each graph like any other callable.
AOTAutograd passes fake example inputs, so each FusedModule traces on its first real call, once
per input shape; kernels are shared through the signature cache, so a new batch size costs a
retrace, never a recompile.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import torch.fx as fx


def _fuse_graph(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    from functorch.compile import make_boxed_func  # type: ignore[import-untyped]

    from nvfuse.api import FusedModule

    return make_boxed_func(FusedModule(gm, list(example_inputs), trace_now=False,
                                       compile_fallback=False))


def aot_backend(fw_compiler: Callable[..., Any], bw_compiler: Callable[..., Any]) -> Any:
    """AOTAutograd as nvfuse uses it (explain builds the same, so its report matches what
    runs): the min-cut partitioner and no AOT-level decompositions; the graphs keep whole aten
    ops (native_layer_norm_backward, _softmax_backward_data) and nvfuse's own table
    (nvfuse/frontend/fx.py) decomposes them when each graph is retraced."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    return aot_autograd(fw_compiler=fw_compiler, bw_compiler=bw_compiler,
                        partition_fn=min_cut_rematerialization_partition)


def nvfuse_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Any:
    return aot_backend(_fuse_graph, _fuse_graph)(gm, example_inputs, **kwargs)


BACKEND_NAME = "nvfuse"


def register() -> bool:
    """Register `nvfuse_backend` with dynamo under "nvfuse"; True when this call did.  Idempotent.
    Left alone when dynamo already knows the name, as a compiler or as an entry point it has
    discovered: loading that entry point imports nvfuse, and registering here first would make
    dynamo's own registration of the loaded function fail as a duplicate."""
    try:
        from torch._dynamo.backends import registry
    except ImportError:  # a torch without dynamo: torch.compile is unavailable anyway
        return False
    known = getattr(registry, "_COMPILER_FNS", {})
    discovered = getattr(registry, "_BACKENDS", {})
    if BACKEND_NAME in known or discovered.get(BACKEND_NAME) is not None:
        return False
    try:
        registry.register_backend(compiler_fn=nvfuse_backend, name=BACKEND_NAME)
    except AssertionError:  # registered meanwhile under the same name
        return False
    return True
