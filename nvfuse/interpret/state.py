"""The interpreter's state and dispatch: what a running kernel is made of, and how a statement
or expression finds the rule that executes it.

Input: a kernel-IR node and a `Machine`.  Output: `evaluate_expr` returns a `Value`;
`execute_body` updates the machine.  Rules live in the sibling modules (rules.py: registers,
arithmetic and control flow; memory.py: global loads and stores; shared.py: shared memory and
barriers; reduce.py: warp and block reductions) and register themselves with `register_stmt` /
`register_expr`; machine.py imports all of them and owns the entry points.

Values: a per-thread value is an array of shape (threads,), a uniform one a 0-d array or numpy
scalar; both are in the dtype's storage type and are never mutated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from nvfuse.dtypes import DType
from nvfuse.errors import NvfuseError
from nvfuse.interpret.fusion_eval import literal
from nvfuse.interpret.prims_np import cast
from nvfuse.lower.kir import Declare, Expr, Kernel, Stmt, TensorParam, Var

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
class SharedArray:
    """A `Shared` array: one row per block, plus who touched each element since the block's
    last barrier (the race check): `writer` / `reader` hold the thread index within the block,
    NO_THREAD for nobody, MANY_THREADS for several."""

    dtype: DType
    size: int
    data: np.ndarray  # (grid, size), storage dtype
    writer: np.ndarray  # (grid, size) int64
    reader: np.ndarray  # (grid, size) int64


NO_THREAD = -1
MANY_THREADS = -2


@dataclass
class Machine:
    kernel: Kernel
    grid: int
    threads: int
    buffers: dict[str, Buffer]
    params: dict[str, Value]
    values: dict[str, Value | RegArray] = field(default_factory=dict)
    mask: np.ndarray | None = None  # None: every thread active
    shared: dict[str, SharedArray] = field(default_factory=dict)
    specials: dict[tuple[str, DType], Value] = field(default_factory=dict)
    cluster_slots: set[str] = field(default_factory=set)  # the ClusterReduce slots used so far

    def where(self, thread: int) -> str:
        block = self.kernel.block
        return f"thread (blockIdx {thread // block}, threadIdx {thread % block})"

    def fail(self, message: str) -> InterpretError:
        return InterpretError(f"interpreter, kernel {self.kernel.name}: {message}")

    def active(self) -> np.ndarray:
        """The mask as a (threads,) bool array."""
        return np.ones(self.threads, bool) if self.mask is None else self.mask


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
            shadowed[stmt.name] = m.values.get(stmt.name, MISSING)
        try:
            handler = _STMTS[type(stmt)]
        except KeyError:
            raise m.fail(f"no interpreter rule for statement {stmt!r}") from None
        handler(m, stmt)
    restore(m, shadowed)


MISSING = object()


def restore(m: Machine, saved: dict[str, Any]) -> None:
    for name, old in saved.items():
        if old is MISSING:
            m.values.pop(name, None)
        else:
            m.values[name] = old


# -- helpers -------------------------------------------------------------------------------


def convert(value: Value, src: DType, dst: DType) -> Value:
    """C's implicit conversion on assignment (a no-op when the dtypes agree)."""
    return value if src is dst else cast(value, src, dst)


def merge(m: Machine, new: Value, old: Value, dtype: DType) -> Value:
    """`new` for active threads, `old` elsewhere."""
    if m.mask is None:
        return new
    merged = np.asarray(np.where(m.mask, new, old))
    return merged.astype(dtype.np_storage, copy=False)


def poison(dtype: DType) -> Value:
    """Uninitialised registers read as NaN (floats) or 0, so misuse tends to show."""
    if dtype.is_float:
        return literal(float("nan"), dtype)
    return literal(0, dtype)


def is_uniform(value: Value) -> bool:
    return np.ndim(value) == 0


def uniform_int(m: Machine, value: Value, what: str) -> int:
    if not is_uniform(value):
        raise m.fail(f"{what} must be uniform across threads")
    return int(value)


def lookup(m: Machine, name: str) -> Value | RegArray:
    try:
        return m.values[name]
    except KeyError:
        raise m.fail(f"use of undeclared register {name!r}") from None


def read_var(m: Machine, var: Var) -> Value:
    value = lookup(m, var.name)
    if isinstance(value, RegArray):
        raise m.fail(f"{var.name!r} is a register array, used as a scalar")
    return value


def assign_var(m: Machine, var: Var, value: Value, src: DType) -> None:
    """`var = value` (of dtype `src`, converted as C does) for the active threads."""
    old = read_var(m, var)
    m.values[var.name] = merge(m, convert(value, src, var.dtype), old, var.dtype)


def reg_array(m: Machine, name: str) -> RegArray:
    reg = lookup(m, name)
    if not isinstance(reg, RegArray):
        raise m.fail(f"{name!r} is a scalar register, used as an array")
    return reg


def uniform_groups(m: Machine, group: int, unit: str, what: str) -> np.ndarray:
    """Which groups of `group` consecutive threads (`unit` "warp": 32, "block": the block)
    are active, shape (threads // group,); raises when some group is only partly active, since
    `what` (a barrier, a reduction) must be reached by all of a group's threads or none."""
    if m.mask is None:
        return np.ones(m.threads // group, bool)
    per_group = m.mask.reshape(-1, group)
    active: np.ndarray = np.asarray(per_group.all(axis=1))
    partial = per_group.any(axis=1) & ~active
    if partial.any():
        g = int(np.flatnonzero(partial)[0])
        count = int(per_group[g].sum())
        first_idle = g * group + int(np.flatnonzero(~per_group[g])[0])
        raise m.fail(f"divergent {what}: only {count} of the {group} threads of {unit} {g} "
                     f"reach it ({m.where(first_idle)} does not)")
    return active
