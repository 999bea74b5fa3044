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

A persistent row of at most TWO_PASS_MAX_WORDS 32-bit words per thread (its values sit in
registers, so another pass over them costs no memory traffic), and a row staged whole in
shared memory (sig.whole_row: by its block or its cluster), take the row's exact two-pass
statistics instead (`_row_two_pass`), with plain sums only: no division per element
(Welford's `delta / n` made layer norm compute-bound on an H100) and no Chan combine across
the threads (each of its 10 steps in a 1024-column row's block allreduce divides and
branches: layer norm h1024 bf16 spent about a third of its 1,296 SASS instructions there):
   r = 1 / max(row_numel, 1); mean = the allreduce (SUM) of each thread's sum of d * r (every
   partial sum is at most max |d|: no overflow where the plain sum of large values would);
   m2 = the allreduce (SUM) of each thread's sum of (d - mean)^2, the sums riding this pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nvfuse.dtypes import DType
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
# the two-pass keeps the row's shifted values live across its passes: past 16 words per thread
# (the largest persistent buckets) ptxas spills under the 64-register cap of a 1024-thread
# block, so those rows keep the one-pass Welford update
TWO_PASS_MAX_WORDS = 16


def row_two_pass(lo: RowLowering, dtype: DType) -> bool:
    """Whether REDUCE_M2 of `dtype` takes the row's two-pass statistics (module docstring):
    plain block sums, so the kernel needs the block-reduction scratch of `dtype`."""
    if lo.all_staged:  # every column in shared memory: another pass costs no global traffic
        return True
    return 0 < lo.persist * (2 if dtype is DType.FLOAT64 else 1) <= TWO_PASS_MAX_WORDS


