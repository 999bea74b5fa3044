"""Kernel IR: a CUDA kernel as data -- parameters, index math, predicates, register arrays,
loads and stores with explicit offsets.  The emitter prints it as CUDA C++; the interpreter runs
it on the CPU with every thread of every block in lockstep.

Expressions are pure and typed.  Statements run in order, per thread.  Conventions:
- `Special` values are the CUDA builtins, converted to the kernel's index dtype.
- A `For` whose bounds are `Const`/`Param` expressions is uniform across threads (the
  interpreter runs it once with a Python integer loop variable); lane loops are such loops.
- `Load` copies `lanes` consecutive elements tensor[offset + l] into array[l]; `vector=True`
  promises that the access is one aligned `lanes * itemsize`-byte transaction (the interpreter
  checks the promise).  `Store` is the mirror.  Loads and stores move bits: conversions are
  explicit `Compute(Prim.CAST, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import Scalar, format_scalar
from nvfuse.fusion.prims import Prim

# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: Scalar
    dtype: DType


@dataclass(frozen=True)
class Var:
    """A scalar register (or a uniform loop variable)."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Param:
    """A scalar kernel argument (a size, a stride, an element count)."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Special:
    """threadIdx.x, blockIdx.x, blockDim.x or gridDim.x, as the index dtype `dtype`."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Elem:
    """Element `lane` of register array `array`."""

    array: str
    lane: Expr
    dtype: DType


@dataclass(frozen=True)
class IndexOp:
    """Integer/boolean arithmetic for indices and predicates.
    op is one of + - * / % < <= == != && || (C semantics on non-negative operands)."""

    op: str
    a: Expr
    b: Expr
    dtype: DType


@dataclass(frozen=True)
class Compute:
    """A fusion prim applied to values (`Prim.CAST` converts to `dtype`)."""

    prim: Prim
    args: tuple[Expr, ...]
    dtype: DType


Expr = Union[Const, Var, Param, Special, Elem, IndexOp, Compute]

SPECIALS = ("threadIdx.x", "blockIdx.x", "blockDim.x", "gridDim.x")
INDEX_OPS = ("+", "-", "*", "/", "%", "<", "<=", "==", "!=", "&&", "||")

# -- statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Declare:
    """`T name = init;` (lanes None) or `T name[lanes];` (uninitialised register array)."""

    name: str
    dtype: DType
    lanes: int | None = None
    init: Expr | None = None


@dataclass(frozen=True)
class Assign:
    target: Var | Elem
    value: Expr


@dataclass(frozen=True)
class Load:
    array: str
    dtype: DType
    tensor: str
    offset: Expr
    lanes: int
    vector: bool


@dataclass(frozen=True)
class Store:
    tensor: str
    dtype: DType
    offset: Expr
    array: str
    lanes: int
    vector: bool


@dataclass(frozen=True)
class If:
    cond: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class For:
    """for (var = start; var < stop; var += step) body.  `unroll` asks for #pragma unroll."""

    var: Var
    start: Expr
    stop: Expr
    step: Expr
    body: tuple[Stmt, ...]
    unroll: bool = False


@dataclass(frozen=True)
class Comment:
    text: str


Stmt = Union[Declare, Assign, Load, Store, If, For, Comment]

# -- the kernel ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorParam:
    """A pointer argument: `const T* __restrict__` for inputs, `T* __restrict__` for outputs.
    `align` is the byte alignment the launcher guarantees for the pointer."""

    name: str
    dtype: DType
    is_output: bool
    align: int


@dataclass(frozen=True)
class Kernel:
    """One __global__ function.  Arguments are passed in the order tensors, then scalars.
    The launch uses `block` threads and `grid` blocks (an expression over scalar params)."""

    name: str
    tensors: tuple[TensorParam, ...]
    scalars: tuple[Param, ...]
    body: tuple[Stmt, ...]
    block: int
    grid: Expr
    index_dtype: DType

    def __str__(self) -> str:
        return print_kernel(self)


# -- printer -------------------------------------------------------------------------------


def print_expr(e: Expr) -> str:
    if isinstance(e, Const):
        return f"{format_scalar(e.value)}:{e.dtype}"
    if isinstance(e, (Var, Param)):
        return e.name
    if isinstance(e, Special):
        return e.name
    if isinstance(e, Elem):
        return f"{e.array}[{print_expr(e.lane)}]"
    if isinstance(e, IndexOp):
        return f"({print_expr(e.a)} {e.op} {print_expr(e.b)})"
    if isinstance(e, Compute):
        args = ", ".join(print_expr(a) for a in e.args)
        return f"{e.prim.value}<{e.dtype}>({args})"
    raise TypeError(f"not a kernel IR expression: {e!r}")


def print_kernel(k: Kernel) -> str:
    """The one printer of the kernel IR (repr, dumps, tests)."""
    params = [
        f"{'out' if t.is_output else 'in'} {t.name}: {t.dtype}* align {t.align}" for t in k.tensors
    ] + [f"{p.name}: {p.dtype}" for p in k.scalars]
    lines = [f"kernel {k.name}({', '.join(params)})",
             f"  launch block={k.block} grid={print_expr(k.grid)} index={k.index_dtype}"]
    _print_body(k.body, 1, lines)
    return "\n".join(lines)


def _print_body(body: tuple[Stmt, ...], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for s in body:
        if isinstance(s, Declare):
            lanes = f"[{s.lanes}]" if s.lanes is not None else ""
            init = f" = {print_expr(s.init)}" if s.init is not None else ""
            lines.append(f"{pad}{s.dtype} {s.name}{lanes}{init}")
        elif isinstance(s, Assign):
            lines.append(f"{pad}{print_expr(s.target)} = {print_expr(s.value)}")
        elif isinstance(s, Load):
            kind = "vload" if s.vector else "load"
            lines.append(f"{pad}{s.array}[0:{s.lanes}] = {kind} {s.tensor}[{print_expr(s.offset)}]")
        elif isinstance(s, Store):
            kind = "vstore" if s.vector else "store"
            lines.append(f"{pad}{kind} {s.tensor}[{print_expr(s.offset)}] = {s.array}[0:{s.lanes}]")
        elif isinstance(s, If):
            lines.append(f"{pad}if {print_expr(s.cond)}:")
            _print_body(s.body, depth + 1, lines)
        elif isinstance(s, For):
            unroll = " unroll" if s.unroll else ""
            lines.append(f"{pad}for {s.var.name} in [{print_expr(s.start)}, {print_expr(s.stop)})"
                         f" step {print_expr(s.step)}{unroll}:")
            _print_body(s.body, depth + 1, lines)
        elif isinstance(s, Comment):
            lines.append(f"{pad}# {s.text}")
        else:
            raise TypeError(f"not a kernel IR statement: {s!r}")
