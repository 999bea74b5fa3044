"""The lowering state of one reduction kernel and the row schedule's thread-layout hooks:
(FusionIR, ReductionSignature) -> `RowLowering`, which `nvfuse.lower.reduction.lower_reduction`
drives phase by phase and nvfuse/lower/column.py subclasses for the column schedule.

It owns the kernel's parameters (sizes, "s" strides per operand), the index math (splitting a
linear row / column index into merged dims, offsets, broadcast guards), the values available
before the column loops (row values, row-invariant loads), the column loop and the hooks that
differ between schedules: which row a thread works on, where a thread starts along the row and
how far it strides, which threads own a valid row (`live`), the allreduce of a value and of
Welford states over the threads of a row, who stores row outputs, and the grid.

Persistent rows (sig.persist = P > 0, row schedule only): `load_persistent` reads each cached
input's P columns per thread (threadIdx.x + k * blockDim.x) once into a register array
`p_<input>[P]`, and every column loop becomes an unrolled `for k < P` guarded by
col < row_numel whose loads of cached inputs read `p_<input>[k]` (the unrolled constant index
keeps the array in registers).  Loops with an explicit start / step (the Welford pivot, one
column) still read global memory.  With sig.lanes = L > 1 the load loop reads L consecutive
columns per vector access and slot k holds column (threadIdx.x + (k / L) * blockDim.x) * L
+ k % L (`_slot_column`; the schedule guarantees L divides row_numel, so a vector is wholly
inside the row or wholly past it).  Looped rows with sig.lanes = L > 1 (persist 0) run every
default column loop by vector groups (`_vector_loop`): col0 = (threadIdx.x + k * blockDim.x)
* L, one vector load per unit-stride input the body reads, the L columns unrolled.
Shared-memory rows (sig.smem): `stage_shared` copies the staged inputs' first smem_cols columns
into s_<input>[smem_cols] (dynamic shared memory) with the same thread-to-column mapping, so
every later default column loop reads them back (`_group_load`) from the columns its own
thread wrote: no barrier; columns past smem_cols come from global memory.  The hooks
`group_start`, `stop`, `smem_index`, `all_staged` and `finish` let a cluster row
(nvfuse/lower/cluster.py) give each block of a cluster its own chunk of the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, ancestors, row_values
from nvfuse.fusion.prims import REDUCTIONS, Prim
from nvfuse.lower import kir
from nvfuse.lower.index import broadcast_guard, offset, split_index
from nvfuse.lower.values import node_values
from nvfuse.lower.kir import (
    Assign,
    BlockReduce,
    Compute,
    Const,
    Declare,
    Elem,
    Expr,
    For,
    If,
    IndexOp,
    Load,
    Param,
    Random,
    ReduceOp,
    ReduceScope,
    Shared,
    SharedElem,
    Special,
    Stmt,
    Var,
    WelfordReduce,
    stride_exprs,
)
from nvfuse.schedule import names
from nvfuse.schedule.reduction import (
    SMEM_ROW_BYTES, ReductionSignature, cached_inputs, staged_inputs,
)

# A column loop's body: (each operand's offset, the inner indices) -> statements.
Body = Callable[[list[Expr], list[Expr]], list[Stmt]]
# The row schedule's block-reduction scratch, one array per dtype.
SCRATCH = {DType.FLOAT32: "red_f32", DType.FLOAT64: "red_f64", DType.INT64: "red_i64"}


class RowLowering:
    """State of one kernel's lowering: parameters, offsets and the row values computed so far."""

    # whether the threads of a row are exactly one warp (nvfuse/lower/warp.py): cross-thread
    # combines are then warp-scope, with no shared memory
    warp_rows = False

    def __init__(self, ir: FusionIR, sig: ReductionSignature) -> None:
        self.ir, self.sig, self.idx = ir, sig, sig.index
        idx = self.idx
        self.rows_live = row_values(ir)
        self.tensors = tuple(
            [kir.TensorParam(i.name, i.dtype, False, i.dtype.itemsize) for i in ir.inputs]
            + [kir.TensorParam(o.name, o.dtype, True, o.dtype.itemsize) for o in ir.outputs])
        self.rows, self.numel = Param(names.ROWS, idx), Param(names.ROW_NUMEL, idx)
        self.outer_sizes = [Param(names.outer_size(d), idx) for d in range(1, sig.outer_rank)]
        self.inner_sizes = [Param(names.inner_size(d), idx) for d in range(1, sig.inner_rank)]
        self.scalars: list[Param] = [self.rows, self.numel, *self.outer_sizes, *self.inner_sizes]
        self.seed = Param(names.SEED, DType.INT64)  # appended last when the kernel draws randoms
        self.strides: list[list[Expr]] = []  # per operand: outer dims, then inner dims
        for t, classes in zip(self.tensors, sig.inputs + sig.outputs):
            outer, inner = classes[:sig.outer_rank], classes[sig.outer_rank:]
            self.strides.append(
                stride_exprs(outer, partial(names.stride, t.name, part="o"), idx, self.scalars)
                + stride_exprs(inner, partial(names.stride, t.name, part="i"), idx,
                               self.scalars))
        # values available before the column loops: row values and row-invariant loads
        self.row_exprs: dict[int, Expr] = {}
        # the schedule's hooks (nvfuse/lower/column.py overrides them): which column a thread
        # starts at and how far it strides, and where a thread owns a valid row (None: always)
        self.lane: Expr = Special("threadIdx.x", idx)
        self.lane_step: Expr = Special("blockDim.x", idx)
        self.live: Expr | None = None
        # persistent rows: the cached inputs and, while a persistent loop body is built, the
        # register slot it reads (the unrolled loop's index)
        self.persist = sig.persist
        self.cached = cached_inputs(ir, sig.inputs, sig.outer_rank) if sig.persist else ()
        self.slot: Var | None = None
        # the persistent epilogue's vector groups (`vector_operand`): while a group's lane loop
        # is built, its lane variable and the inputs preloaded as q_<input>[lanes]
        self.vec_lane: Var | None = None
        self.vec_loaded: set[int] = set()
        # a looped row's vector column loop (`_vector_loop`): while its body is built, the
        # vector inputs the body reads, loaded as q_<input>[lanes] before the lane loop
        self.vec_lazy: set[int] | None = None
        # ... and the inputs that broadcast along the innermost dim, the same in every lane of
        # a group, loaded once as q_<input>[1] before the lane loop (`_vector_loop` only)
        self.vec_fixed: set[int] | None = None
        self.group_offsets: list[Expr] | None = None
        # a shared-memory row (sig.smem): the inputs staged as s_<input>[smem_cols]
        self.staged: tuple[int, ...] = ()
        self.smem_cols = Param(names.SMEM_COLS, idx)
        if sig.smem:
            unit = [[1 if c == "1" else 0 for c in classes[sig.outer_rank:]]
                    for classes in sig.inputs]
            self.staged = staged_inputs(ir, cached_inputs(ir, sig.inputs, sig.outer_rank),
                                        unit, sig.lanes, sig.whole_row)
            self.scalars.append(self.smem_cols)
        # where the column loops stop (None: row_numel); a split reduction's chunk end
        # (nvfuse/lower/split.py)
        self.col_end: Expr | None = None
        # where a looped row's default column loops (by vector groups) stop, and whether every
        # column they visit is staged (sig.whole_row: smem_cols is row_numel, or a cluster
        # row's block holds its chunk, nvfuse/lower/cluster.py): no global-memory fallback
        self.stop: Expr = self.numel
        self.all_staged = sig.whole_row

    # -- schedule hooks (the row schedule; see nvfuse/lower/column.py for the column one) -------
    def row_index(self, out: list[Stmt]) -> Expr:
        """Declare and return the row this thread works on."""
        out.append(Declare("row", self.idx, init=Special("blockIdx.x", self.idx)))
        return Var("row", self.idx)

    def guarded(self, stmt: Stmt) -> Stmt:
        """`stmt` run only by threads that own a valid row (every thread, here)."""
        return stmt if self.live is None else If(self.live, (stmt,))

    def declare_scratch(self, dtype: DType, block: int, out: list[Stmt]) -> None:
        """Declare the block reductions' scratch of `dtype` (once)."""
        out.append(Shared(SCRATCH[dtype], dtype, max(1, block // 32)))

    def allreduce(self, dst: Var, src: Expr, op: ReduceOp, dtype: DType) -> list[Stmt]:
        """`dst` (declared) = the reduction of `src` over the threads of this row."""
        return [BlockReduce(dst, src, op, SCRATCH[dtype])]

    def welford_allreduce(self, results: list[Var], states: list[Var], tag: str,
                          block: int) -> tuple[list[Stmt], list[Stmt]]:
        """(setup, combine): after the setup statements and the declarations of `results`
        (mean, m2, n), the combine statements leave in them the Welford combine of the
        threads' `states`."""
        dtype = states[0].dtype
        scratch = f"wel_{dtype.c_type}{tag}"
        return ([Shared(scratch, dtype, 3 * max(1, block // 32))],
                [WelfordReduce(results[0], results[1], results[2], states[0], states[1],
                               states[2], ReduceScope.BLOCK, scratch)])

    def state(self, name: str, dtype: DType) -> Var | Elem:
        """A per-row register named `name`: one scalar here; the column schedule with lanes > 1
        keeps one per lane (nvfuse/lower/column.py), valid inside its lane loops only."""
        return Var(name, dtype)

    def declare_state(self, name: str, dtype: DType, init: Expr | None = None) -> list[Stmt]:
        """Declare `state(name, dtype)`, set to `init` when given."""
        return [Declare(name, dtype, init=init)]

    def first_thread(self) -> Expr:
        """Where the row outputs are stored: one thread per row."""
        return IndexOp("==", Special("threadIdx.x", self.idx), Const(0, self.idx), DType.BOOL)

    def grid(self) -> Expr:
        return self.rows

    def group_start(self, width: Expr) -> Expr:
        """The first column of this thread's first vector group of `width` columns in a
        looped row's default column loops (they stride lane_step * width up to `stop`)."""
        return IndexOp("*", self.lane, width, self.idx)

    def smem_index(self, col: Expr) -> Expr:
        """Where column `col` of the row sits in the staged shared arrays."""
        return col

    def finish(self, body: list[Stmt]) -> None:
        """Statements the kernel ends with (none here)."""

    # -- index math ----------------------------------------------------------------------------
    def split(self, linear: Expr, sizes: list[Param], rank: int, prefix: str,
              out: list[Stmt]) -> list[Expr]:
        """Per-dim indices of `linear`, innermost fastest (`sizes` = dims 1..rank-1)."""
        return split_index(linear, sizes, rank, self.idx, out, prefix, f"{prefix}q")

    def offset(self, operand: int, indices: list[Expr], dims: range) -> Expr:
        """sum(index * stride) over `dims` of operand `operand` (strides 0 skipped)."""
        return offset(indices, [self.strides[operand][d] for d in dims], self.idx)

    def guard(self, operand: int, indices: list[Expr], dims: range) -> Expr | None:
        """Where an operand that broadcasts along some of `dims` is stored: index 0 there."""
        classes = (self.sig.inputs + self.sig.outputs)[operand]
        return broadcast_guard([classes[d] for d in dims], indices, self.idx)

    # -- values --------------------------------------------------------------------------------
    def leaf(self, index: int) -> Expr | None:
        """The expression of a value that is the same everywhere (a literal, row_numel, or
        computed only from those), or None."""
        node = self.ir.nodes[index]
        if node.op is Prim.CONST:
            return Const(node.attr, node.dtype)  # type: ignore[arg-type]
        if node.op is Prim.ROW_NUMEL:
            n: Expr = self.numel
            return n if self.idx is DType.INT64 else Compute(Prim.CAST, (n, ), DType.INT64)
        if node.op is Prim.LOAD or node.op in REDUCTIONS or not node.args:
            return None
        args = [self.leaf(a) for a in node.args]
        if any(a is None for a in args):
            return None
        return Compute(node.op, tuple(args), node.dtype)  # type: ignore[arg-type]

    def column_values(self, roots: list[int], offsets: list[Expr],
                      out: list[Stmt]) -> dict[int, Expr]:
        """Statements computing the full values `roots` need at one column (loads at
        `offsets`, one per input); row values are read from their registers."""
        exprs: dict[int, Expr] = dict(self.row_exprs)
        needed = ancestors(self.ir.nodes, roots, stop=exprs)
        def leaf(index: int, out: list[Stmt]) -> Expr | None:
            node = self.ir.nodes[index]
            uniform = self.leaf(index)
            if uniform is not None:
                return uniform
            if node.op is Prim.RAND:
                # element (row, col) of the iteration space: the same value in every phase
                element = IndexOp("+", IndexOp("*", Var("row", self.idx), self.numel, self.idx),
                                  Var("col", self.idx), self.idx)
                out.append(Declare(f"v{index}", node.dtype, init=Random(
                    Compute(Prim.CAST, (element,), DType.INT64), self.seed,
                    int(node.attr))))  # type: ignore[arg-type]
                return Var(f"v{index}", node.dtype)
            if node.op is not Prim.LOAD:
                return None
            k = int(node.attr)  # type: ignore[arg-type]
            if self.slot is not None and k in self.cached:
                return Elem(f"p_{self.ir.inputs[k].name}", self.slot, node.dtype)
            if self.vec_lane is not None and k in self.vec_loaded:
                return Elem(f"q_{self.ir.inputs[k].name}", self.vec_lane, node.dtype)
            if self.vec_fixed is not None and k not in self.staged and self.group_invariant(k):
                self.vec_fixed.add(k)
                return Elem(f"q_{self.ir.inputs[k].name}", Const(0, DType.INT32), node.dtype)
            if self.vec_lane is not None and self.vec_lazy is not None \
                    and (self.vector_operand(k) or k in self.staged):
                self.vec_lazy.add(k)
                lane: Expr = self.vec_lane if self.lane_varies(k) else Const(0, DType.INT32)
                return Elem(f"q_{self.ir.inputs[k].name}", lane, node.dtype)
            name = f"r_{self.ir.inputs[k].name}"
            out.append(Declare(name, node.dtype, lanes=1))
            out.append(Load(name, node.dtype, self.ir.inputs[k].name, offsets[k], 1, False))
            return Elem(name, Const(0, DType.INT32), node.dtype)

        return node_values(self.ir, sorted(needed), exprs, out, leaf)

    def column_loop(self, body: Body, start: Expr | None = None,
                    step: Expr | None = None) -> Stmt:
        """for col = threadIdx.x; col < row_numel; col += blockDim.x, the body given every
        operand's offset at (row, col).  `start` / `step` replace threadIdx.x / blockDim.x
        (start 0, step row_numel visits column 0 alone, and only when the row is not empty)."""
        idx = self.idx
        col = Var("col", idx)
        if self.persist and start is None and step is None and self.col_end is None:
            return self._persistent_loop(body)
        if (self.sig.lanes > 1 or self.staged) and start is None and step is None \
                and self.col_end is None:
            return self._vector_loop(body)
        stmts: list[Stmt] = []
        offsets, inner = self._offsets(col, stmts)
        stmts.extend(body(offsets, inner))
        stop = self.col_end if self.col_end is not None else self.numel
        return self.guarded(For(col, start if start is not None else self.lane, stop,
                                step if step is not None else self.lane_step, tuple(stmts)))

    def _offsets(self, col: Var, out: list[Stmt]) -> tuple[list[Expr], list[Expr]]:
        """(every operand's offset, the inner indices) at column `col` of this row."""
        inner = self.split(col, self.inner_sizes, self.sig.inner_rank, "j", out)
        return self._offsets_at(inner), inner

    def _offsets_at(self, inner: list[Expr]) -> list[Expr]:
        """Every operand's offset at the inner indices `inner` of this row."""
        idx, sig = self.idx, self.sig
        offsets: list[Expr] = []
        inner_dims = range(sig.outer_rank, sig.outer_rank + sig.inner_rank)
        for k in range(len(self.tensors)):  # expressions: only the operands used appear
            row_offset = Var(f"ro_{self.tensors[k].name}", idx)
            in_row = self.offset(k, inner, inner_dims)
            offsets.append(row_offset if in_row == Const(0, idx)
                           else IndexOp("+", row_offset, in_row, idx))
        return offsets

    def group_invariant(self, k: int) -> bool:
        """Whether input `k` has one value for all the lanes of a looped row's vector group:
        it broadcasts along the innermost inner dim (a group norm's per-channel weight over a
        channel's pixels), which a group never crosses (lanes > 1: `looped_lanes`)."""
        inner = self.sig.inputs[k][self.sig.outer_rank:]
        return self.sig.lanes > 1 and inner.endswith("0")

    def _vector_loop(self, body: Body) -> Stmt:
        """A looped row's column loop by vector groups: for col0 = threadIdx.x * lanes;
        col0 < row_numel; col0 += blockDim.x * lanes: the inner indices of col0, one vector
        load q_<input>[lanes] per vector input (`vector_operand`) the body reads and one scalar
        load q_<input>[1] per input the same in every lane (`group_invariant`), then for
        pl < lanes (unrolled): col = col0 + pl and the body, reading those inputs from
        q_<input>[pl] / [0].  lanes divides the innermost inner size (the schedule's
        `looped_lanes`), so a group lies in one innermost run of the row: lane pl's indices
        are col0's with pl added to the innermost."""
        idx, lanes = self.idx, self.sig.lanes
        col0, col, pl = Var("col0", idx), Var("col", idx), Var("pl", idx)
        width = Const(lanes, idx)
        loop: list[Stmt] = []
        at, first = self._offsets(col0, loop)
        inner = _lane_indices(first, pl)
        stmts: list[Stmt] = [Declare(col.name, idx, init=IndexOp("+", col0, pl, idx))]
        self.vec_lane, self.vec_lazy, self.vec_fixed = pl, set(), set()
        try:
            stmts.extend(body(self._offsets_at(inner), inner))
            used, fixed = sorted(self.vec_lazy), sorted(self.vec_fixed)
        finally:
            self.vec_lane, self.vec_lazy, self.vec_fixed = None, None, None
        for k in used:
            loop.extend(self._group_load(k, col0, at[k]))
        loop.extend(self._fixed_loads(fixed, at))
        loop.append(For(pl, Const(0, idx), width, Const(1, idx), tuple(stmts), unroll=True))
        return self.guarded(For(col0, self.group_start(width), self.stop,
                                IndexOp("*", self.lane_step, width, idx), tuple(loop)))

    def _fixed_loads(self, fixed: list[int], at: list[Expr]) -> list[Stmt]:
        """q_<input>[1] = input k at its group offset `at[k]`, per `group_invariant` input."""
        stmts: list[Stmt] = []
        for k in fixed:
            t = self.ir.inputs[k]
            stmts += [Declare(f"q_{t.name}", t.dtype, lanes=1),
                      Load(f"q_{t.name}", t.dtype, t.name, at[k], 1, False)]
        return stmts

    def _group_load(self, k: int, col0: Var, at: Expr | None = None) -> list[Stmt]:
        """q_<input k>[lanes] = columns col0 .. col0 + lanes - 1 of this row: from its
        shared-memory copy where staged (col0 < smem_cols), else from global memory at `at`
        (default: row offset + col0, a unit-stride operand; one vector access where
        `vector_operand`)."""
        idx, lanes = self.idx, self.sig.lanes
        t = self.ir.inputs[k]
        q = f"q_{t.name}"
        if at is None:
            at = IndexOp("+", Var(f"ro_{t.name}", idx), col0, idx)
        load = Load(q, t.dtype, t.name, at, lanes, lanes > 1 and self.vector_operand(k))
        if k not in self.staged:
            return [Declare(q, t.dtype, lanes=lanes), load]
        local = self.smem_index(col0)
        copy = tuple(Assign(Elem(q, Const(lane, DType.INT32), t.dtype),
                            SharedElem(f"s_{t.name}",
                                       IndexOp("+", local, Const(lane, idx), idx), t.dtype))
                     for lane in range(lanes))
        if self.all_staged:
            return [Declare(q, t.dtype, lanes=lanes), *copy]
        return [Declare(q, t.dtype, lanes=lanes),
                If(IndexOp("<", col0, self.smem_cols, DType.BOOL), copy),
                If(IndexOp("<=", self.smem_cols, col0, DType.BOOL), (load,))]

    def stage_shared(self, out: list[Stmt]) -> None:
        """A shared-memory row: declare s_<input>[smem_cols] per staged input and copy the
        row's first smem_cols columns into it, one group of lanes per access, with the
        column mapping of `_vector_loop` (each thread later reads back what it wrote)."""
        if not self.staged:
            return
        idx, lanes = self.idx, self.sig.lanes
        col0 = Var("col0", idx)
        width = Const(lanes, idx)
        copy: list[Stmt] = []
        at: list[Expr] | None = None
        if lanes == 1 or self.sig.inner_rank > 1:  # the offsets of column col0
            at, _ = self._offsets(col0, copy)
        for k in self.staged:
            t = self.ir.inputs[k]
            out.append(Shared(f"s_{t.name}", t.dtype, SMEM_ROW_BYTES // t.dtype.itemsize,
                              count=self.smem_cols))
            q = f"q_{t.name}"
            copy.append(Declare(q, t.dtype, lanes=lanes))
            copy.append(Load(q, t.dtype, t.name,
                             at[k] if at is not None
                             else IndexOp("+", Var(f"ro_{t.name}", idx), col0, idx), lanes,
                             lanes > 1 and self.vector_operand(k)))
            local = self.smem_index(col0)
            copy.extend(Assign(SharedElem(f"s_{t.name}",
                                          IndexOp("+", local, Const(lane, idx), idx), t.dtype),
                               Elem(q, Const(lane, DType.INT32), t.dtype))
                        for lane in range(lanes))
        stop = self.stop if self.all_staged else self.smem_cols
        out.append(self.guarded(For(col0, self.group_start(width), stop,
                                    IndexOp("*", self.lane_step, width, idx), tuple(copy))))

    def _persistent_loop(self, body: Body) -> Stmt:
        """for k < persist (unrolled): col = threadIdx.x + k * blockDim.x; if col < row_numel:
        the body, its cached loads reading register slot k.  With lanes L > 1 the guard is
        per vector group (L divides row_numel, so a group is wholly inside the row or wholly
        past it): for g < persist / L: col0 = (threadIdx.x + g * blockDim.x) * L; if col0 <
        row_numel: for pl < L: pk = g * L + pl, col = col0 + pl, the body -- the same slots
        in the same order, one compare per group instead of one per column."""
        idx, lanes = self.idx, self.sig.lanes
        k, col = Var("pk", idx), Var("col", idx)
        stmts: list[Stmt] = []
        offsets, inner = self._offsets(col, stmts)
        self.slot = k
        try:
            stmts.extend(body(offsets, inner))
        finally:
            self.slot = None
        if lanes == 1:
            return For(k, Const(0, idx), Const(self.persist, idx), Const(1, idx), (
                Declare(col.name, idx, init=self._slot_column(k)),
                If(IndexOp("<", col, self.numel, DType.BOOL), tuple(stmts))), unroll=True)
        g, pl, col0 = Var("pg", idx), Var("pl", idx), Var("col0", idx)
        width = Const(lanes, idx)
        lane_loop = For(pl, Const(0, idx), width, Const(1, idx), (
            Declare(k.name, idx, init=IndexOp("+", IndexOp("*", g, width, idx), pl, idx)),
            Declare(col.name, idx, init=IndexOp("+", col0, pl, idx)), *stmts), unroll=True)
        start = IndexOp("*", IndexOp("+", self.lane, IndexOp("*", g, self.lane_step, idx), idx),
                        width, idx)
        return For(g, Const(0, idx), Const(self.persist // lanes, idx), Const(1, idx), (
            Declare(col0.name, idx, init=start),
            If(IndexOp("<", col0, self.numel, DType.BOOL), (lane_loop,))), unroll=True)

    def _slot_column(self, slot: Expr) -> Expr:
        """The column register slot `slot` of this thread holds (the module docstring)."""
        idx, lanes = self.idx, self.sig.lanes
        if lanes == 1:
            return IndexOp("+", self.lane, IndexOp("*", slot, self.lane_step, idx), idx)
        width = Const(lanes, idx)
        group = IndexOp("+", self.lane, IndexOp("*", IndexOp("/", slot, width, idx),
                                                self.lane_step, idx), idx)
        return IndexOp("+", IndexOp("*", group, width, idx), IndexOp("%", slot, width, idx), idx)

    def load_persistent(self, out: list[Stmt]) -> None:
        """Declare the cached inputs' register arrays and load this thread's columns of the
        row into them, once (the module docstring); columns past row_numel stay unset and
        are never read (every persistent loop has the same guard)."""
        if not self.cached:
            return
        stmts: list[Stmt] = []
        for k in self.cached:
            t = self.ir.inputs[k]
            out.append(Declare(f"p_{t.name}", t.dtype, lanes=self.persist))
        idx, lanes = self.idx, self.sig.lanes
        group, col = Var("pk", idx), Var("col", idx)
        offsets, _ = self._offsets(col, stmts)
        width = Const(lanes, idx)
        for k in self.cached:
            t = self.ir.inputs[k]
            stmts.append(Declare(f"r_{t.name}", t.dtype, lanes=lanes))
            stmts.append(Load(f"r_{t.name}", t.dtype, t.name, offsets[k], lanes, lanes > 1))
            for lane in range(lanes):
                slot: Expr = group if lanes == 1 else IndexOp(
                    "+", IndexOp("*", group, width, idx), Const(lane, idx), idx)
                stmts.append(Assign(Elem(f"p_{t.name}", slot, t.dtype),
                                    Elem(f"r_{t.name}", Const(lane, DType.INT32), t.dtype)))
        first = IndexOp("+", self.lane, IndexOp("*", group, self.lane_step, idx), idx)
        if lanes > 1:
            first = IndexOp("*", first, width, idx)
        out.append(For(group, Const(0, idx), Const(self.persist // lanes, idx), Const(1, idx), (
            Declare(col.name, idx, init=first),
            If(IndexOp("<", col, self.numel, DType.BOOL), tuple(stmts))), unroll=True))

    def vector_operand(self, k: int) -> bool:
        """Whether operand `k` (an input, or an output at len(inputs) + j) is read or written
        `lanes` columns per access in the epilogue (`vector_group_loop`) and a looped row's
        column loops (`_vector_loop`): a persistent or looped row with lanes > 1 whose
        operand has one inner dim of unit stride, elements of at most 4 bytes and a vector of
        at most 16 bytes.  The schedule (`persistent_lanes`, `looped_lanes`) chose lanes only
        where every such operand is aligned to its vector."""
        lanes = self.sig.lanes
        if lanes == 1 or self.col_end is not None:
            return False
        classes = (self.sig.inputs + self.sig.outputs)[k]
        itemsize = self.tensors[k].dtype.itemsize
        # 8-byte values: a pair per access gains little and the lane arrays made the largest
        # float64 bucket spill (tests/numerics/test_persistent.py)
        inner = classes[self.sig.outer_rank:]
        if self.persist and inner != "1":
            return False
        return inner.endswith("1") and itemsize <= 4 and lanes * itemsize <= 16

    def lane_varies(self, k: int) -> bool:
        """Whether input `k`'s preloaded q_<input> holds one value per lane (else one for all
        lanes: a column schedule's input that broadcasts along the kept dim)."""
        return True

    def vector_group_loop(self, roots: list[int],
                          group: Callable[[Var, list[Stmt]], list[Stmt]],
                          lane: Callable[[list[Expr], dict[int, Expr], Var], list[Stmt]]
                          ) -> Stmt:
        """The epilogue by vector groups: for g < persist / lanes (unrolled):
        col0 = (threadIdx.x + g * blockDim.x) * lanes; if col0 < row_numel (a looped row:
        for col0 = threadIdx.x * lanes; col0 < row_numel; col0 += blockDim.x * lanes,
        without register slots): one vector load
        q_<input>[lanes] per row-varying input `roots` need that is neither cached nor
        row-invariant (`vector_operand`), `group(col0, prologue)`'s statements (the caller's
        register arrays), one scalar load q_<input>[1] per input the same in every lane
        (`group_invariant`), then for pl < lanes (unrolled): col = col0 + pl, slot pk =
        g * lanes + pl, the values of `roots` and `lane(offsets, values, pl)`; then
        `group`'s statements returned after the loop (the caller's vector stores).  lanes
        divides row_numel, so a group is wholly inside the row or wholly past it."""
        idx, lanes = self.idx, self.sig.lanes
        g, pl = Var("pg", idx), Var("pl", idx)
        col0, col, pk = Var("col0", idx), Var("col", idx), Var("pk", idx)
        width = Const(lanes, idx)
        body: list[Stmt] = []
        # every operand's offset at col0 (a group of lanes stays inside the innermost dim):
        # for rows of several inner dims, the group's loads and the caller's stores
        at, first = self._offsets(col0, body)
        self.group_offsets = at if self.sig.inner_rank > 1 else None
        loaded = set()
        for index in self._needed(roots):
            node = self.ir.nodes[index]
            if node.op is not Prim.LOAD:
                continue
            k = int(node.attr)  # type: ignore[arg-type]
            if k in self.cached or k in loaded or index in self.row_exprs \
                    or not (self.vector_operand(k) or k in self.staged):
                continue
            loaded.add(k)
            body.extend(self._group_load(
                k, col0, self.group_offsets[k] if self.group_offsets is not None else None))
        after = group(col0, body)
        self.group_offsets = None
        stmts: list[Stmt] = []
        if self.persist:
            stmts.append(Declare(pk.name, idx,
                                 init=IndexOp("+", IndexOp("*", g, width, idx), pl, idx)))
        stmts.append(Declare(col.name, idx, init=IndexOp("+", col0, pl, idx)))
        offsets = self._offsets_at(_lane_indices(first, pl))
        self.slot = pk if self.persist else None
        self.vec_lane, self.vec_loaded, self.vec_fixed = pl, loaded, set()
        try:
            values = self.column_values(roots, offsets, stmts)
            stmts.extend(lane(offsets, values, pl))
            fixed = sorted(self.vec_fixed)
        finally:
            self.slot, self.vec_lane, self.vec_loaded = None, None, set()
            self.vec_fixed = None
        body.extend(self._fixed_loads(fixed, at))
        body.append(For(pl, Const(0, idx), width, Const(1, idx), tuple(stmts), unroll=True))
        body.extend(after)
        if not self.persist:
            return self.guarded(For(col0, self.group_start(width), self.stop,
                                    IndexOp("*", self.lane_step, width, idx), tuple(body)))
        start = IndexOp("*", IndexOp("+", self.lane, IndexOp("*", g, self.lane_step, idx), idx),
                        width, idx)
        return For(g, Const(0, idx), Const(self.persist // lanes, idx), Const(1, idx), (
            Declare(col0.name, idx, init=start),
            If(IndexOp("<", col0, self.numel, DType.BOOL), tuple(body))), unroll=True)

    def _needed(self, roots: list[int]) -> list[int]:
        """The nodes `roots` are computed from, stopping at values already available."""
        needed: set[int] = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            if n in needed or n in self.row_exprs:
                continue
            needed.add(n)
            stack.extend(self.ir.nodes[n].args)
        return sorted(needed)

    def hoist_row_invariant_loads(self, out: list[Stmt]) -> None:
        """Load once per row the inputs that do not vary along the row (every inner stride 0:
        a scalar, a (rows, 1) mask), instead of once per column in every phase."""
        for index, node in enumerate(self.ir.nodes):
            if node.op is not Prim.LOAD:
                continue
            k = int(node.attr)  # type: ignore[arg-type]
            if any(c != "0" for c in self.sig.inputs[k][self.sig.outer_rank:]):
                continue
            name = self.ir.inputs[k].name
            lanes, at = self.invariant_lanes(k)
            out.append(Declare(f"r_{name}", node.dtype, lanes=lanes))
            out.append(self.guarded(Load(f"r_{name}", node.dtype, name,
                                         Var(f"ro_{name}", self.idx), lanes, lanes > 1)))
            self.row_exprs[index] = Elem(f"r_{name}", at, node.dtype)

    def invariant_lanes(self, k: int) -> tuple[int, Expr]:
        """(elements loaded, the element a computation reads) of row-invariant input k."""
        return 1, Const(0, DType.INT32)

    def ready_row_values(self, done: set[int]) -> Iterator[tuple[int, Compute]]:
        """(index, its computation) of every pending row value whose arguments are available,
        in node order; the caller declares it and records it in `row_exprs` and `done`."""
        for index in sorted(self.rows_live - done):
            node = self.ir.nodes[index]
            if node.op in REDUCTIONS:
                continue
            args = [self.row_exprs.get(a) if a in self.row_exprs else self.leaf(a)
                    for a in node.args]
            if any(a is None for a in args):
                continue
            yield index, Compute(node.op, tuple(args), node.dtype)  # type: ignore[arg-type]

    def row_phase(self, done: set[int], out: list[Stmt]) -> None:
        """Declare every row value whose arguments are available."""
        for index, value in self.ready_row_values(done):
            out.append(Declare(f"v{index}", value.dtype, init=value))
            self.row_exprs[index] = Var(f"v{index}", value.dtype)
            done.add(index)


def _lane_indices(first: list[Expr], lane: Var) -> list[Expr]:
    """The inner indices of lane `lane` of a vector group whose first column has indices
    `first`: the same, `lane` added to the innermost (a group never crosses it, so no division
    or remainder per lane)."""
    if not first:
        return []
    return [*first[:-1], IndexOp("+", first[-1], lane, lane.dtype)]
