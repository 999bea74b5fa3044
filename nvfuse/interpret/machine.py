"""The kernel-IR machine: runs a `Kernel` on the CPU, every thread of every block in lockstep.

Input: a kernel-IR `Kernel`, CPU torch tensors matching `kernel.tensors` (in order), the scalar
arguments matching `kernel.scalars` and the grid size.  Output: none; the kernel's stores land
in the given tensors in place, exactly where the device would write them.

Model.  All `grid * kernel.block` threads are one numpy vector: a per-thread value is an array
of shape (threads,), a uniform value (a parameter, a constant, a uniform loop variable) is a
0-d array or numpy scalar and broadcasts.  Values are held in their dtype's storage type
(bfloat16 as uint16 bits), as in `prims_np`; no array is ever mutated in place, so values can be
shared freely.  Divergence is a mask: `If` narrows it, assignments merge under it, stores write
only active threads, loads clamp inactive threads' offsets (and never change their registers).
A register array is a list of per-lane columns.

Checks (how schedule bugs show up on a CPU): every access by an active thread must lie inside
the tensor's reachable elements; `vector=True` accesses must be aligned (offset % lanes == 0
and the data pointer a multiple of lanes * itemsize); pointers must honour `TensorParam.align`;
stores to input tensors, dtype mismatches and reads of undeclared names raise InterpretError.

Extending.  Statements and expressions dispatch through `_STMTS` / `_EXPRS` (see
`register_stmt` / `register_expr`).  Shared memory will be per-block arrays of shape
(grid, size) in `Machine.shared`; because threads run in lockstep a barrier needs no work
beyond checking that it is not reached under a divergent mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from nvfuse.dtypes import DType, from_torch
from nvfuse.errors import NvfuseError
from nvfuse.fusion.prims import Prim
from nvfuse.interpret.fusion_eval import literal
from nvfuse.interpret.prims_np import apply_prim, cast
from nvfuse.lower.kir import (
    Assign,
    Comment,
    Compute,
    Const,
    Declare,
    Elem,
    Expr,
    For,
    If,
    IndexOp,
    Kernel,
    Load,
    Param,
    Special,
    Stmt,
    Store,
    TensorParam,
    Var,
)

Value = Any  # np.ndarray of shape () or (threads,), or a numpy scalar


class InterpretError(NvfuseError):
    """The kernel IR did something the device would not survive or promise (an out-of-bounds
    or misaligned access, a store to an input, a type confusion).  Names kernel, tensor,
    thread and offset."""


# -- state ---------------------------------------------------------------------------------


@dataclass
class RegArray:
    """A register array: one column (a Value) per lane."""

    dtype: DType
    columns: list[Value]


@dataclass
class Buffer:
    """A tensor argument seen as flat memory from its data pointer."""

    param: TensorParam
    memory: np.ndarray  # 1-D view of the storage dtype; writes land in the torch tensor
    pointer: int  # data pointer in bytes (alignment checks)


@dataclass
class Machine:
    kernel: Kernel
    grid: int
    threads: int
    buffers: dict[str, Buffer]
    params: dict[str, Value]
    values: dict[str, Value | RegArray] = field(default_factory=dict)
    mask: np.ndarray | None = None  # None: every thread active
    shared: dict[str, np.ndarray] = field(default_factory=dict)  # reserved: per-block arrays
    _specials: dict[tuple[str, DType], Value] = field(default_factory=dict)

    def where(self, thread: int) -> str:
        block = self.kernel.block
        return f"thread (blockIdx {thread // block}, threadIdx {thread % block})"

    def fail(self, message: str) -> InterpretError:
        return InterpretError(f"interpreter, kernel {self.kernel.name}: {message}")


# -- dispatch ------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])
_STMTS: dict[type, Callable[[Machine, Any], None]] = {}
_EXPRS: dict[type, Callable[[Machine, Any], Value]] = {}


def register_stmt(kind: type) -> Callable[[F], F]:
    """Decorator: `fn(machine, stmt)` executes statements of node type `kind`."""

    def add(fn: F) -> F:
        _STMTS[kind] = fn
        return fn

    return add


def register_expr(kind: type) -> Callable[[F], F]:
    """Decorator: `fn(machine, expr) -> Value` evaluates expressions of node type `kind`."""

    def add(fn: F) -> F:
        _EXPRS[kind] = fn
        return fn

    return add


def evaluate_expr(m: Machine, e: Expr) -> Value:
    try:
        handler = _EXPRS[type(e)]
    except KeyError:
        raise m.fail(f"no interpreter rule for expression {e!r}") from None
    return handler(m, e)


def execute_body(m: Machine, body: tuple[Stmt, ...]) -> None:
    """Run statements in order.  `body` is a C block: a name declared in it goes out of scope
    at its end, and the outer binding it shadowed comes back with the value it had then."""
    shadowed: dict[str, Any] = {}
    for stmt in body:
        if isinstance(stmt, Declare) and stmt.name not in shadowed:
            shadowed[stmt.name] = m.values.get(stmt.name, _MISSING)
        try:
            handler = _STMTS[type(stmt)]
        except KeyError:
            raise m.fail(f"no interpreter rule for statement {stmt!r}") from None
        handler(m, stmt)
    _restore(m, shadowed)


_MISSING = object()


def _restore(m: Machine, saved: dict[str, Any]) -> None:
    for name, old in saved.items():
        if old is _MISSING:
            m.values.pop(name, None)
        else:
            m.values[name] = old


# -- helpers -------------------------------------------------------------------------------


def _convert(value: Value, src: DType, dst: DType) -> Value:
    """C's implicit conversion on assignment (a no-op when the dtypes agree)."""
    return value if src is dst else cast(value, src, dst)


