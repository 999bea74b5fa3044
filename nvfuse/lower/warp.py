"""The warp-rows schedule's lowering hooks: (FusionIR, ReductionSignature of kind WARP_ROW)
-> the lowering state `nvfuse.lower.reduction.lower_reduction` drives, with one warp per row
instead of one block.

For short rows (C <= WARP_ROW_MAX, nvfuse/schedule/reduction.py) a block per row leaves most
of its threads idle.  Here a block of WARP_BLOCK = 32 * WARP_ROWS threads owns WARP_ROWS
consecutive rows:

    w = threadIdx.x / 32    row = blockIdx.x * WARP_ROWS + w    (grid = ceil(rows / WARP_ROWS))
    lane = threadIdx.x % 32 columns lane, lane + 32, ...

Warps whose row is past the end (the last block) skip every load and store (`live`, uniform
across a warp); every cross-thread combine is a warp allreduce (`WarpReduce`, a WARP-scope
`WelfordReduce` / `ArgReduce`), reached by all 32 lanes of every warp, live or not, so there
is no shared memory and no barrier -- a barrier under the row-dependent guard would be wrong,
and none is needed.  Row outputs are stored by lane 0 of each live warp.  Not persistent
(sig.persist is 0): a row is at most two columns per lane.
"""

from __future__ import annotations

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.lower.kir import (
    Const,
    Declare,
    Expr,
    IndexOp,
    ReduceOp,
    ReduceScope,
    Special,
    Stmt,
    Var,
    WarpReduce,
    WelfordReduce,
)
from nvfuse.lower.reduction_state import RowLowering
from nvfuse.schedule.reduction import WARP_BLOCK, WARP_ROWS, ReductionSignature

WARP = 32


class WarpLowering(RowLowering):
    """`RowLowering` with one warp per row (see the module docstring)."""

    warp_rows = True

    def __init__(self, ir: FusionIR, sig: ReductionSignature, block: int) -> None:
        super().__init__(ir, sig)
        if block != WARP_BLOCK or sig.persist:
            raise ValueError(f"warp rows: block {block} (want {WARP_BLOCK}), "
                             f"persist {sig.persist} (want 0)")
        idx = self.idx
        self.lane = Var("wl", idx)
        self.lane_step = Const(WARP, idx)
        self.live = IndexOp("<", Var("row", idx), self.rows, DType.BOOL)

    def row_index(self, out: list[Stmt]) -> Expr:
        idx = self.idx
        tid, warp = Special("threadIdx.x", idx), Const(WARP, idx)
        out.append(Declare("wl", idx, init=IndexOp("%", tid, warp, idx)))
        out.append(Declare("wq", idx, init=IndexOp("/", tid, warp, idx)))
        first = IndexOp("*", Special("blockIdx.x", idx), Const(WARP_ROWS, idx), idx)
        out.append(Declare("row", idx, init=IndexOp("+", first, Var("wq", idx), idx)))
        return Var("row", idx)

    def declare_scratch(self, dtype: DType, block: int, out: list[Stmt]) -> None:
        pass  # warp shuffles need no shared memory

    def allreduce(self, dst: Var, src: Expr, op: ReduceOp, dtype: DType) -> list[Stmt]:
        return [WarpReduce(dst, src, op)]

    def welford_allreduce(self, results: list[Var], states: list[Var], tag: str,
                          block: int) -> tuple[list[Stmt], list[Stmt]]:
        mean, m2, n = results
        return [], [WelfordReduce(mean, m2, n, states[0], states[1], states[2],
                                  ReduceScope.WARP)]

    def first_thread(self) -> Expr:
        first = IndexOp("==", self.lane, Const(0, self.idx), DType.BOOL)
        assert self.live is not None
        return IndexOp("&&", first, self.live, DType.BOOL)

    def grid(self) -> Expr:
        idx = self.idx
        return IndexOp("/", IndexOp("+", self.rows, Const(WARP_ROWS - 1, idx), idx),
                       Const(WARP_ROWS, idx), idx)
