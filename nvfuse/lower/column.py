"""The column schedule's lowering hooks: (FusionIR, ReductionSignature of kind COLUMN, block)
-> the lowering state `nvfuse.lower.reduction.lower_reduction` drives, so that the same phases
(reductions, row values, full outputs, row outputs) run with threads laid out across rows, not
along them.

When the kept dims are innermost in memory (`x.sum(0)` of a contiguous [M, N]: a bias
gradient; a permuted input), one block per row would read one element per row per warp, 32
rows apart.  Here a block owns COLUMN_X * L consecutive rows instead, each of its COLUMN_X
threads across L consecutive rows of them (L = sig.lanes, the schedule's `column_lanes`: 16
bytes of the widest unit-stride operand, or 1):

    tx = threadIdx.x % 32   row = blockIdx.x * 32 * L + tx * L   (rows row .. row + L - 1)
    ty = threadIdx.x / 32   columns ty, ty + Y, ty + 2Y, ...      (Y = block / 32)

Threads whose rows are past the end (the last block) skip every load and store (`live`: the
schedule makes the innermost kept size, hence rows, a multiple of L, so a thread's rows are all
valid or all past the end) but reach every barrier.

Lanes (L > 1): every per-row register -- an accumulator, a Welford state and pivot, a row
value -- is an L-element array indexed by the lane loop variable `pl` (`state`), and every
computation on it runs in an unrolled `for pl < L` loop.  A column loop iteration loads each
input it reads once before its lane loop (`column_loop`): one L-element vector access
q_<input>[L] at the lane-0 offset for an input with unit stride along the kept dim, one
element for an input that broadcasts there (a [N, 1] statistic), then computes lane by lane;
a full output collects its lanes in w_<output>[L] and is stored with one vector store.  Row-
invariant inputs (a [C] weight) are loaded once as one vector; row outputs are stored by one
vector store per output.  Lane l of a thread sees exactly the columns, in the same order, that
a thread of the L = 1 layout sees for that row, and combines the partials in the same order:
results do not depend on L.

A reduction's per-thread partials are combined across the Y threads of a row through shared
memory with explicit barriers, one lane at a time through one block-sized array per dtype and
slot (`col<slot>_<dtype>`, so a launch's shared memory does not grow with L) -- every thread
writes lane l's partial to scratch[threadIdx.x], Sync, then every thread of the row combines
scratch[j * 32 + tx] for j = 0..Y-1 in that order (so all Y threads get the same bits), Sync
(the next lane, or the next reduction of that dtype, rewrites the scratch): 2L barriers per
reduction.  Welford states combine the same way with Chan's update over three arrays.  Row
outputs are stored by the ty == 0 thread of each live row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, Output
from nvfuse.fusion.prims import Prim
from nvfuse.lower import kir
from nvfuse.lower.kir import (
    Assign,
    Compute,
    Const,
    Declare,
    Elem,
    Expr,
    For,
    If,
    IndexOp,
    Load,
    ReduceOp,
    Shared,
    SharedElem,
    Special,
    Stmt,
    Store,
    Sync,
    Var,
    combine_prim,
    identity_value,
)
from nvfuse.lower.reduction_state import Body, RowLowering
from nvfuse.schedule.reduction import COLUMN_X, ReductionSignature

P = Prim


class ColumnLowering(RowLowering):
    """`RowLowering` with the column schedule's thread layout (see the module docstring)."""

    def __init__(self, ir: FusionIR, sig: ReductionSignature, block: int,
                 across: int = COLUMN_X) -> None:
        super().__init__(ir, sig)
        lanes = sig.lanes
        if block % COLUMN_X or block > 1024 or block % across:
            raise ValueError(f"column schedule: block {block} is not a multiple of {COLUMN_X} "
                             f"and of {across} threads across")
        idx = self.idx
        self.block = block
        self.vec = lanes
        # threads across the block's across * lanes kept elements: COLUMN_X, or fewer for a
        # split's kernel 2 (nvfuse/lower/split_columns.py: more thread rows along the splits)
        self.across = across
        self.thread_rows = block // self.across
        self.tx, self.ty = Var("tx", idx), Var("ty", idx)
        self.pl = Var("pl", idx)  # the lane loop variable (lanes > 1)
        self.lane = self.ty
        self.lane_step = Const(self.thread_rows, idx)
        self.live = IndexOp("<", Var("row", idx), self.rows, DType.BOOL)
        self.scratch: set[str] = set()
        n_in = len(ir.inputs)
        classes = sig.inputs + sig.outputs
        # per operand: its stride along the innermost kept dim is 1 (one vector per access),
        # else 0 (one element serves every lane; `column_lanes` allows nothing else)
        self.unit = [c[sig.outer_rank - 1] == "1" if sig.outer_rank else False
                     for c in classes]
        if lanes > 1:
            self.tensors = tuple(
                kir.TensorParam(t.name, t.dtype, t.is_output,
                                t.dtype.itemsize * lanes if self.unit[k] else t.align)
                for k, t in enumerate(self.tensors))
        self.n_in = n_in

    # -- thread layout -------------------------------------------------------------------------
    def row_index(self, out: list[Stmt]) -> Expr:
        return self.declare_row(Special("blockIdx.x", self.idx), out)

    def declare_row(self, group: Expr, out: list[Stmt]) -> Var:
        """Declare tx, ty and this thread's first row in block group `group` (module
        docstring)."""
        idx = self.idx
        tid, x = Special("threadIdx.x", idx), Const(self.across, idx)
        out.append(Declare("tx", idx, init=IndexOp("%", tid, x, idx)))
        out.append(Declare("ty", idx, init=IndexOp("/", tid, x, idx)))
        first = IndexOp("*", group, Const(self.across * self.vec, idx), idx)
        mine: Expr = self.tx if self.vec == 1 else IndexOp("*", self.tx, Const(self.vec, idx),
                                                            idx)
        out.append(Declare("row", idx, init=IndexOp("+", first, mine, idx)))
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
        return IndexOp("+", IndexOp("*", j, Const(self.across, idx), idx), self.tx, idx)

    # -- lanes -----------------------------------------------------------------------------------
    def lanes_loop(self, body: Sequence[Stmt]) -> list[Stmt]:
        """`body` once per lane (unrolled), or as it is with one lane."""
        if self.vec == 1:
            return list(body)
        idx = self.idx
        return [For(self.pl, Const(0, idx), Const(self.vec, idx), Const(1, idx), tuple(body),
                    unroll=True)]

    def state(self, name: str, dtype: DType) -> Var | Elem:
        return Var(name, dtype) if self.vec == 1 else Elem(name, self.pl, dtype)

    def declare_state(self, name: str, dtype: DType, init: Expr | None = None) -> list[Stmt]:
        if self.vec == 1:
            return [Declare(name, dtype, init=init)]
        out: list[Stmt] = [Declare(name, dtype, lanes=self.vec)]
        if init is not None:
            out += self.lanes_loop([Assign(Elem(name, self.pl, dtype), init)])
        return out

    def lane_varies(self, k: int) -> bool:
        return self.unit[k]

    def vector_operand(self, k: int) -> bool:
        """Lanes > 1: every input a column loop reads is loaded before its lane loop."""
        return self.vec > 1 and k < self.n_in

    def _at_lane(self, k: int, at: Expr) -> Expr:
        """Operand k's offset for lane pl, given lane 0's."""
        if self.vec == 1 or not self.unit[k]:
            return at
        return IndexOp("+", at, self.pl, self.idx)

    def _load(self, k: int, at: Expr) -> list[Stmt]:
        """q_<input k> = its lanes at lane-0 offset `at`: one vector, or one broadcast element."""
        t = self.ir.inputs[k]
        q = f"q_{t.name}"
        lanes = self.vec if self.unit[k] else 1
        return [Declare(q, t.dtype, lanes=lanes),
                Load(q, t.dtype, t.name, at, lanes, vector=lanes > 1)]

    def column_loop(self, body: Body, start: Expr | None = None,
                    step: Expr | None = None) -> Stmt:
        return self.lane_column_loop(body, None, start, step)

    def lane_column_loop(self, body: Body,
                         after: Callable[[list[Expr], list[Expr]], list[Stmt]] | None = None,
                         start: Expr | None = None, step: Expr | None = None,
                         before: Sequence[Stmt] = ()) -> Stmt:
        """The column loop (`RowLowering.column_loop`); with lanes > 1 each iteration runs
        `before`, loads the inputs the body reads, runs the body once per lane with lane
        offsets, then `after(lane-0 offsets, inner indices)` (a full output's vector store)."""
        if self.vec == 1:
            assert after is None and not before
            return super().column_loop(body, start, step)
        idx = self.idx
        col = Var("col", idx)
        stmts: list[Stmt] = list(before)
        offsets, inner = self._offsets(col, stmts)
        lane_offsets = [self._at_lane(k, o) for k, o in enumerate(offsets)]
        self.vec_lane, self.vec_lazy = self.pl, set()
        try:
            lane_body = body(lane_offsets, inner)
            used = sorted(self.vec_lazy)
        finally:
            self.vec_lane, self.vec_lazy = None, None
        for k in used:
            stmts.extend(self._load(k, offsets[k]))
        stmts.extend(self.lanes_loop(lane_body))
        if after is not None:
            stmts.extend(after(offsets, inner))
        stop = self.col_end if self.col_end is not None else self.numel
        return self.guarded(For(col, start if start is not None else self.lane, stop,
                                step if step is not None else self.lane_step, tuple(stmts)))

    def invariant_lanes(self, k: int) -> tuple[int, Expr]:
        """A row-invariant input with unit stride along the kept dim (a [C] weight): one
        vector of the thread's lanes, read lane by lane."""
        if self.vec > 1 and self.unit[k]:
            return self.vec, self.pl
        return super().invariant_lanes(k)

    def row_phase(self, done: set[int], out: list[Stmt]) -> None:
        if self.vec == 1:
            super().row_phase(done, out)
            return
        assigns: list[Stmt] = []
        for index, value in self.ready_row_values(done):
            out.append(Declare(f"v{index}", value.dtype, lanes=self.vec))
            lane = Elem(f"v{index}", self.pl, value.dtype)
            assigns.append(Assign(lane, value))
            self.row_exprs[index] = lane
            done.add(index)
        out.extend(self.lanes_loop(assigns) if assigns else [])

    # -- outputs ---------------------------------------------------------------------------------
    def lane_outputs(self, outputs: Sequence[tuple[int, Output]], exprs: dict[int, Expr]
                     ) -> list[Stmt]:
        """Lane pl of each output's w_<output>[lanes] from its value in `exprs`."""
        out: list[Stmt] = []
        for _, o in outputs:
            value = exprs[o.value]
            if value.dtype is not o.dtype:
                value = Compute(Prim.CAST, (value,), o.dtype)
            out.append(Assign(Elem(f"w_{o.name}", self.pl, o.dtype), value))
        return out

    def declare_lane_outputs(self, outputs: Sequence[tuple[int, Output]]) -> list[Stmt]:
        return [Declare(f"w_{o.name}", o.dtype, lanes=self.vec) for _, o in outputs]

    def store_lane_outputs(self, outputs: Sequence[tuple[int, Output]], offsets: list[Expr],
                           outer: list[Expr], inner: list[Expr] | None) -> list[Stmt]:
        """One vector store of each output's w_<output> at its lane-0 offset, guarded where
        the output broadcasts (`guard`; `inner` None: a row output)."""
        sig = self.sig
        outer_dims = range(sig.outer_rank)
        inner_dims = range(sig.outer_rank, sig.outer_rank + sig.inner_rank)
        result: list[Stmt] = []
        for k, o in outputs:
            store: Stmt = Store(o.name, o.dtype, offsets[k], f"w_{o.name}", self.vec,
                                vector=True)
            guard = self.guard(k, outer, outer_dims)
            if inner is not None:
                inner_guard = self.guard(k, inner, inner_dims)
                guard = inner_guard if guard is None else (
                    guard if inner_guard is None
                    else IndexOp("&&", guard, inner_guard, DType.BOOL))
            result.append(If(guard, (store,)) if guard is not None else store)
        return result

    def store_vector_outputs(self, full: list[tuple[int, Output]],
                             rows_out: list[tuple[int, Output]], outer: list[Expr]) -> list[Stmt]:
        """Lanes > 1: the full outputs (a column loop collecting w_<output>[lanes], one vector
        store per output after its lane loop) and the row outputs (the same from the row
        values, by the ty == 0 thread of each live row)."""
        body: list[Stmt] = []
        if full:
            def lane(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
                stmts: list[Stmt] = []
                exprs = self.column_values([o.value for _, o in full], offsets, stmts)
                return stmts + self.lane_outputs(full, exprs)

            body.append(self.lane_column_loop(
                lane, lambda offsets, inner: self.store_lane_outputs(full, offsets, outer, inner),
                before=self.declare_lane_outputs(full)))
        if rows_out:
            row_offsets: list[Expr] = [Var(f"ro_{t.name}", self.idx) for t in self.tensors]
            lane_offsets = [self._at_lane(k, o) for k, o in enumerate(row_offsets)]
            values: list[Stmt] = []
            exprs = self.column_values([o.value for _, o in rows_out], lane_offsets, values)
            values += self.lane_outputs(rows_out, exprs)
            body.append(If(self.first_thread(), (
                *self.declare_lane_outputs(rows_out), *self.lanes_loop(values),
                *self.store_lane_outputs(rows_out, row_offsets, outer, None))))
        return body

    # -- combines across thread rows --------------------------------------------------------------
    def allreduce(self, dst: Var | Elem, src: Expr,  # type: ignore[override]
                  op: ReduceOp, dtype: DType) -> list[Stmt]:
        out: list[Stmt] = []
        name = self._slot(dtype, 0, out)
        here = SharedElem(name, Special("threadIdx.x", self.idx), dtype)
        j = Var(f"j_{_name(dst)}", self.idx)
        step = Compute(combine_prim(op), (dst, SharedElem(name, self._partner(j), dtype)), dtype)
        # lane by lane through one block-sized array; the last Sync: the next lane, or the
        # next reduction of this dtype, rewrites the scratch
        out += self.lanes_loop([
            Assign(here, src), Sync(),
            Assign(dst, Const(identity_value(op, dtype), dtype)),
            For(j, Const(0, self.idx), Const(self.thread_rows, self.idx), Const(1, self.idx),
                (Assign(dst, step),)),
            Sync()])
        return out

    def welford_allreduce(self, results: list[Var], states: list[Var], tag: str,
                          block: int) -> tuple[list[Stmt], list[Stmt]]:
        dtype = states[0].dtype
        setup: list[Stmt] = []
        names = [self._slot(dtype, slot, setup) for slot in (0, 1, 2)]
        tid = Special("threadIdx.x", self.idx)
        per_lane: list[Stmt] = [Assign(SharedElem(n, tid, dtype), s)
                                for n, s in zip(names, states)]
        per_lane.append(Sync())
        zero = Const(0.0, dtype)
        mean, m2, n = results
        per_lane += [Assign(v, zero) for v in results]
        j = Var(f"j_{_name(mean)}", self.idx)
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
        per_lane.append(For(j, Const(0, self.idx), Const(self.thread_rows, self.idx),
                            Const(1, self.idx), tuple(body)))
        per_lane.append(Sync())  # the next lane, or the next Welford, rewrites the scratch
        return setup, self.lanes_loop(per_lane)

    def first_thread(self) -> Expr:
        first = IndexOp("==", self.ty, Const(0, self.idx), DType.BOOL)
        assert self.live is not None
        return IndexOp("&&", first, self.live, DType.BOOL)

    def grid(self) -> Expr:
        idx, width = self.idx, self.across * self.vec
        return IndexOp("/", IndexOp("+", self.rows, Const(width - 1, idx), idx), Const(width, idx),
                       idx)


def _name(v: Var | Elem) -> str:
    return v.name if isinstance(v, Var) else v.array
