"""Lower one arg reduction of a row-reduction fusion: (the reduction lowering's state, the index of
a REDUCE_ARGMAX / REDUCE_ARGMIN node, threads per block, the nodes lowered so far) -> the
statements that leave the row's index (int64) in register `v{index}` of every thread, and the
row's value in `v{m}` for every REDUCE_MAX / REDUCE_MIN node `m` of the same operand (max.dim's
values), all recorded in `lo.row_exprs` and added to `done`.

The pair rule is torch.argmax / argmin's (eager's CUDA `GreaterOrNan` / `LessOrNan`): a NaN
beats any number, equal values (or two NaNs) go to the smaller index, else the larger (argmax)
or smaller (argmin) value.  On pairs with distinct indices that is a strict order, so the
per-thread, warp and block combines may run in any order and still pick the same element:
the index is deterministic, and the value is the element's own (a -0.0 keeps its sign).

Statements produced (T = the operand's dtype, float32 / float64 / int64):
1. per thread: (acc, acci) = (MAX / MIN's identity, ARG_NO_INDEX); for each of its columns,
   with index = col (the row-major flat index within the reduced dims: the column loop walks
   them in logical order) as int64: when (x, index) beats (acc, acci), take it -- the same rule
   written with prims, so the thread's update and the cross-thread combine agree;
2. ArgReduce(BLOCK) into (rv{index}, v{index}) on two shared arrays of block / 32 elements,
   `argv{index}` (T) and `argi{index}` (int64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nvfuse.dtypes import DType
from nvfuse.fusion.prims import Prim
from nvfuse.lower.kir import (
    ARG_NO_INDEX,
    ArgReduce,
    Assign,
    Compute,
    Const,
    Declare,
    Expr,
    ReduceOp,
    ReduceScope,
    Shared,
    Stmt,
    Var,
    identity_value,
)

if TYPE_CHECKING:
    from nvfuse.lower.reduction_state import RowLowering as _Lowering

P = Prim
BOOL, I64 = DType.BOOL, DType.INT64
def _p(prim: Prim, *args: Expr, dtype: DType = BOOL) -> Compute:
    return Compute(prim, args, dtype)


def prefers(a: Expr, ia: Expr, b: Expr, ib: Expr, is_max: bool) -> Expr:
    """Whether pair (a, ia) beats pair (b, ib) (the module docstring's rule) as a bool
    expression of prims; nvf_arg_prefer and the interpreter's `arg_prefer` are the same rule."""
    earlier = _p(P.LT, ia, ib)
    numbers = _p(P.WHERE, _p(P.EQ, a, b), earlier, _p(P.GT if is_max else P.LT, a, b))
    if not a.dtype.is_float:
        return numbers
    a_nan, b_nan = _p(P.ISNAN, a), _p(P.ISNAN, b)
    b_number = _p(P.EQ, b_nan, Const(False, BOOL))
    nan_rule = _p(P.BITWISE_AND, a_nan, _p(P.BITWISE_OR, b_number, earlier))
    return _p(P.WHERE, _p(P.BITWISE_OR, a_nan, b_nan), nan_rule, numbers)


def lower_arg(lo: _Lowering, index: int, values: Sequence[int], block: int) -> list[Stmt]:
    """The statements of arg reduction `index` and its value partners `values` (the max / min
    of the same operand; nvfuse/fusion/phases.py), module docstring."""
    ir = lo.ir
    node = ir.nodes[index]
    operand = node.args[0]
    dtype = ir.nodes[operand].dtype
    is_max = node.op is P.REDUCE_ARGMAX
    op = ReduceOp.MAX if is_max else ReduceOp.MIN
    acc, acci = Var(f"acc{index}", dtype), Var(f"acci{index}", I64)
    out: list[Stmt] = [Declare(acc.name, dtype, init=Const(identity_value(op, dtype), dtype)),
                       Declare(acci.name, I64, init=Const(ARG_NO_INDEX, I64))]

    def update(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        x = lo.column_values([operand], offsets, stmts)[operand]
        col = Var(f"ci{index}", I64)
        stmts.append(Declare(col.name, I64, init=Compute(P.CAST, (Var("col", lo.idx),), I64)))
        take = Var(f"take{index}", BOOL)
        stmts.append(Declare(take.name, BOOL, init=prefers(x, col, acc, acci, is_max)))
        stmts.append(Assign(acc, Compute(P.WHERE, (take, x, acc), dtype)))
        stmts.append(Assign(acci, Compute(P.WHERE, (take, col, acci), I64)))
        return stmts

    out.append(lo.column_loop(update))
    value, row_index = Var(f"rv{index}", dtype), Var(f"v{index}", I64)
    if lo.warp_rows:  # one warp per row (nvfuse/lower/warp.py): shuffles
        out += [Declare(value.name, dtype), Declare(row_index.name, I64)]
        out.append(ArgReduce(value, row_index, acc, acci, op, ReduceScope.WARP))
    else:
        scratch, index_scratch = f"argv{index}", f"argi{index}"
        out.append(Shared(scratch, dtype, max(1, block // 32)))
        out.append(Shared(index_scratch, I64, max(1, block // 32)))
        out += [Declare(value.name, dtype), Declare(row_index.name, I64)]
        out.append(ArgReduce(value, row_index, acc, acci, op, ReduceScope.BLOCK, scratch,
                             index_scratch))
    lo.row_exprs[index] = row_index
    for v in values:
        out.append(Declare(f"v{v}", dtype, init=value))
        lo.row_exprs[v] = Var(f"v{v}", dtype)
    return out
