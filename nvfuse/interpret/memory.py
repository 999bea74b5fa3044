"""Interpreter rules for global memory: `Load` and `Store` between tensors and register arrays.

Input: a Load / Store statement and the `Machine`.  Output: register arrays filled from, or
tensor memory written from, the active threads.  Checks (how schedule bugs show up on a CPU):
every access by an active thread must lie inside the tensor's reachable elements; `vector=True`
accesses must be aligned (offset % lanes == 0 and the data pointer a multiple of
lanes * itemsize); stores to inputs and dtype mismatches raise.  Inactive threads' offsets are
clamped into the buffer and their registers never change.
"""

from __future__ import annotations

import numpy as np

from nvfuse.dtypes import DType
from nvfuse.interpret.state import (
    Buffer,
    Machine,
    RegArray,
    evaluate_expr,
    merge,
    poison,
    reg_array,
    register_stmt,
)
from nvfuse.lower.kir import Expr, Load, Store


def _offsets(m: Machine, offset: Expr, lanes: int) -> np.ndarray:
    """Element offsets, shape (lanes,) for a uniform offset or (lanes, threads)."""
    base = np.asarray(evaluate_expr(m, offset), dtype=np.int64)
    step = np.arange(lanes, dtype=np.int64)
    return base + step if base.ndim == 0 else base[None, :] + step[:, None]


def _check_access(m: Machine, kind: str, buf: Buffer, dtype: DType, offset: Expr,
                  lanes: int, vector: bool) -> np.ndarray:
    """Offsets of the access after checking dtype, bounds and the vector promise."""
    name = buf.param.name
    if dtype is not buf.param.dtype:
        raise m.fail(f"{kind} of {name} as {dtype}, but the tensor is {buf.param.dtype}")
    index = _offsets(m, offset, lanes)
    span = buf.memory.shape[0]
    bad = ((index < 0) | (index >= span)).any(axis=0)
    if vector:
        width = lanes * dtype.itemsize
        if buf.pointer % width:
            raise m.fail(f"misaligned vector {kind} of {name}: data pointer {buf.pointer:#x} "
                         f"is not a multiple of {width} bytes")
        misaligned = index[0] % lanes != 0
    else:
        misaligned = np.zeros((), bool)
    _report(m, bad, index, f"out-of-bounds {kind} of {name}",
            f"outside the tensor's [0, {span}) elements")
    _report(m, misaligned, index, f"misaligned vector {kind} of {name}",
            f"not a multiple of {lanes}")
    return index


def _report(m: Machine, flags: np.ndarray, index: np.ndarray, what: str, why: str) -> None:
    """Raise naming the first active thread whose access is flagged."""
    active = flags if m.mask is None else flags & m.mask
    if not np.any(active):
        return
    t = int(np.flatnonzero(np.broadcast_to(active, (m.threads,)))[0])
    first = int(index[0] if index.ndim == 1 else index[0, t])
    lanes = index.shape[0]
    raise m.fail(f"{what}: {m.where(t)} offset {first} (lanes {lanes}) {why}")


def _buffer(m: Machine, name: str) -> Buffer:
    try:
        return m.buffers[name]
    except KeyError:
        raise m.fail(f"unknown tensor {name!r}") from None


@register_stmt(Load)
def _load(m: Machine, s: Load) -> None:
    buf = _buffer(m, s.tensor)
    reg = reg_array(m, s.array)
    if reg.dtype is not s.dtype or len(reg.columns) < s.lanes:
        raise m.fail(f"load of {s.tensor} into {s.array}: {s.lanes} x {s.dtype} does not fit "
                     f"{reg.dtype}[{len(reg.columns)}]")
    index = _check_access(m, "load", buf, s.dtype, s.offset, s.lanes, s.vector)
    if buf.memory.shape[0] == 0:  # nothing readable: only inactive threads got here
        data = np.broadcast_to(poison(s.dtype), index.shape)
    else:
        # Inactive threads may point anywhere: clamp them into the buffer, keep their registers.
        data = np.take(buf.memory, index, mode="clip")
    columns = list(reg.columns)
    for lane in range(s.lanes):
        columns[lane] = merge(m, data[lane], columns[lane], s.dtype)
    m.values[s.array] = RegArray(reg.dtype, columns)


@register_stmt(Store)
def _store(m: Machine, s: Store) -> None:
    buf = _buffer(m, s.tensor)
    if not buf.param.is_output:
        raise m.fail(f"store to input tensor {s.tensor}")
    reg = reg_array(m, s.array)
    if reg.dtype is not s.dtype or len(reg.columns) < s.lanes:
        raise m.fail(f"store of {s.array} to {s.tensor}: {reg.dtype}[{len(reg.columns)}] "
                     f"does not provide {s.lanes} x {s.dtype}")
    index = _check_access(m, "store", buf, s.dtype, s.offset, s.lanes, s.vector)
    storage = s.dtype.np_storage
    if index.ndim == 1:  # uniform offset: every active thread writes the same elements
        if m.mask is None or m.mask.any():
            last = -1 if m.mask is None else int(np.flatnonzero(m.mask)[-1])
            for lane in range(s.lanes):
                column = np.broadcast_to(reg.columns[lane], (m.threads,))
                buf.memory[index[lane]] = storage(column[last])
        return
    data = np.stack([np.broadcast_to(c, (m.threads,)) for c in reg.columns[: s.lanes]])
    if m.mask is None:
        buf.memory[index] = data.astype(storage, copy=False)
    else:
        rows = np.flatnonzero(m.mask)
        buf.memory[index[:, rows]] = data[:, rows].astype(storage, copy=False)
