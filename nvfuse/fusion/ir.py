"""Fusion IR: one fusion group as a typed, shape-agnostic DAG of prims.

Input: built by `nvfuse.fusion.build.build_fusion` from a group's aten subgraph and the dtypes
of its inputs.  Output: a frozen `FusionIR` that the scheduler and the lowering read.

Shapes are *not* part of the fusion IR: sizes are kernel arguments.  A pointwise fusion iterates
over the broadcast of its inputs' shapes; each output records which inputs its shape comes from
(`shape_from`), so the runtime computes output shapes from the actual input shapes.
Values are numbered SSA nodes in topological order; a node refers to earlier nodes by index.

Row reductions: when `reduce_ndim` (k) > 0 the fusion reduces the trailing k dims of its
iteration space.  Reduction prims produce *row values* (one per index of the outer dims,
broadcast back along the reduced dims like keepdim=True results); a node computed only from row
values and literals is a row value too (`row_values`).  An output records whether it is a full
value or a row value stored with the reduced dims kept (size 1) or dropped (`OutputShape`).
With k = 0 the fusion is pointwise and prints exactly as it did before reductions existed.

Concatenations (`concats`, pointwise fusions only): cat / stack / constant pad of values
computed in the group, each along one dim d of the iteration space, without intermediate
buffers.  The space is then the broadcast of the concatenations' shapes and of the inputs
loaded plainly; along d a concatenation is cut into `Segment`s, each a piece of its result: a
value piece, whose inputs are read through PIECE_LOAD leaves shifted into the segment, or a
constant piece (pad).  An output records the concatenations its shape comes from
(`from_concats`).  The printer shows concatenations only where a fusion has some.

Reductions over other dims (`x.sum(0)`, batch norm's (N, H, W)): `reduce_dims` lists the
reduced dims, negative and right-aligned to the iteration space (as broadcasting aligns
operands), when they are not the trailing k.  Everything above holds with "the trailing k dims"
read as "the dims in `reduce_axes`": the schedule permutes the iteration space so that the
reduced dims come last (kept dims in order, then reduced dims in order), which keeps one
lowering for both cases and lets strides, not dim numbers, pick the row or column schedule.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable, Sequence
import functools
from dataclasses import dataclass

from nvfuse.dtypes import DType
from nvfuse.fusion.prims import (
    ARG_REDUCTIONS,
    BINARY_PRED,
    BINARY_SAME,
    FLOAT_ONLY,
    INT_ONLY,
    REDUCTIONS,
    UNARY_PRED,
    UNARY_SAME,
    Prim,
    arity,
)

Scalar = bool | int | float


@dataclass(frozen=True)
class TensorInput:
    """A tensor the fused kernel reads: its storage dtype and rank."""

    name: str
    dtype: DType
    ndim: int


@dataclass(frozen=True)
class Node:
    """One SSA value: `op(*args)` of dtype `dtype`.

    `attr` holds the input index for LOAD, the literal for CONST, (input, concatenation,
    segment) for PIECE_LOAD, (concatenation, segment) for IN_PIECE, and is None otherwise
    (CAST's target is `dtype`).
    """

    op: Prim
    args: tuple[int, ...]
    dtype: DType
    attr: Scalar | tuple[int, ...] | None = None


@dataclass(frozen=True)
class Segment:
    """One piece of a concatenation along its dim d, in order.  A value piece (`length` None)
    has the broadcast shape of the inputs `shape_from` (right-aligned to the piece's rank), of
    which `trim` = (before, after) elements along d are cut off (negative pads), then only
    the first `keep` kept when set (slice_scatter); a `stacked` piece lacks dim d (stack): its
    extent is 1 and its dims are the space's other dims.  A constant piece (pad) is `length`
    elements of a literal (its nodes carry the value)."""

    shape_from: tuple[int, ...] = ()
    length: int | None = None
    trim: tuple[int, int] = (0, 0)
    stacked: bool = False
    keep: int | None = None


@dataclass(frozen=True)
class Concat:
    """The concatenation of a fusion: along dim `dim` of an iteration space of rank `ndim`."""

    dim: int
    ndim: int
    segments: tuple[Segment, ...]


class OutputShape(enum.Enum):
    """How an output's shape relates to the iteration space (see the module docstring)."""

    @property
    def is_row(self) -> bool:
        """Whether the output is a row value (one element per row)."""
        return self in (OutputShape.ROW_KEEPDIM, OutputShape.ROW_DROPPED)

    FULL = "full"          # the broadcast of its inputs' shapes (every pointwise output); a
    # row value stored as FULL is broadcast along the reduced dims (`zeros_like(x) + x.sum(0)`)
    # a full value whose reductions dropped their (leading) reduced dims: the inputs it depends
    # on through a reduction contribute their shapes without those dims (`x.sum(0) * w`)
    FULL_DROPPED = "full_dropped"
    ROW_KEEPDIM = "row"    # a row value; the reduced dims are kept with size 1
    ROW_DROPPED = "row_dropped"  # a row value; the reduced dims are dropped (keepdim=False)


@dataclass(frozen=True)
class Output:
    """A tensor the kernel writes: value `value` rounded to `dtype`, with the broadcast shape
    of the inputs listed in `shape_from` (an output with no inputs has shape `()`), laid out in
    memory with dims in the order `layout` (outermost first; None = contiguous), which is the
    order eager gives it (TensorIterator keeps a permuted input's layout).  In a reduction
    fusion, the inputs in `reduced_from` contribute their shape with the reduced dims set to 1
    (the output depends on them through a reduction), and `shape` says whether the output is
    a row value and whether its reduced dims are kept."""

    name: str
    value: int
    dtype: DType
    shape_from: tuple[int, ...]
    layout: tuple[int, ...] | None = None
    shape: OutputShape = OutputShape.FULL
    reduced_from: tuple[int, ...] = ()
    from_concats: tuple[int, ...] = ()  # concatenations whose shapes it broadcasts with


@dataclass(frozen=True)
class FusionIR:
    name: str
    inputs: tuple[TensorInput, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Output, ...]
    ops: tuple[str, ...] = ()  # the aten op names the group was built from, for reports
    reduce_ndim: int = 0  # trailing dims reduced by the REDUCE_* nodes; 0 = pointwise
    concats: tuple[Concat, ...] = ()  # cat / stack / pad inside the group (module docstring)
    # the reduced dims (negative, right-aligned, sorted) when they are not the trailing
    # reduce_ndim dims; None for trailing reductions (the printer then shows reduce_ndim only)
    reduce_dims: tuple[int, ...] | None = None

    def __str__(self) -> str:
        return print_fusion(self)

    @functools.cached_property
    def random(self) -> bool:
        """Whether the kernel draws random numbers (then each launch takes a fresh seed)."""
        return any(n.op is Prim.RAND for n in self.nodes)

    @property
    def reduce_axes(self) -> tuple[int, ...]:
        """The reduced dims, negative and right-aligned to the iteration space."""
        if self.reduce_dims is not None:
            return self.reduce_dims
        return tuple(range(-self.reduce_ndim, 0))

    @property
    def ndim(self) -> int:
        """Rank of the iteration space: the largest rank of an input or a concatenation."""
        return max([i.ndim for i in self.inputs] + [c.ndim for c in self.concats], default=0)


def format_scalar(value: Scalar) -> str:
    """Deterministic text for a literal (repr of floats round-trips exactly)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def content_key(ir: FusionIR) -> str:
    """What a fusion computes: its printed form without the group's own name.  Its nodes name
    the dtype of every input they read; an input no node reads (a shape source only: the
    `x` of `zeros_like(x)`) is listed with its dtype, which the kernel's parameters carry."""
    read = {n.attr if n.op is Prim.LOAD else n.attr[0]  # type: ignore[index]
            for n in ir.nodes if n.op in (Prim.LOAD, Prim.PIECE_LOAD)}
    unread = "".join(f"\n  unread %{i.name}: {i.dtype}" for k, i in enumerate(ir.inputs)
                     if k not in read)
    return print_fusion(ir).split("\n", 1)[1] + unread


def print_fusion(ir: FusionIR) -> str:
    """The one printer of the fusion IR (repr, dumps, tests)."""
    params = ", ".join(f"%{i.name}: {i.dtype}[r{i.ndim}]" for i in ir.inputs)
    reduced = f" reduce_ndim={ir.reduce_ndim}" if ir.reduce_ndim else ""
    if ir.reduce_dims is not None:
        reduced += f" reduce_dims={list(ir.reduce_dims)}"
    lines = [f"fusion {ir.name}({params}){reduced} {{"]
    for c, cat in enumerate(ir.concats):
        lines.append(f"  concat {c} along dim {cat.dim} of r{cat.ndim}: "
                     + "; ".join(_print_segment(ir, s) for s in cat.segments))
    for index, node in enumerate(ir.nodes):
        if node.op is Prim.LOAD:
            rhs = f"load {ir.inputs[int(node.attr)].name}"  # type: ignore[arg-type]
        elif node.op is Prim.PIECE_LOAD:
            k, c, seg = node.attr  # type: ignore[misc]
            rhs = f"load {ir.inputs[k].name} @ concat {c} segment {seg}"
        elif node.op is Prim.IN_PIECE:
            c, seg = node.attr  # type: ignore[misc]
            rhs = f"in_piece concat {c} segment {seg}"
        elif node.op is Prim.CONST:
            rhs = f"const {format_scalar(node.attr)}"  # type: ignore[arg-type]
        elif node.op is Prim.RAND:
            rhs = f"rand stream {node.attr}"
        else:
            rhs = f"{node.op.value} " + ", ".join(f"%{a}" for a in node.args)
        lines.append(f"  %{index} = {rhs} : {node.dtype}")
    for out in ir.outputs:
        shape = ", ".join([ir.inputs[i].name for i in out.shape_from]
                          + [f"reduced {ir.inputs[i].name}" for i in out.reduced_from]) or "scalar"
        layout = f", layout {list(out.layout)}" if out.layout is not None else ""
        row = f", {out.shape.value}" if out.shape is not OutputShape.FULL else ""
        row += "".join(f", concat {c}" for c in out.from_concats)
        lines.append(
            f"  {out.name} = store %{out.value} : {out.dtype}  (shape of {shape}{layout}{row})")
    lines.append("}")
    return "\n".join(lines)


def _print_segment(ir: FusionIR, s: Segment) -> str:
    if s.length is not None:
        return f"const x{s.length}"
    names = ", ".join(ir.inputs[i].name for i in s.shape_from) or "scalar"
    trim = f" trim {list(s.trim)}" if s.trim != (0, 0) else ""
    keep = f" keep {s.keep}" if s.keep is not None else ""
    return f"{'stacked ' if s.stacked else ''}shape of {names}{trim}{keep}"


def piece_operands(ir: FusionIR) -> list[tuple[int, int, int]]:
    """The (input, concatenation, segment) triples the fusion reads through PIECE_LOAD, sorted:
    one kernel operand each (an input placed in two segments is two operands)."""
    return sorted({n.attr for n in ir.nodes if n.op is Prim.PIECE_LOAD})  # type: ignore[misc]


class FusionIRError(ValueError):
    """The fusion IR breaks one of its invariants (a bug in a pass, not in user input)."""


def verify_fusion(ir: FusionIR) -> FusionIR:
    """Check SSA order, arities and the typing rules of nvfuse.fusion.prims; return `ir`."""
    for index, node in enumerate(ir.nodes):
        where = f"fusion {ir.name} %{index} ({node.op.value})"
        if len(node.args) != arity(node.op):
            raise FusionIRError(f"{where}: expected {arity(node.op)} args, got {len(node.args)}")
        if any(not 0 <= a < index for a in node.args):
            raise FusionIRError(f"{where}: argument refers forward or out of range: {node.args}")
        arg_dtypes = [ir.nodes[a].dtype for a in node.args]
        op = node.op
        if op is Prim.LOAD:
            if not isinstance(node.attr, int) or not 0 <= node.attr < len(ir.inputs):
                raise FusionIRError(f"{where}: bad input index {node.attr!r}")
            if ir.inputs[node.attr].dtype is not node.dtype:
                raise FusionIRError(f"{where}: load dtype differs from the input's")
        elif op is Prim.PIECE_LOAD or op is Prim.IN_PIECE:
            _verify_piece_leaf(ir, node, where)
        elif op is Prim.CONST:
            if not isinstance(node.attr, (bool, int, float)):
                raise FusionIRError(f"{where}: literal {node.attr!r} is not a scalar")
        elif op is Prim.RAND:
            if node.dtype is not DType.FLOAT32 or not isinstance(node.attr, int) or node.attr < 0:
                raise FusionIRError(f"{where}: rand is float32 with a stream number")
        elif op is Prim.CAST:
            pass
        elif op is Prim.ROW_NUMEL or op in REDUCTIONS:
            if ir.reduce_ndim <= 0:
                raise FusionIRError(f"{where}: row reduction in a fusion with reduce_ndim 0")
            if op is Prim.ROW_NUMEL and node.dtype is not DType.INT64:
                raise FusionIRError(f"{where}: row_numel is int64, got {node.dtype}")
            if op in ARG_REDUCTIONS:
                if node.dtype is not DType.INT64 or arg_dtypes[0] not in _REDUCE_DTYPES:
                    raise FusionIRError(f"{where}: indexes {arg_dtypes[0]} into {node.dtype}; "
                                        f"int64 indices of one of {_REDUCE_DTYPES}")
            elif op in REDUCTIONS and (node.dtype not in _REDUCE_DTYPES
                                       or arg_dtypes[0] is not node.dtype):
                raise FusionIRError(f"{where}: reduces {arg_dtypes[0]} into {node.dtype}; "
                                    f"both must be one of {_REDUCE_DTYPES}")
            if op is Prim.REDUCE_M2 and not node.dtype.is_float:
                raise FusionIRError(f"{where}: reduce_m2 is float32 or float64, got {node.dtype}")
        elif op is Prim.WHERE:
            if arg_dtypes[0] is not DType.BOOL or arg_dtypes[1] is not arg_dtypes[2]:
                raise FusionIRError(f"{where}: where(bool, T, T) got {arg_dtypes}")
            if node.dtype is not arg_dtypes[1]:
                raise FusionIRError(f"{where}: result dtype {node.dtype} != {arg_dtypes[1]}")
        else:
            if len(set(arg_dtypes)) != 1:
                raise FusionIRError(f"{where}: operands differ in dtype: {arg_dtypes}")
            operand = arg_dtypes[0]
            expected = DType.BOOL if op in UNARY_PRED or op in BINARY_PRED else operand
            if op not in UNARY_SAME | UNARY_PRED | BINARY_SAME | BINARY_PRED:
                raise FusionIRError(f"{where}: unknown prim")
            if node.dtype is not expected:
                raise FusionIRError(f"{where}: result dtype {node.dtype}, expected {expected}")
            if operand.is_reduced_float:
                raise FusionIRError(f"{where}: computes in {operand}; compute in float32")
            if op in FLOAT_ONLY and not operand.is_float:
                raise FusionIRError(f"{where}: float-only prim on {operand}")
            if op in INT_ONLY and operand.is_float:
                raise FusionIRError(f"{where}: integer-only prim on {operand}")
    if ir.reduce_dims is not None and (
            len(ir.reduce_dims) != ir.reduce_ndim or list(ir.reduce_dims) != sorted(
                set(ir.reduce_dims)) or any(d >= 0 for d in ir.reduce_dims)):
        raise FusionIRError(f"fusion {ir.name}: reduce_dims {ir.reduce_dims} are not "
                            f"{ir.reduce_ndim} sorted negative dims")
    rows = row_values(ir)
    for out in ir.outputs:
        if not 0 <= out.value < len(ir.nodes):
            raise FusionIRError(f"fusion {ir.name} output {out.name}: bad value %{out.value}")
        if any(not 0 <= i < len(ir.inputs) for i in out.shape_from + out.reduced_from):
            raise FusionIRError(f"fusion {ir.name} output {out.name}: bad shape_from")
        if out.shape.is_row and out.value not in rows:  # (a full output may broadcast a row)
            raise FusionIRError(f"fusion {ir.name} output {out.name}: shape {out.shape.value} "
                                f"but %{out.value} is a full value")
    return ir


def _verify_piece_leaf(ir: FusionIR, node: Node, where: str) -> None:
    if not ir.concats or ir.reduce_ndim:
        raise FusionIRError(f"{where}: concatenation leaf outside a pointwise concat fusion")
    attr = node.attr
    if node.op is Prim.IN_PIECE:
        if node.dtype is not DType.BOOL or not _segment_of(ir, attr):
            raise FusionIRError(f"{where}: in_piece is bool of a segment, got {attr!r}")
        return
    if not (isinstance(attr, tuple) and len(attr) == 3 and 0 <= attr[0] < len(ir.inputs)
            and _segment_of(ir, attr[1:])
            and ir.concats[attr[1]].segments[attr[2]].length is None):
        raise FusionIRError(f"{where}: bad (input, concatenation, value segment) {attr!r}")
    if ir.inputs[attr[0]].dtype is not node.dtype:
        raise FusionIRError(f"{where}: load dtype differs from the input's")


def _segment_of(ir: FusionIR, attr: object) -> bool:
    """Whether `attr` is a (concatenation, segment) pair of `ir`."""
    return (isinstance(attr, tuple) and len(attr) == 2 and 0 <= attr[0] < len(ir.concats)
            and 0 <= attr[1] < len(ir.concats[attr[0]].segments))


def reduced_positions(axes: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """The non-negative positions of the negative right-aligned dims `axes` in a shape of rank
    `rank` (dims beyond its rank are left out: a lower-rank operand broadcasts there)."""
    return tuple(rank + d for d in axes if rank + d >= 0)


def keepdim_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` with the dims `axes` (negative, right-aligned) set to 1."""
    reduced = set(reduced_positions(axes, len(shape)))
    return tuple(1 if d in reduced else n for d, n in enumerate(shape))


def dropped_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` without the dims `axes` (negative, right-aligned)."""
    reduced = set(reduced_positions(axes, len(shape)))
    return tuple(n for d, n in enumerate(shape) if d not in reduced)


# Accumulator dtypes of the REDUCE_* prims (halves accumulate in float32, narrow ints in int64).
_REDUCE_DTYPES = (DType.FLOAT32, DType.FLOAT64, DType.INT64)


def ancestors(nodes: Sequence[Node], roots: Iterable[int],
              stop: Container[int] = ()) -> set[int]:
    """`roots` and every node they depend on, not walking into (nor including) `stop`: the one
    dependency walk of the fusion IR (iterative: chains can be deep)."""
    found: set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n not in found and n not in stop:
            found.add(n)
            stack.extend(nodes[n].args)
    return found


def needed_nodes(nodes: Sequence[Node], outputs: Sequence[Output]) -> set[int]:
    """The nodes the outputs depend on (the outputs' own values included)."""
    return ancestors(nodes, (o.value for o in outputs))


def row_values(ir: FusionIR) -> frozenset[int]:
    """The nodes that are row values: reductions, and nodes whose arguments are all row values
    or leaves that do not vary along the reduced dims (literals, ROW_NUMEL), with at least one
    reduction among their ancestors.  Empty when reduce_ndim is 0."""
    if not ir.reduce_ndim:
        return frozenset()
    rows: set[int] = set()
    uniform: set[int] = set()  # literals, ROW_NUMEL and values computed only from them
    for index, node in enumerate(ir.nodes):
        if node.op in REDUCTIONS:
            rows.add(index)
        elif node.op in (Prim.CONST, Prim.ROW_NUMEL):
            uniform.add(index)
        elif node.args and all(a in rows or a in uniform for a in node.args):
            (rows if any(a in rows for a in node.args) else uniform).add(index)
    return frozenset(rows)
