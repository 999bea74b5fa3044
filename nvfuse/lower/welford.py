"""Lower one REDUCE_M2 node of a row-reduction fusion, with the REDUCE_SUMs of the same operand:
(the reduction lowering's state, the node's index, threads per block, the sums' indices, the
sums' block-reduce scratch) -> the statements that leave the row's m2 (sum of squared
deviations from the row mean) in register `v{index}` of every thread, and each sum in
`v{sum}`, recorded in `lo.row_exprs`.  The sums ride the Welford column loop (one read of the
row for layer norm's mean and variance) with plain accumulators, so they keep eager's values,
infinities and NaNs included.

Why Welford with a pivot: sum(x^2) - n * mean^2 cancels catastrophically when |mean| >> std
(float32 data of mean 1e4 and std 1 loses every digit).  Welford's running update (count,
mean, m2) avoids the subtraction of large squares, and shifting every value by one pivot per
row -- the row's first element, loaded once -- makes the running mean small, which removes the
remaining float32 rounding of `x - mean` at large magnitudes.  m2 does not depend on the shift.

Statements produced (T = the node's float dtype):
1. pivot = operand at column 0 (a column loop that visits column 0 only; 0 for empty rows);
2. per thread: n = mean = m2 = 0; for each of its columns, with d = x - pivot:
   n += 1; delta = d - mean; mean += delta / n; m2 += delta * (d - mean);
   and for each sum s: acc_s += x;
3. the schedule's Welford allreduce over the row's threads (Chan's combine) into
   (mean, m2, n): every thread gets the row's m2 (row schedule: WelfordReduce(BLOCK) with
   scratch `wel_<dtype>` of 3 * block / 32 elements; column schedule: nvfuse/lower/column.py).
   Then the schedule's allreduce (SUM) per sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nvfuse.fusion.prims import Prim
from nvfuse.lower.kir import (
    Assign,
    Compute,
    Const,
    Declare,
    Expr,
    ReduceOp,
    Stmt,
    Var,
)

if TYPE_CHECKING:
    from nvfuse.lower.reduction_state import RowLowering

P = Prim


def lower_m2(lo: RowLowering, index: int, block: int, sums: Sequence[int] = ()) -> list[Stmt]:
    """The statements of REDUCE_M2 node `index` (see the module docstring)."""
    node = lo.ir.nodes[index]
    dtype, operand = node.dtype, node.args[0]
    tag = f"{index}"
    zero = Const(0.0, dtype)
    out: list[Stmt] = []
    pivot = Var(f"wpivot{tag}", dtype)
    out.append(Declare(pivot.name, dtype, init=zero))

    def load_pivot(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        exprs = lo.column_values([operand], offsets, stmts)
        stmts.append(Assign(pivot, exprs[operand]))
        return stmts

    out.append(lo.column_loop(load_pivot, start=Const(0, lo.idx), step=lo.numel))
    n, mean, m2 = (Var(f"w{what}{tag}", dtype) for what in ("n", "mean", "m2"))
    accs = [Var(f"acc{s}", dtype) for s in sums]
    for v in (n, mean, m2, *accs):
        out.append(Declare(v.name, dtype, init=zero))

    def update(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        exprs = lo.column_values([operand], offsets, stmts)
        d = Var(f"wd{tag}", dtype)
        delta = Var(f"wdelta{tag}", dtype)
        stmts.append(Declare(d.name, dtype, init=Compute(P.SUB, (exprs[operand], pivot), dtype)))
        stmts.append(Assign(n, Compute(P.ADD, (n, Const(1.0, dtype)), dtype)))
        stmts.append(Declare(delta.name, dtype, init=Compute(P.SUB, (d, mean), dtype)))
        stmts.append(Assign(mean, Compute(P.ADD, (mean, Compute(P.DIV, (delta, n), dtype)),
                                          dtype)))
        spread = Compute(P.MUL, (delta, Compute(P.SUB, (d, mean), dtype)), dtype)
        stmts.append(Assign(m2, Compute(P.ADD, (m2, spread), dtype)))
        for acc in accs:
            stmts.append(Assign(acc, Compute(P.ADD, (acc, exprs[operand]), dtype)))
        return stmts

    out.append(lo.column_loop(update))
    results = [Var(f"w{what}_row{tag}", dtype) for what in ("mean", "m2", "n")]
    setup, combine = lo.welford_allreduce(results, [mean, m2, n], tag, block)
    out.extend(setup)
    for v in results:
        out.append(Declare(v.name, dtype))
    out.extend(combine)
    row = Var(f"v{index}", dtype)
    out.append(Declare(row.name, dtype, init=results[1]))
    lo.row_exprs[index] = row
    for s, acc in zip(sums, accs):
        total = Var(f"v{s}", dtype)
        out.append(Declare(total.name, dtype))
        out.extend(lo.allreduce(total, acc, ReduceOp.SUM, dtype))
        lo.row_exprs[s] = total
    return out
