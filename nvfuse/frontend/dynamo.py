"""`torch.compile(model, backend="nvfuse")`: the dynamo backend, inference and training.

Registered through the `torch_dynamo_backends` entry point (setup.py), so it works without
importing nvfuse first.  Dynamo hands over a torch-level fx.GraphModule; AOTAutograd turns it
into aten-level forward and backward graphs, split by the min-cut rematerialization partitioner
(so the backward recomputes cheap pointwise work instead of saving it), and nvfuse fuses each
graph like any other callable.  AOTAutograd passes fake example inputs, so each FusedModule
traces on its first real call, once per input shape; kernels are shared through the signature
cache, so a new batch size costs a retrace, never a recompile.

The backend is defined beside `FusedModule` (nvfuse/api.py), which also uses it for calls that
need gradients; this module is the entry point's stable name for it.
"""

from __future__ import annotations

from nvfuse.api import aot_backend, nvfuse_backend

__all__ = ["aot_backend", "nvfuse_backend"]
