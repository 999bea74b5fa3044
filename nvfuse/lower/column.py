"""The column schedule's lowering hooks: (FusionIR, ColumnSignature, block) -> the lowering
state `nvfuse.lower.reduction.lower_reduction` drives, so that the same phases (reductions,
row values, full outputs, row outputs) run with threads laid out across rows, not along them.

When the kept dims are innermost in memory (`x.sum(0)` of a contiguous [M, N]: a bias
gradient; a permuted input), one block per row would read one element per row per warp, 32
rows apart.  Here a block owns COLUMN_X consecutive rows instead:

    tx = threadIdx.x % COLUMN_X    row = blockIdx.x * COLUMN_X + tx   (coalesced across a warp)
    ty = threadIdx.x / COLUMN_X    columns ty, ty + Y, ty + 2Y, ...    (Y = block / COLUMN_X)

Threads whose row is past the end (the last block) skip every load and store (`live`) but
reach every barrier.  A reduction's per-thread partials are combined across the Y threads of a
row through shared memory with explicit barriers -- every thread writes its partial to
scratch[threadIdx.x], Sync, then every thread of the row combines scratch[j * COLUMN_X + tx]
for j = 0..Y-1 in that order (so all Y threads get the same bits), Sync (the scratch is reused
by the next reduction of its dtype).  Welford states combine the same way with Chan's update
over three arrays.  Row outputs are stored by the ty == 0 thread of each live row.
Scratch: one `block`-element shared array per dtype and slot (`col<slot>_<dtype>`).
"""

from __future__ import annotations

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.prims import Prim
from nvfuse.lower.kir import (
    Assign,
    Compute,
    Const,
    Declare,
    Expr,
    For,
    IndexOp,
    ReduceOp,
    Shared,
    SharedElem,
    Special,
    Stmt,
    Sync,
    Var,
    combine_prim,
    identity_value,
)
from nvfuse.lower.reduction_state import RowLowering
from nvfuse.schedule.reduction import COLUMN_X, ColumnSignature

P = Prim


