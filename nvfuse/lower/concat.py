"""Lowering of a fusion's concatenation leaves (PIECE_LOAD, IN_PIECE) into pointwise kernel IR.

Input: the FusionIR, its ConcatSignature, the index variables of the merged dims and the index
dtype.  Output (`lower_pieces`): the scalar parameters the concatenation adds (named as
`nvfuse.schedule.concat`'s launch scalars, by `nvfuse.schedule.names`), the statements that
load every piece operand and the kernel-IR expression of every PIECE_LOAD / IN_PIECE node,
for the lane body.

A piece operand (input i placed as segment k of concatenation c) is one register array
`r_in{i}_c{c}p{k}` (a vector of `lanes` when the schedule vectorizes: a thread's lanes then
lie in one segment, and j below is the first lane's coordinate), set to 0
and overwritten by a load only inside `if (cat{c}_end{k-1} <= j && j < cat{c}_end{k})`, j
being the coordinate along c's dim: the offset is formed inside the branch from the shifted
coordinate j + cat{c}_shift{k}, so no thread ever reads outside the piece (nor forms a negative
offset).  IN_PIECE (c, k) is `j < cat{c}_end{k}`.  A concatenation the signature marks as
broadcast (`cat_broadcast`: extent 1 along its dim, the space longer) has j = 0 everywhere.
Only existing kernel-IR constructs are used, so the emitter, the verifier and the interpreter
(with its bounds checks) need nothing new.
"""

from __future__ import annotations

from functools import partial

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, piece_operands
from nvfuse.fusion.prims import Prim
from nvfuse.lower.index import offset
from nvfuse.lower.kir import (
    Assign, Compute, Const, Declare, Elem, Expr, For, If, IndexOp, Load, Param, Stmt, Var,
    stride_exprs,
)
from nvfuse.schedule import names
from nvfuse.schedule.concat import ConcatSignature


def _zero(dtype: DType) -> Expr:
    if dtype.is_reduced_float:  # no half literals: convert a float32 zero
        return Compute(Prim.CAST, (Const(0.0, DType.FLOAT32),), dtype)
    return Const(False if dtype is DType.BOOL else 0.0 if dtype.is_float else 0, dtype)


def piece_params(ir: FusionIR, sig: ConcatSignature, idx: DType) -> tuple[
        list[list[Expr]], list[Param]]:
    """Per piece operand its stride expressions, and every scalar the concatenations add."""
    strides: list[list[Expr]] = []
    scalars: list[Param] = []
    for (i, c, k), classes in zip(piece_operands(ir), sig.pieces):
        operand = names.piece(ir.inputs[i].name, c, k)
        strides.append(stride_exprs(classes, partial(names.stride, operand), idx, scalars))
    for c, cat in enumerate(ir.concats):
        scalars += [Param(names.cat_end(c, k), idx) for k in range(len(cat.segments))]
        scalars += [Param(names.cat_shift(c, k), idx) for k, s in enumerate(cat.segments)
                    if s.length is None]
    return strides, scalars


def piece_lanes(sig: ConcatSignature) -> list[int]:
    """Elements per thread of each piece operand: one when it broadcasts along the inner dim."""
    return [sig.lanes if c and c[-1] == "1" else 1 for c in sig.pieces]


def input_aligns(ir: FusionIR, sig: ConcatSignature) -> dict[int, int]:
    """Byte alignment the vector piece loads need of their inputs' pointers."""
    aligns: dict[int, int] = {}
    for (i, _, _), n in zip(piece_operands(ir), piece_lanes(sig)):
        aligns[i] = max(aligns.get(i, 1), n * ir.inputs[i].dtype.itemsize)
    return aligns


def lower_pieces(ir: FusionIR, sig: ConcatSignature, index_vars: list[Expr],
                 strides: list[list[Expr]], idx: DType,
                 lane: Var) -> tuple[list[Stmt], dict[int, Expr]]:
    """The piece loads and the lane-body expressions (in lane loop variable `lane`) of the
    concatenation leaves."""
    stmts: list[Stmt] = []
    lanes = dict(zip(piece_operands(ir), piece_lanes(sig)))
    for (i, c, k), row in zip(piece_operands(ir), strides):
        t = ir.inputs[i]
        j = _coordinate(sig, c, index_vars, idx)
        tag = f"{t.name}_c{c}p{k}"
        reg, n = f"r_{tag}", lanes[i, c, k]
        stmts.append(Declare(reg, t.dtype, lanes=n))
        if n == 1:
            stmts.append(Assign(Elem(reg, Const(0, DType.INT32), t.dtype), _zero(t.dtype)))
        else:
            z = Var("z", DType.INT32)
            stmts.append(For(z, Const(0, DType.INT32), Const(n, DType.INT32),
                             Const(1, DType.INT32), (Assign(Elem(reg, z, t.dtype),
                                                            _zero(t.dtype)),), unroll=True))
        shifted = Var(f"j_{tag}", idx)
        coords = [shifted if d == sig.cat_dims[c] else v for d, v in enumerate(index_vars)]
        off = Var(f"off_{tag}", idx)
        load = (Declare(shifted.name, idx,
                        init=IndexOp("+", j, Param(names.cat_shift(c, k), idx), idx)),
                Declare(off.name, idx, init=offset(coords, row, idx)),
                Load(reg, t.dtype, t.name, off, n, vector=n > 1))
        stmts.append(If(_in_segment(j, c, k, idx), load))
    exprs: dict[int, Expr] = {}
    for index, node in enumerate(ir.nodes):
        if node.op is Prim.PIECE_LOAD:
            i, c, k = node.attr  # type: ignore[misc]
            at: Expr = lane if lanes[i, c, k] > 1 else Const(0, DType.INT32)
            exprs[index] = Elem(f"r_{ir.inputs[i].name}_c{c}p{k}", at, node.dtype)
        elif node.op is Prim.IN_PIECE:
            c, k = node.attr  # type: ignore[misc]
            exprs[index] = IndexOp("<", _coordinate(sig, c, index_vars, idx),
                                   Param(names.cat_end(c, k), idx), DType.BOOL)
    return stmts, exprs


def _coordinate(sig: ConcatSignature, c: int, index_vars: list[Expr], idx: DType) -> Expr:
    """The coordinate along concatenation c's dim (0 when it broadcasts there)."""
    return Const(0, idx) if c in sig.cat_broadcast else index_vars[sig.cat_dims[c]]


def _in_segment(j: Expr, c: int, k: int, idx: DType) -> Expr:
    below = IndexOp("<", j, Param(names.cat_end(c, k), idx), DType.BOOL)
    if k == 0:
        return below
    above = IndexOp("<=", Param(names.cat_end(c, k - 1), idx), j, DType.BOOL)
    return IndexOp("&&", above, below, DType.BOOL)
