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

The backend is defined beside `FusedModule` (nvfuse/api.py), which also uses it for calls that
need gradients; this module is the entry point's stable name for it.
"""

from __future__ import annotations

from nvfuse.api import aot_backend, nvfuse_backend

__all__ = ["BACKEND_NAME", "aot_backend", "nvfuse_backend", "register"]


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