class ColumnLowering(RowLowering):
    """`RowLowering` with the column schedule's thread layout (see the module docstring)."""

    def __init__(self, ir: FusionIR, sig: ColumnSignature, block: int) -> None:
        super().__init__(ir, sig)
        if block % COLUMN_X or block > 1024:
            raise ValueError(f"column schedule: block {block} is not a multiple of {COLUMN_X}")
        idx = self.idx
        self.block = block
        self.thread_rows = block // COLUMN_X
        self.tx, self.ty = Var("tx", idx), Var("ty", idx)
        self.lane = self.ty
        self.lane_step = Const(self.thread_rows, idx)
        self.live = IndexOp("<", Var("row", idx), self.rows, DType.BOOL)
        self.scratch: set[str] = set()

    def row_index(self, out: list[Stmt]) -> Expr:
        idx = self.idx
        tid, x = Special("threadIdx.x", idx), Const(COLUMN_X, idx)
        out.append(Declare("tx", idx, init=IndexOp("%", tid, x, idx)))
        out.append(Declare("ty", idx, init=IndexOp("/", tid, x, idx)))
        first = IndexOp("*", Special("blockIdx.x", idx), x, idx)
        out.append(Declare("row", idx, init=IndexOp("+", first, self.tx, idx)))
        return Var("row", idx)

    def declare_scratch(self, dtype: DType, block: int, out: list[Stmt]) -> None:
        pass  # `_slot` declares its arrays where they are first used

    def _slot(self, dtype: DType, slot: int, out: list[Stmt]) -> str:
        name = f"col{slot}_{dtype}"  # c_type would put a space in "long long"
        if name not in self.scratch:
            out.append(Shared(name, dtype, self.block))
            self.scratch.add(name)
        return name

    def _partner(self, j: Var) -> Expr:
        """scratch index of thread row j's partial for this thread's row."""
        idx = self.idx
        return IndexOp("+", IndexOp("*", j, Const(COLUMN_X, idx), idx), self.tx, idx)

    def allreduce(self, dst: Var, src: Expr, op: ReduceOp, dtype: DType) -> list[Stmt]:
        out: list[Stmt] = []
        name = self._slot(dtype, 0, out)
        here = SharedElem(name, Special("threadIdx.x", self.idx), dtype)
        out += [Assign(here, src), Sync(),
                Assign(dst, Const(identity_value(op, dtype), dtype))]
        j = Var(f"j_{dst.name}", self.idx)
        step = Compute(combine_prim(op), (dst, SharedElem(name, self._partner(j), dtype)), dtype)
        out.append(For(j, Const(0, self.idx), Const(self.thread_rows, self.idx),
                       Const(1, self.idx), (Assign(dst, step),)))
        out.append(Sync())  # the next reduction of this dtype rewrites the scratch
        return out

    def welford_allreduce(self, results: list[Var], states: list[Var], tag: str,
                          block: int) -> tuple[list[Stmt], list[Stmt]]:
        dtype = states[0].dtype
        setup: list[Stmt] = []
        names = [self._slot(dtype, slot, setup) for slot in (0, 1, 2)]
        tid = Special("threadIdx.x", self.idx)
        combine: list[Stmt] = [Assign(SharedElem(n, tid, dtype), s)
                               for n, s in zip(names, states)]
        combine.append(Sync())
        zero = Const(0.0, dtype)
        mean, m2, n = results
        combine += [Assign(v, zero) for v in results]
        j = Var(f"j_{mean.name}", self.idx)
        other = [SharedElem(name, self._partner(j), dtype) for name in names]
        # Chan et al.: n = na + nb, delta = mb - ma, mean = ma + delta * nb / n,
        # m2 = m2a + m2b + delta^2 * na * nb / n; an empty side gives the other side as it is
        # (nvf_welford_combine: no 0 / 0, no inf * 0 for an overflowing delta)
        total, delta, frac = (Var(f"wc{what}{tag}", dtype) for what in ("n", "delta", "frac"))
        mine_empty = Compute(P.EQ, (n, zero), DType.BOOL)
        other_empty = Compute(P.EQ, (other[2], zero), DType.BOOL)

        def pick(mine: Expr, theirs: Expr, chan: Expr) -> Expr:
            return Compute(P.WHERE, (mine_empty, theirs, Compute(
                P.WHERE, (other_empty, mine, chan), dtype)), dtype)

        empty = Compute(P.EQ, (total, zero), DType.BOOL)
        body: list[Stmt] = [
            Declare(total.name, dtype, init=Compute(P.ADD, (n, other[2]), dtype)),
            Declare(delta.name, dtype, init=Compute(P.SUB, (other[0], mean), dtype)),
            Declare(frac.name, dtype, init=Compute(
                P.WHERE, (empty, zero, Compute(P.DIV, (other[2], total), dtype)), dtype)),
            Assign(m2, pick(m2, other[1], Compute(P.ADD, (Compute(P.ADD, (m2, other[1]), dtype),
                                                          Compute(P.MUL, (Compute(
                                                              P.MUL, (delta, delta), dtype),
                                                              Compute(P.MUL, (n, frac), dtype)),
                                                              dtype)), dtype))),
            Assign(mean, pick(mean, other[0], Compute(
                P.ADD, (mean, Compute(P.MUL, (delta, frac), dtype)), dtype))),
            Assign(n, total),
        ]
        combine.append(For(j, Const(0, self.idx), Const(self.thread_rows, self.idx),
                           Const(1, self.idx), tuple(body)))
        combine.append(Sync())
        return setup, combine

    def first_thread(self) -> Expr:
        first = IndexOp("==", self.ty, Const(0, self.idx), DType.BOOL)
        assert self.live is not None
        return IndexOp("&&", first, self.live, DType.BOOL)

    def grid(self) -> Expr:
        idx, x = self.idx, Const(COLUMN_X, self.idx)
        return IndexOp("/", IndexOp("+", self.rows, Const(COLUMN_X - 1, idx), idx), x, idx)
