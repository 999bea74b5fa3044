"""Lower a reduction fusion: (FusionIR with reduce_ndim > 0, ReductionSignature) -> kernel IR.

Row schedule (kind ROW): one block per row (row = blockIdx.x, grid = rows); the column
schedule (kind COLUMN) overrides the thread layout hooks of `RowLowering`
(nvfuse/lower/reduction_state.py) in nvfuse/lower/column.py, and warp rows (kind WARP_ROW:
one warp per short row, 4 rows per block) in nvfuse/lower/warp.py, and cluster rows (a staged
row split over the blocks of a thread-block cluster) in nvfuse/lower/cluster.py.
The row index is split into the merged outer dims, the column index into the merged inner
dims, and each operand's offset is formed from its strides (`nvfuse.schedule.reduction`).
Inputs that do not vary along the row (a scalar, a (rows, 1) mask) are loaded once per row up
front.  Phases, in the fusion's topological order:

1. for each reduction node: acc = identity; for col = threadIdx.x; col < row_numel;
   col += blockDim.x: compute (loading and recomputing) the full values its operand needs and
   combine; then an allreduce (reached by every thread: the data is predicated by the loop,
   never the reduction) gives every thread the row value; row values computed from finished
   reductions follow at once.  Consecutive plain reductions that do not depend on each other
   share one loop (`plain_runs`: layer-norm backward's dw and db read g once), and in the
   column schedule the first plain loop also stores the full outputs that depend on no
   reduction (`prologue_outputs`: a GELU backward's gradient beside its bias gradient);
2. a last column loop computes and stores the other full outputs (an output that broadcasts
   along a dim is stored only where that index is 0, as in the pointwise lowering);
3. thread 0 stores the row outputs.

With sig.persist > 0 (rows that fit a persistent bucket, nvfuse.schedule.reduction) the inputs
the reductions read are loaded once into registers up front and every phase reads those
(`RowLowering.load_persistent`); otherwise every phase re-reads the row from global memory
(L2 serves re-reads of rows that fit), except that a looped softmax's max and sum of exp
share one online pass (nvfuse/lower/online_softmax.py) -- unless the whole row is staged in
shared memory (sig.whole_row), where the max and the sum are two plain passes over the staged
copy: the online update's rescale costs a second exp and a select per element.  With
sig.lanes > 1 the persistent load, the epilogue's unit-stride loads and stores and, for a
looped row, every column loop access `lanes` columns per vector
(`RowLowering.vector_operand`).  Block reductions of one dtype share one shared scratch array
(the helper leaves it reusable).
Kernel arguments: the input then output pointers; then rows, row_numel, the outer sizes without
the outermost, the inner sizes without the outermost, and the "s" strides operand by operand
(outer dims, then inner dims) -- the order `plan_launch` produces.
"""

from __future__ import annotations

from collections.abc import Sequence

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, Output
from nvfuse.fusion.phases import PhaseKind, plain_runs, prologue_outputs, reduction_phases
from nvfuse.fusion.prims import Prim
from nvfuse.lower import kir
from nvfuse.lower.kir import (
    combine_prim,
    identity_value,
    Assign,
    Compute,
    Const,
    Declare,
    Elem,
    Expr,
    If,
    IndexOp,
    ReduceOp,
    Stmt,
    Store,
    Var,
)
from nvfuse.lower.argreduce import lower_arg
from nvfuse.lower.cluster import ClusterLowering
from nvfuse.lower.column import ColumnLowering
from nvfuse.lower.online_softmax import lower_online
from nvfuse.lower.pointwise import content_name
from nvfuse.lower.reduction_state import RowLowering
from nvfuse.lower.warp import WarpLowering
from nvfuse.lower.welford import lower_m2, row_two_pass
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.reduction import ReductionSignature

REDUCE_OPS = {Prim.REDUCE_SUM: ReduceOp.SUM, Prim.REDUCE_PROD: ReduceOp.PROD,
        Prim.REDUCE_MAX: ReduceOp.MAX, Prim.REDUCE_MIN: ReduceOp.MIN}