def lower_m2(lo: RowLowering, index: int, block: int, sums: Sequence[int] = (),
             state: bool = False) -> list[Stmt]:
    """The statements of REDUCE_M2 node `index` (see the module docstring).  `state`: the
    caller also reads the combined Welford state (w{mean,m2,n}_row<index>: a split stage's
    partials), so the row's two-pass statistics, which have none, are not taken."""
    node = lo.ir.nodes[index]
    dtype, operand = node.dtype, node.args[0]
    tag = f"{index}"
    zero = Const(0.0, dtype)
    out: list[Stmt] = []
    pivot = lo.state(f"wpivot{tag}", dtype)
    out.extend(lo.declare_state(f"wpivot{tag}", dtype, zero))

    def load_pivot(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        exprs = lo.column_values([operand], offsets, stmts)
        stmts.append(Assign(pivot, exprs[operand]))
        return stmts

    out.append(lo.column_loop(load_pivot, start=Const(0, lo.idx), step=lo.numel))
    two_pass = not state and row_two_pass(lo, dtype)
    kept = ("mean", "m2") if two_pass else ("n", "mean", "m2")  # the two-pass counts no n
    for name in [*(f"w{what}{tag}" for what in kept), *(f"acc{s}" for s in sums)]:
        out.extend(lo.declare_state(name, dtype, zero))
    n, mean, m2 = (lo.state(f"w{what}{tag}", dtype) for what in ("n", "mean", "m2"))
    accs = [lo.state(f"acc{s}", dtype) for s in sums]

    def shifted(exprs: dict[int, Expr], stmts: list[Stmt]) -> Var:
        d = Var(f"wd{tag}", dtype)
        stmts.append(Declare(d.name, dtype, init=Compute(P.SUB, (exprs[operand], pivot), dtype)))
        return d

    def update(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        exprs = lo.column_values([operand], offsets, stmts)
        d = shifted(exprs, stmts)
        delta = Var(f"wdelta{tag}", dtype)
        stmts.append(Assign(n, Compute(P.ADD, (n, Const(1.0, dtype)), dtype)))
        stmts.append(Declare(delta.name, dtype, init=Compute(P.SUB, (d, mean), dtype)))
        stmts.append(Assign(mean, Compute(P.ADD, (mean, Compute(P.DIV, (delta, n), dtype)),
                                          dtype)))
        spread = Compute(P.MUL, (delta, Compute(P.SUB, (d, mean), dtype)), dtype)
        stmts.append(Assign(m2, Compute(P.ADD, (m2, spread), dtype)))
        stmts.extend(add_sums(exprs))
        return stmts

    def add_sums(exprs: dict[int, Expr]) -> list[Stmt]:
        return [Assign(acc, Compute(P.ADD, (acc, exprs[operand]), dtype)) for acc in accs]

    if two_pass:
        # one lane per thread (persistent or staged row schedule): the states are scalars
        assert isinstance(mean, Var) and isinstance(m2, Var)
        out.extend(_row_two_pass(lo, index, tag, dtype, operand, [mean, m2], shifted,
                                 add_sums))
    else:
        out.append(lo.column_loop(update))
        out.extend(_combine(lo, index, tag, dtype, block, [mean, m2, n]))  # type: ignore[list-item]
    for s, acc in zip(sums, accs):
        total = lo.state(f"v{s}", dtype)
        out.extend(lo.declare_state(f"v{s}", dtype))
        out.extend(lo.allreduce(total, acc, ReduceOp.SUM, dtype))  # type: ignore[arg-type]
        lo.row_exprs[s] = total
    return out


def _combine(lo: RowLowering, index: int, tag: str, dtype: DType, block: int,
             states: list[Var]) -> list[Stmt]:
    """The schedule's Welford allreduce of the threads' (mean, m2, n) `states`; the row's m2
    in v<index>."""
    out: list[Stmt] = []
    result_names = [f"w{what}_row{tag}" for what in ("mean", "m2", "n")]
    results = [lo.state(name, dtype) for name in result_names]
    setup, combine = lo.welford_allreduce(results, states,  # type: ignore[arg-type]
                                          tag, block)
    out.extend(setup)
    for name in result_names:
        out.extend(lo.declare_state(name, dtype))
    out.extend(combine)
    out.extend(lo.declare_state(f"v{index}", dtype, results[1]))
    lo.row_exprs[index] = lo.state(f"v{index}", dtype)
    return out


def _row_two_pass(lo: RowLowering, index: int, tag: str, dtype: DType, operand: int,
                  stats: list[Var], shifted: Callable[[dict[int, Expr], list[Stmt]], Var],
                  add_sums: Callable[[dict[int, Expr]], list[Stmt]]) -> list[Stmt]:
    """A persistent or wholly staged row's (mean, m2) by two passes over its registers or
    shared memory, each closed by a plain allreduce (the module docstring); the row's m2 in
    v<index>, the sums ride the m2 pass (on the mean's pass, layer norm at hidden 4096
    spilled: 64 registers and 20 bytes of local memory, against 61 and none)."""
    mean, m2 = stats
    one = Const(1.0, dtype)
    row_mean, row_m2 = Var(f"wmean_row{tag}", dtype), Var(f"wm2_row{tag}", dtype)

    def mean_pass(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        exprs = lo.column_values([operand], offsets, stmts)
        d = shifted(exprs, stmts)
        stmts.append(Assign(mean, Compute(P.ADD, (mean, Compute(P.MUL, (d, share), dtype)),
                                          dtype)))
        return stmts

    def m2_pass(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        exprs = lo.column_values([operand], offsets, stmts)
        dev = Compute(P.SUB, (shifted(exprs, stmts), row_mean), dtype)
        dev_var = Var(f"wdev{tag}", dtype)
        stmts.append(Declare(dev_var.name, dtype, init=dev))
        stmts.append(Assign(m2, Compute(P.ADD, (m2, Compute(P.MUL, (dev_var, dev_var), dtype)),
                                        dtype)))
        stmts.extend(add_sums(exprs))
        return stmts

    share = Var(f"wshare{tag}", dtype)
    count = Compute(P.CAST, (lo.numel,), dtype)
    out: list[Stmt] = [
        Declare(share.name, dtype,
                init=Compute(P.DIV, (one, Compute(P.MAXIMUM, (count, one), dtype)), dtype)),
        lo.column_loop(mean_pass),
        Declare(row_mean.name, dtype),
        *lo.allreduce(row_mean, mean, ReduceOp.SUM, dtype),
        lo.column_loop(m2_pass),
        Declare(row_m2.name, dtype),
        *lo.allreduce(row_m2, m2, ReduceOp.SUM, dtype),
        Declare(f"v{index}", dtype, init=row_m2)]
    lo.row_exprs[index] = Var(f"v{index}", dtype)
    return out