def _merge(m: Machine, new: Value, old: Value, dtype: DType) -> Value:
    """`new` for active threads, `old` elsewhere."""
    if m.mask is None:
        return new
    merged = np.asarray(np.where(m.mask, new, old))
    return merged.astype(dtype.np_storage, copy=False)


def _poison(dtype: DType) -> Value:
    """Uninitialised registers read as NaN (floats) or 0, so misuse tends to show."""
    if dtype.is_float:
        return literal(float("nan"), dtype)
    return literal(0, dtype)


def _is_uniform(value: Value) -> bool:
    return np.ndim(value) == 0


def _uniform_int(m: Machine, value: Value, what: str) -> int:
    if not _is_uniform(value):
        raise m.fail(f"{what} must be uniform across threads")
    return int(value)


def _lookup(m: Machine, name: str) -> Value | RegArray:
    try:
        return m.values[name]
    except KeyError:
        raise m.fail(f"use of undeclared register {name!r}") from None


def _array(m: Machine, name: str) -> RegArray:
    reg = _lookup(m, name)
    if not isinstance(reg, RegArray):
        raise m.fail(f"{name!r} is a scalar register, used as an array")
    return reg


# -- expressions ---------------------------------------------------------------------------


@register_expr(Const)
def _const(m: Machine, e: Const) -> Value:
    return literal(e.value, e.dtype)


@register_expr(Var)
def _var(m: Machine, e: Var) -> Value:
    value = _lookup(m, e.name)
    if isinstance(value, RegArray):
        raise m.fail(f"{e.name!r} is a register array, used as a scalar")
    return value


@register_expr(Param)
def _param(m: Machine, e: Param) -> Value:
    try:
        return m.params[e.name]
    except KeyError:
        raise m.fail(f"unknown scalar parameter {e.name!r}") from None


