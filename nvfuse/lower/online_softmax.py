"""Online softmax: a row max M = max(a) and the sum S = sum(exp(a - M)) of the same row in one
column loop (`lower_online`), for looped rows (too long to stay in registers), so softmax and
log_softmax read the row twice (this loop, then normalize) instead of three times.

Input: the lowering state (nvfuse/lower/reduction_state.py), the REDUCE_MAX node index and its
REDUCE_SUM partner (an ONLINE phase, nvfuse/fusion/phases.py).  Output: statements leaving the
row values v{max} and v{sum} in `lo.row_exprs`.

Per thread, a running (m, s) over its columns:
    m' = maximum(m, x);  s = s * (m == m' ? 1 : exp(m - m')) + (x == -inf ? 0 : exp(x - m'))
then across the block, the (m, s) combine in two allreduces: M = max of the m's, then
S = sum of s * (m == M ? 1 : exp(m - M)).  Eager's numerics:
- the `==` guards keep exp(-inf - -inf) (threads or prefixes holding only -inf, or nothing)
  and exp(inf - inf) for the rescale from making NaN where the factor is exactly 1;
- an x of -inf contributes exp(-inf - M) = 0 whenever M is finite or +inf; when M is -inf
  (every element -inf) eager's exp(-inf - -inf) is NaN, so S is NaN then (`where` at the end);
- an x of +inf gives exp(inf - inf) = NaN (eager's NaN row), a NaN x makes m NaN and every
  factor exp(NaN) = NaN: NaN rows as eager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvfuse.dtypes import DType
from nvfuse.fusion.prims import Prim
from nvfuse.lower.kir import Assign, Compute, Const, Declare, Expr, ReduceOp, Stmt, Var

if TYPE_CHECKING:
    from nvfuse.lower.reduction_state import RowLowering

P = Prim


def _factor(m: Expr, top: Expr, dtype: DType) -> Expr:
    """m == top ? 1 : exp(m - top): the rescale of a partial sum taken relative to m."""
    same = Compute(P.EQ, (m, top), DType.BOOL)
    return Compute(P.WHERE, (same, Const(1.0, dtype),
                             Compute(P.EXP, (Compute(P.SUB, (m, top), dtype),), dtype)), dtype)


def lower_online(lo: RowLowering, max_index: int, sum_index: int) -> list[Stmt]:
    """The statements computing both row values (see the module docstring)."""
    node = lo.ir.nodes[max_index]
    dtype, operand = node.dtype, node.args[0]
    tag = str(max_index)
    neg_inf = Const(float("-inf"), dtype)
    m, s = Var(f"om{tag}", dtype), Var(f"os{tag}", dtype)
    out: list[Stmt] = [Declare(m.name, dtype, init=neg_inf),
                       Declare(s.name, dtype, init=Const(0.0, dtype))]

    def update(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        x = lo.column_values([operand], offsets, stmts)[operand]
        new = Var(f"omn{tag}", dtype)
        stmts.append(Declare(new.name, dtype, init=Compute(P.MAXIMUM, (m, x), dtype)))
        is_neg_inf = Compute(P.EQ, (x, neg_inf), DType.BOOL)
        term = Compute(P.WHERE, (is_neg_inf, Const(0.0, dtype), Compute(
            P.EXP, (Compute(P.SUB, (x, new), dtype),), dtype)), dtype)
        scaled = Compute(P.MUL, (s, _factor(m, new, dtype)), dtype)
        stmts.append(Assign(s, Compute(P.ADD, (scaled, term), dtype)))
        stmts.append(Assign(m, new))
        return stmts

    out.append(lo.column_loop(update))
    row_max = Var(f"v{max_index}", dtype)
    out.append(Declare(row_max.name, dtype))
    out.extend(lo.allreduce(row_max, m, ReduceOp.MAX, dtype))
    part = Var(f"osp{tag}", dtype)
    out.append(Declare(part.name, dtype,
                       init=Compute(P.MUL, (s, _factor(m, row_max, dtype)), dtype)))
    total = Var(f"osum{tag}", dtype)
    out.append(Declare(total.name, dtype))
    out.extend(lo.allreduce(total, part, ReduceOp.SUM, dtype))
    # every element -inf: eager's exp(-inf - -inf) is NaN
    row_sum = Var(f"v{sum_index}", dtype)
    all_neg_inf = Compute(P.EQ, (row_max, neg_inf), DType.BOOL)
    out.append(Declare(row_sum.name, dtype, init=Compute(
        P.WHERE, (all_neg_inf, Const(float("nan"), dtype), total), dtype)))
    lo.row_exprs[max_index] = row_max
    lo.row_exprs[sum_index] = row_sum
    return out
