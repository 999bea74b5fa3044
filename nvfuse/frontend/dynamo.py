"""`torch.compile(model, backend="nvfuse")`: the dynamo backend.

Registered through the `torch_dynamo_backends` entry point (setup.py), so it works without
importing nvfuse first.  Dynamo hands over a torch-level fx.GraphModule and example inputs;
nvfuse traces it to aten ops per input shape and fuses it like any other callable.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.fx as fx


def nvfuse_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], **_: Any) -> Any:
    from nvfuse.api import FusedModule

    return FusedModule(gm, list(example_inputs), trace_now=False)
