"""The CPU interpreter: fusion IR and kernel IR executed with numpy (NVFUSE_INTERPRET=1).

Input: a `FusionIR` plus numpy arrays (`evaluate`, the reference semantics), or a kernel-IR
`Kernel` plus CPU torch tensors, scalar arguments and a grid size (`run_kernel`).  Output:
numpy arrays, or the kernel's stores written into the given tensors in place.
"""

from __future__ import annotations

from nvfuse.interpret.bf16 import bf16_to_f32, f32_to_bf16
from nvfuse.interpret.fusion_eval import evaluate
from nvfuse.interpret.machine import InterpretError, launch_grid, run_kernel
from nvfuse.interpret.prims_np import apply_prim, cast

__all__ = [
    "InterpretError", "apply_prim", "bf16_to_f32", "cast", "evaluate", "f32_to_bf16",
    "launch_grid", "run_kernel",
]
