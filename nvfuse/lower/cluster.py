"""The cluster row schedule's hooks (sig.cluster = C > 1, nvfuse/schedule/reduction.py
`cluster_for`): `ClusterLowering` overrides `RowLowering`'s thread layout so that the C blocks
of a thread-block cluster share one row.

Layout: row = blockIdx.x / C, rank = blockIdx.x % C (the block's rank in its cluster: clusters
are C consecutive blocks of the 1-D grid).  Rank r owns the columns [cbase, cstop) with
cbase = r * smem_cols and cstop = min(cbase + smem_cols, row_numel); its threads stage all of
them in shared memory (`stage_shared`, at column - cbase) and every default column loop visits
them by vector groups from cbase + threadIdx.x * lanes, as a one-block row visits its whole
row.  Loops with an explicit start (the Welford pivot: column 0) still read global memory,
the same column in every block.

Reductions: the block reduction of the block's columns, then a `kir.ClusterReduce` of the C
block results through distributed shared memory, folded from rank 0 up (the same bits in every
block); Welford states likewise, with Chan's combine.  Each combine has its own one-use slot,
and the kernel ends with a `kir.ClusterSync`, so no block exits while another may still read
its slots.  Rank 0's thread 0 stores the row outputs; each block stores its own columns of the
full outputs.
"""

from __future__ import annotations

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.prims import Prim
from nvfuse.lower.kir import (
    ClusterReduce,
    ClusterSync,
    Compute,
    Const,
    Declare,
    Expr,
    IndexOp,
    ReduceOp,
    Shared,
    Special,
    Stmt,
    Var,
)
from nvfuse.lower.reduction_state import RowLowering
from nvfuse.schedule.reduction import ReductionSignature


class ClusterLowering(RowLowering):
    """The row lowering with a row split over the blocks of a cluster (module docstring)."""

    def __init__(self, ir: FusionIR, sig: ReductionSignature) -> None:
        super().__init__(ir, sig)
        if not self.staged or sig.persist:
            raise ValueError("a cluster row is a looped row staged in shared memory")
        idx = self.idx
        self.size = Const(sig.cluster, idx)
        self.rank, self.base = Var("crank", idx), Var("cbase", idx)
        self.stop = Var("cstop", idx)
        self.all_staged = True
        self._slots = 0

    def row_index(self, out: list[Stmt]) -> Expr:
        idx = self.idx
        block = Special("blockIdx.x", idx)
        out += [
            Declare("row", idx, init=IndexOp("/", block, self.size, idx)),
            Declare(self.rank.name, idx, init=IndexOp("%", block, self.size, idx)),
            Declare(self.base.name, idx, init=IndexOp("*", self.rank, self.smem_cols, idx)),
            Declare("cstop", idx, init=Compute(Prim.MINIMUM, (
                IndexOp("+", self.base, self.smem_cols, idx), self.numel), idx)),
        ]
        return Var("row", idx)

    def group_start(self, width: Expr) -> Expr:
        return IndexOp("+", self.base, IndexOp("*", self.lane, width, self.idx), self.idx)

    def smem_index(self, col: Expr) -> Expr:
        return IndexOp("-", col, self.base, self.idx)

    def _slot(self, dtype: DType, count: int, out: list[Stmt]) -> str:
        """Declare a fresh one-use slot of `count` elements for a ClusterReduce."""
        name = f"cl_slot{self._slots}"
        self._slots += 1
        out.append(Shared(name, dtype, count))
        return name

    def allreduce(self, dst: Var, src: Expr, op: ReduceOp, dtype: DType) -> list[Stmt]:
        """The block's allreduce into dst_blk, then the cluster's."""
        part = Var(f"{dst.name}_blk", dtype)
        out: list[Stmt] = [Declare(part.name, dtype), *super().allreduce(part, src, op, dtype)]
        slot = self._slot(dtype, 1, out)
        out.append(ClusterReduce((dst,), (part,), op, slot))
        return out

    def welford_allreduce(self, results: list[Var], states: list[Var], tag: str,
                          block: int) -> tuple[list[Stmt], list[Stmt]]:
        """The block's Welford allreduce into <result>_blk, then the cluster's."""
        dtype = states[0].dtype
        parts = [Var(f"{r.name}_blk", dtype) for r in results]
        setup, combine = super().welford_allreduce(parts, states, tag, block)
        setup += [Declare(p.name, dtype) for p in parts]
        slot = self._slot(dtype, 3, setup)
        combine.append(ClusterReduce(tuple(results), tuple(parts), None, slot))
        return setup, combine

    def first_thread(self) -> Expr:
        return IndexOp("&&", super().first_thread(),
                       IndexOp("==", self.rank, Const(0, self.idx), DType.BOOL), DType.BOOL)

    def grid(self) -> Expr:
        return IndexOp("*", self.rows, self.size, self.idx)

    def finish(self, body: list[Stmt]) -> None:
        body.append(ClusterSync())
