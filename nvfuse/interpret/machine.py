"""The kernel-IR machine: runs a `Kernel` on the CPU, every thread of every block in lockstep.

Input: a kernel-IR `Kernel`, CPU torch tensors matching `kernel.tensors` (in order), the scalar
arguments matching `kernel.scalars` (in declared order: `kir.kernel_args` orders a schedule's
named scalars) and the grid size.  Output: none; the kernel's stores land
in the given tensors in place, exactly where the device would write them.

Model.  All `grid * kernel.block` threads are one numpy vector: a per-thread value is an array
of shape (threads,), a uniform value (a parameter, a constant, a uniform loop variable) is a
0-d array or numpy scalar and broadcasts.  Values are held in their dtype's storage type
(bfloat16 as uint16 bits), as in `prims_np`; no array is ever mutated in place, so values can be
shared freely.  Divergence is a mask: `If` narrows it, assignments merge under it, stores write
only active threads, loads clamp inactive threads' offsets (and never change their registers).
A register array is a list of per-lane columns.  Shared memory is one (grid, size) array per
`Shared` declaration; because threads run in lockstep a barrier only has to check that it is
reached uniformly, and the shared-memory race check (shared.py) stands in for the ordering
the device would need.  Reductions combine in the device helpers' order (reduce.py).

Checks (how schedule bugs show up on a CPU): every access by an active thread must lie inside
the tensor's reachable elements; `vector=True` accesses must be aligned (offset % lanes == 0
and the data pointer a multiple of lanes * itemsize); pointers must honour `TensorParam.align`;
stores to input tensors, dtype mismatches and reads of undeclared names raise InterpretError;
so do divergent barriers and reductions and shared-memory races.

Layout.  state.py holds the machine and the dispatch tables (`register_stmt` /
`register_expr`, re-exported here); rules.py, memory.py, shared.py, reduce.py and cluster.py
hold the rules and are imported here so that every rule is registered before a kernel runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nvfuse.dtypes import DType, from_torch

# Imported for their rule registrations.
from nvfuse.interpret import cluster, memory, reduce, rules, shared  # noqa: F401
from nvfuse.interpret.fusion_eval import literal
from nvfuse.interpret.state import (
    Buffer,
    InterpretError,
    Machine,
    evaluate_expr,
    execute_body,
    register_expr,
    register_stmt,
    uniform_int,
)
from nvfuse.lower.kir import Kernel, TensorParam

__all__ = ["InterpretError", "Machine", "launch_grid", "register_expr", "register_stmt",
           "run_kernel"]

# -- entry point ---------------------------------------------------------------------------


def _reachable(t: torch.Tensor) -> int:
    """Elements from the data pointer to the last element the tensor can address, inclusive."""
    if t.numel() == 0:
        return 0
    return 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))


def _bind(m_name: str, param: TensorParam, t: torch.Tensor) -> Buffer:
    where = f"interpreter, kernel {m_name}: tensor {param.name}"
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
        raise InterpretError(f"{where}: expected a CPU torch tensor")
    if from_torch(t.dtype) is not param.dtype:
        raise InterpretError(f"{where}: is {t.dtype}, the kernel expects {param.dtype}")
    if any(stride < 0 for stride in t.stride()):
        raise InterpretError(f"{where}: negative strides are not supported")
    pointer = t.data_ptr()
    if param.align and pointer % param.align:
        raise InterpretError(f"{where}: data pointer {pointer:#x} breaks the promised "
                             f"{param.align}-byte alignment")
    flat = torch.as_strided(t.detach(), (_reachable(t),), (1,))
    if param.dtype is DType.BFLOAT16:
        memory = flat.view(torch.int16).numpy().view(np.uint16)
    else:
        memory = flat.numpy()
    return Buffer(param, memory, pointer)


def launch_grid(kernel: Kernel, scalars: Sequence[int]) -> int:
    """The block count `kernel.grid` asks for, given the scalar arguments (it may only use
    constants, parameters and index arithmetic)."""
    params = {p.name: literal(v, p.dtype) for p, v in zip(kernel.scalars, scalars)}
    machine = Machine(kernel, 0, 0, {}, params)
    with np.errstate(all="ignore"):
        value = evaluate_expr(machine, kernel.grid)
    return uniform_int(machine, value, "the grid size")


def run_kernel(kernel: Kernel, tensors: Sequence[torch.Tensor], scalars: Sequence[int],
               grid: int) -> None:
    """Run `kernel` with `grid` blocks of `kernel.block` threads; see the module docstring."""
    if len(tensors) != len(kernel.tensors) or len(scalars) != len(kernel.scalars):
        raise InterpretError(
            f"interpreter, kernel {kernel.name}: expected {len(kernel.tensors)} tensors and "
            f"{len(kernel.scalars)} scalars, got {len(tensors)} and {len(scalars)}")
    if grid < 0 or kernel.block <= 0:
        raise InterpretError(f"interpreter, kernel {kernel.name}: bad launch grid={grid} "
                             f"block={kernel.block}")
    buffers = {p.name: _bind(kernel.name, p, t) for p, t in zip(kernel.tensors, tensors)}
    params = {p.name: literal(v, p.dtype) for p, v in zip(kernel.scalars, scalars)}
    machine = Machine(kernel, grid, grid * kernel.block, buffers, params)
    if machine.threads == 0:
        return
    with np.errstate(all="ignore"):
        execute_body(machine, kernel.body)