@register_expr(Special)
def _special(m: Machine, e: Special) -> Value:
    key = (e.name, e.dtype)
    if key not in m._specials:
        block, storage = m.kernel.block, e.dtype.np_storage
        ids = np.arange(m.threads, dtype=np.int64)
        table = {
            "threadIdx.x": lambda: (ids % block).astype(storage),
            "blockIdx.x": lambda: (ids // block).astype(storage),
            "blockDim.x": lambda: storage(block),
            "gridDim.x": lambda: storage(m.grid),
        }
        if e.name not in table:
            raise m.fail(f"unknown special {e.name!r}")
        m._specials[key] = table[e.name]()
    return m._specials[key]


@register_expr(Elem)
def _elem(m: Machine, e: Elem) -> Value:
    reg = _array(m, e.array)
    lane = evaluate_expr(m, e.lane)
    if _is_uniform(lane):
        return reg.columns[_lane_index(m, reg, e.array, int(lane))]
    # A per-thread lane: pick each thread's column (inactive threads' lanes are clamped).
    lanes = np.clip(np.asarray(lane, dtype=np.int64), 0, len(reg.columns) - 1)
    _check_lanes(m, reg, e.array, np.asarray(lane, dtype=np.int64))
    stacked = np.stack([np.broadcast_to(c, (m.threads,)) for c in reg.columns])
    return stacked[lanes, np.arange(m.threads)]


def _lane_index(m: Machine, reg: RegArray, name: str, lane: int) -> int:
    if not 0 <= lane < len(reg.columns):
        raise m.fail(f"lane {lane} out of range for register array {name}[{len(reg.columns)}]")
    return lane


def _check_lanes(m: Machine, reg: RegArray, name: str, lanes: np.ndarray) -> None:
    bad = (lanes < 0) | (lanes >= len(reg.columns))
    if m.mask is not None:
        bad &= m.mask
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise m.fail(f"{m.where(t)}: lane {int(lanes[t])} out of range for {name}"
                     f"[{len(reg.columns)}]")


_INDEX_PRIMS = {"+": Prim.ADD, "-": Prim.SUB, "*": Prim.MUL, "/": Prim.DIV_TRUNC,
                "%": Prim.FMOD}
_INDEX_COMPARE = {"<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}


@register_expr(IndexOp)
def _index_op(m: Machine, e: IndexOp) -> Value:
    a, b = evaluate_expr(m, e.a), evaluate_expr(m, e.b)
    if e.op in _INDEX_PRIMS:
        # C arithmetic in the index dtype: wraps, `/` truncates and `%` keeps the dividend's
        # sign (for the non-negative operands lowering produces, floor and trunc agree).
        return apply_prim(_INDEX_PRIMS[e.op], [a, b], e.dtype, e.dtype)
    if e.op in _INDEX_COMPARE:
        return _INDEX_COMPARE[e.op](a, b)
    if e.op == "&&":
        return np.logical_and(np.asarray(a) != 0, np.asarray(b) != 0)
    if e.op == "||":
        return np.logical_or(np.asarray(a) != 0, np.asarray(b) != 0)
    raise m.fail(f"unknown index operator {e.op!r}")


@register_expr(Compute)
def _compute(m: Machine, e: Compute) -> Value:
    args = [evaluate_expr(m, a) for a in e.args]
    if e.prim is Prim.CAST:
        return cast(args[0], e.args[0].dtype, e.dtype)
    operand = (e.args[1] if e.prim is Prim.WHERE else e.args[0]).dtype
    if operand.is_reduced_float:
        raise m.fail(f"{e.prim.value} computes in {operand}; cast to float32 first")
    return apply_prim(e.prim, args, operand, e.dtype)


# -- statements ----------------------------------------------------------------------------


@register_stmt(Comment)
def _comment(m: Machine, s: Comment) -> None:
    return None


@register_stmt(Declare)
def _declare(m: Machine, s: Declare) -> None:
    # A fresh declaration: inactive threads' values are never observable, so no merge.
    if s.init is not None:
        value = _convert(evaluate_expr(m, s.init), s.init.dtype, s.dtype)
    else:
        value = _poison(s.dtype)
    if s.lanes is None:
        m.values[s.name] = value
    else:
        m.values[s.name] = RegArray(s.dtype, [value] * s.lanes)


@register_stmt(Assign)
def _assign(m: Machine, s: Assign) -> None:
    value = evaluate_expr(m, s.value)
    target = s.target
    if isinstance(target, Var):
        old = _var(m, target)
        m.values[target.name] = _merge(
            m, _convert(value, s.value.dtype, target.dtype), old, target.dtype)
        return
    reg = _array(m, target.array)
    value = _convert(value, s.value.dtype, reg.dtype)
    lane = evaluate_expr(m, target.lane)
    columns = list(reg.columns)
    if _is_uniform(lane):
        index = _lane_index(m, reg, target.array, int(lane))
        columns[index] = _merge(m, value, columns[index], reg.dtype)
    else:
        lanes = np.asarray(lane, dtype=np.int64)
        _check_lanes(m, reg, target.array, lanes)
        active = np.ones(m.threads, bool) if m.mask is None else m.mask
        for index, old in enumerate(columns):
            hit = active & (lanes == index)
            merged = np.asarray(np.where(hit, value, old))
            columns[index] = merged.astype(reg.dtype.np_storage, copy=False)
    m.values[target.array] = RegArray(reg.dtype, columns)


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
    reg = _array(m, s.array)
    if reg.dtype is not s.dtype or len(reg.columns) < s.lanes:
        raise m.fail(f"load of {s.tensor} into {s.array}: {s.lanes} x {s.dtype} does not fit "
                     f"{reg.dtype}[{len(reg.columns)}]")
    index = _check_access(m, "load", buf, s.dtype, s.offset, s.lanes, s.vector)
    if buf.memory.shape[0] == 0:  # nothing readable: only inactive threads got here
        data = np.broadcast_to(_poison(s.dtype), index.shape)
    else:
        # Inactive threads may point anywhere: clamp them into the buffer, keep their registers.
        data = np.take(buf.memory, index, mode="clip")
    columns = list(reg.columns)
    for lane in range(s.lanes):
        columns[lane] = _merge(m, data[lane], columns[lane], s.dtype)
    m.values[s.array] = RegArray(reg.dtype, columns)


@register_stmt(Store)
def _store(m: Machine, s: Store) -> None:
    buf = _buffer(m, s.tensor)
    if not buf.param.is_output:
        raise m.fail(f"store to input tensor {s.tensor}")
    reg = _array(m, s.array)
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


@register_stmt(If)
def _if(m: Machine, s: If) -> None:
    cond = np.asarray(evaluate_expr(m, s.cond)) != 0
    outer = m.mask
    if cond.ndim == 0:
        if bool(cond):
            execute_body(m, s.body)
        return
    inner = cond if outer is None else outer & cond
    if not inner.any():
        return
    m.mask = None if inner.all() else inner
    try:
        execute_body(m, s.body)
    finally:
        m.mask = outer


@register_stmt(For)
def _for(m: Machine, s: For) -> None:
    start, stop, step = (evaluate_expr(m, x) for x in (s.start, s.stop, s.step))
    saved = {s.var.name: m.values.get(s.var.name, _MISSING)}
    try:
        if all(_is_uniform(x) for x in (start, stop, step)):
            _uniform_loop(m, s, int(start), int(stop), int(step))
        else:
            _divergent_loop(m, s, start, stop, step)
    finally:
        _restore(m, saved)


def _uniform_loop(m: Machine, s: For, start: int, stop: int, step: int) -> None:
    if step <= 0 and start < stop:
        raise m.fail(f"loop over {s.var.name} with step {step} never ends")
    storage = s.var.dtype.np_storage
    for i in range(start, stop, step):
        m.values[s.var.name] = storage(i)
        execute_body(m, s.body)


def _divergent_loop(m: Machine, s: For, start: Value, stop: Value, step: Value) -> None:
    storage = s.var.dtype.np_storage
    outer = m.mask
    var: np.ndarray = np.broadcast_to(np.asarray(start, dtype=storage), (m.threads,))
    step_arr: np.ndarray = np.asarray(step, dtype=storage)
    try:
        while True:
            live = var < stop
            active = live if outer is None else live & outer
            if not active.any():
                return
            if np.any(np.broadcast_to(step_arr <= 0, (m.threads,)) & active):
                raise m.fail(f"loop over {s.var.name} with a non-positive step never ends")
            m.mask = None if active.all() else active
            m.values[s.var.name] = var
            execute_body(m, s.body)
            # The body may assign the loop variable, as C allows.
            current: np.ndarray = np.asarray(m.values[s.var.name], dtype=storage)
            with np.errstate(over="ignore"):
                var = np.broadcast_to(current + step_arr, (m.threads,)).astype(storage)
    finally:
        m.mask = outer


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
    return _uniform_int(machine, value, "the grid size")


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