def kernel_name(ir: FusionIR, signature: object) -> str:
    return content_name("nvfuse_red", ir, signature)


def identity(prim: Prim, dtype: DType) -> Const:
    """What a thread with no data contributes to reduction `prim` (kir's contract)."""
    return Const(identity_value(REDUCE_OPS[prim], dtype), dtype)


def lower_reduction(ir: FusionIR, sig: ReductionSignature, block: int) -> kir.Kernel:
    """The kernel IR of `ir` specialized on `sig` with `block` threads per row."""
    lo = _lowering(ir, sig, block)
    idx = sig.index
    body: list[Stmt] = []
    row = lo.row_index(body)
    outer = lo.split(row, lo.outer_sizes, sig.outer_rank, "i", body)
    for k, t in enumerate(lo.tensors):
        body.append(Declare(f"ro_{t.name}", idx,
                            init=lo.offset(k, outer, range(sig.outer_rank))))
    lo.hoist_row_invariant_loads(body)
    lo.load_persistent(body)
    lo.stage_shared(body)
    n_in = len(ir.inputs)
    # A full output that does not vary along the row (every inner stride 0: `x.sum(-1) + y`
    # with y of shape (rows,)) is stored with the row outputs, from the row's registers, not
    # from the column loop at column 0, which an empty row (row_numel 0) never reaches.
    row_like = {j for j, o in enumerate(ir.outputs) if not o.shape.is_row and all(
        c == "0" for c in sig.outputs[j][sig.outer_rank:])}
    full = [(n_in + j, o) for j, o in enumerate(ir.outputs)
            if not o.shape.is_row and j not in row_like]
    rows_out = [(n_in + j, o) for j, o in enumerate(ir.outputs)
                if o.shape.is_row or j in row_like]
    declared: set[DType] = set()
    done: set[int] = set()
    # a looped row read from global memory: softmax's max and sum of exp share one online pass;
    # a staged row re-reads shared memory instead, and two plain passes cost about a third of
    # the online update's instructions (bench --model)
    online = not lo.persist and not sig.whole_row and sig.kind is not ScheduleKind.COLUMN
    phases = reduction_phases(ir, online)
    early: list[tuple[int, Output]] = []
    if isinstance(lo, ColumnLowering) and phases and phases[0].kind is PhaseKind.PLAIN:
        prologue = prologue_outputs(ir)
        early = [(k, o) for k, o in full if k - n_in in prologue]
        full = [f for f in full if f not in early]
    for run in plain_runs(ir, phases):
        phase = run[0]
        # block-wide combines share one scratch per dtype (the arg pair and the M2 bring
        # their own; an M2's sums use it)
        scratch = phase.kind in (PhaseKind.ONLINE, PhaseKind.PLAIN) or (
            phase.kind is PhaseKind.WELFORD and (bool(phase.partners) or row_two_pass(
                lo, ir.nodes[phase.node].dtype)))
        for dtype in dict.fromkeys(ir.nodes[p.node].dtype for p in run):
            if scratch and dtype not in declared:
                lo.declare_scratch(dtype, block, body)
                declared.add(dtype)
        if phase.kind is PhaseKind.ARG:  # argmax / argmin, with the max / min of the operand
            body.extend(lower_arg(lo, phase.node, phase.partners, block))
        elif phase.kind is PhaseKind.ONLINE:  # softmax's max and sum of exp in one pass
            body.extend(lower_online(lo, phase.node, phase.partners[0]))
        elif phase.kind is PhaseKind.WELFORD:
            # one column loop for the M2 and the sums of its operand (layer norm's mean): the
            # row is read once for both; the sums keep a plain accumulator (eager's NaN / inf)
            body.extend(lower_m2(lo, phase.node, block, phase.partners))
        else:
            stmts, results = lower_plains(lo, [p.node for p in run], early, outer)
            early = []  # stored by the first phase's loop
            body.extend(stmts)
            lo.row_exprs.update(results)
        for p in run:
            done.update(p.nodes)
        lo.row_phase(done, body)

    inner_dims = range(sig.outer_rank, sig.outer_rank + sig.inner_rank)
    outer_dims = range(sig.outer_rank)
    if isinstance(lo, ColumnLowering) and lo.vec > 1:
        body.extend(lo.store_vector_outputs(full, rows_out, outer))
        full, rows_out = [], []
    if full:
        def store_full(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
            stmts: list[Stmt] = []
            exprs = lo.column_values([o.value for _, o in full], offsets, stmts)
            for k, o in full:
                stmts.extend(store_output(o, exprs[o.value], offsets[k],
                                    _and(lo.guard(k, outer, outer_dims),
                                         lo.guard(k, inner, inner_dims))))
            return stmts

        if any(lo.vector_operand(k) for k, _ in full):
            body.append(_vector_store_full(lo, full, outer))
        else:
            body.append(lo.column_loop(store_full))
    if rows_out:
        stores: list[Stmt] = []
        offsets: list[Expr] = [Var(f"ro_{t.name}", idx) for t in lo.tensors]
        values = lo.column_values([o.value for _, o in rows_out], offsets, stores)
        for k, o in rows_out:
            stores.extend(store_output(o, values[o.value], offsets[k],
                                       lo.guard(k, outer, outer_dims)))
        body.append(If(lo.first_thread(), tuple(stores)))
    lo.finish(body)
    if ir.random:
        lo.scalars.append(lo.seed)  # a fresh value every launch, drawn from torch's generator
    return kir.Kernel(kernel_name(ir, sig), lo.tensors, tuple(lo.scalars), tuple(body), block,
                      lo.grid(), idx, cluster=sig.cluster)


def lower_plains(lo: RowLowering, indices: Sequence[int],
                 early: Sequence[tuple[int, Output]] = (), outer: Sequence[Expr] = ()
                 ) -> tuple[list[Stmt], dict[int, Var | Elem]]:
    """PLAIN phases that depend on none of each other (`plain_runs`): one accumulator each, one
    column loop computing all their operands, then a block combine each; returns the
    statements and the registers holding the row's results by node.  `early` (every element
    is visited once by one thread): full outputs that depend on no reduction, computed with
    the operands and stored in the same loop (`outer`: the row's outer indices, for their
    broadcast guards)."""
    ir, sig = lo.ir, lo.sig
    nodes = [ir.nodes[i] for i in indices]
    accs = [lo.state(f"acc{i}", n.dtype) for i, n in zip(indices, nodes)]
    body: list[Stmt] = []
    for i, n in zip(indices, nodes):
        body += lo.declare_state(f"acc{i}", n.dtype, identity(n.op, n.dtype))
    vector = isinstance(lo, ColumnLowering) and lo.vec > 1

    def combine(offsets: list[Expr], inner: list[Expr]) -> list[Stmt]:
        stmts: list[Stmt] = []
        operands = [n.args[0] for n in nodes]
        wanted = dict.fromkeys([*operands, *(o.value for _, o in early)])
        values = lo.column_values(list(wanted), offsets, stmts)
        for acc, n, operand in zip(accs, nodes, operands):
            op = REDUCE_OPS[n.op]
            stmts.append(Assign(acc, Compute(combine_prim(op), (acc, values[operand]),
                                             n.dtype)))
        if vector:
            assert isinstance(lo, ColumnLowering)
            stmts += lo.lane_outputs(early, values)
        else:
            for k, o in early:
                stmts += store_output(o, values[o.value], offsets[k], _and(
                    lo.guard(k, list(outer), range(sig.outer_rank)),
                    lo.guard(k, inner, range(sig.outer_rank, sig.outer_rank + sig.inner_rank))))
        return stmts

    if vector and early:
        assert isinstance(lo, ColumnLowering)
        body.append(lo.lane_column_loop(
            combine, lambda offsets, inner: lo.store_lane_outputs(early, offsets, list(outer),
                                                                  inner),
            before=lo.declare_lane_outputs(early)))
    else:
        body.append(lo.column_loop(combine))
    results: dict[int, Var | Elem] = {}
    for i, n, acc in zip(indices, nodes, accs):
        result = lo.state(f"v{i}", n.dtype)
        body.extend(lo.declare_state(f"v{i}", n.dtype))
        body.extend(lo.allreduce(result, acc, REDUCE_OPS[n.op], n.dtype))  # type: ignore[arg-type]
        results[i] = result
    return body, results


def _vector_store_full(lo: RowLowering, full: list[tuple[int, Output]],
                      outer: list[Expr]) -> Stmt:
    """The persistent epilogue by vector groups (`RowLowering.vector_group_loop`): each
    vector output collects its `lanes` values in w_<output>[lanes] and stores them with one
    vector store per group; the other outputs store one column at a time."""
    sig = lo.sig
    outer_dims = range(sig.outer_rank)
    inner_dims = range(sig.outer_rank, sig.outer_rank + sig.inner_rank)
    vector = [(k, o) for k, o in full if lo.vector_operand(k)]

    def group(col0: Var, out: list[Stmt]) -> list[Stmt]:
        stores: list[Stmt] = []
        for k, o in vector:
            out.append(Declare(f"w_{o.name}", o.dtype, lanes=sig.lanes))
            at = (lo.group_offsets[k] if lo.group_offsets is not None
                  else IndexOp("+", Var(f"ro_{o.name}", lo.idx), col0, lo.idx))
            store: Stmt = Store(o.name, o.dtype, at, f"w_{o.name}", sig.lanes, vector=True)
            guard = lo.guard(k, outer, outer_dims)
            stores.append(If(guard, (store,)) if guard is not None else store)
        return stores

    def lane(offsets: list[Expr], values: dict[int, Expr], pl: Var) -> list[Stmt]:
        stmts: list[Stmt] = []
        for k, o in full:
            value = values[o.value]
            if (k, o) in vector:
                if value.dtype is not o.dtype:
                    value = Compute(Prim.CAST, (value,), o.dtype)
                stmts.append(Assign(Elem(f"w_{o.name}", pl, o.dtype), value))
            else:
                inner: list[Expr] = [Var("col", lo.idx)]  # one inner dim (a vector operand)
                stmts.extend(store_output(o, value, offsets[k], _and(
                    lo.guard(k, outer, outer_dims), lo.guard(k, inner, inner_dims))))
        return stmts

    return lo.vector_group_loop([o.value for _, o in full], group, lane)


def _lowering(ir: FusionIR, sig: ReductionSignature, block: int) -> RowLowering:
    """The lowering state of the signature's kind: its thread layout hooks."""
    if sig.kind is ScheduleKind.COLUMN:
        return ColumnLowering(ir, sig, block)
    if sig.kind is ScheduleKind.WARP_ROW:
        return WarpLowering(ir, sig, block)
    if sig.cluster > 1:
        return ClusterLowering(ir, sig)
    return RowLowering(ir, sig)


def _and(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or b is None:
        return a if b is None else b
    return IndexOp("&&", a, b, DType.BOOL)


def store_output(out: Output, value: Expr, offset: Expr, guard: Expr | None) -> list[Stmt]:
    """Round `value` to the output's dtype into a one-element register and store it."""
    name, dtype = out.name, out.dtype
    if value.dtype is not dtype:
        value = Compute(Prim.CAST, (value,), dtype)
    reg = f"r_{name}"
    stmts: list[Stmt] = [Declare(reg, dtype, lanes=1),
                         Assign(Elem(reg, Const(0, DType.INT32), dtype), value)]
    store: Stmt = Store(name, dtype, offset, reg, 1, vector=False)
    stmts.append(If(guard, (store,)) if guard is not None else store)
    return stmts
