"""Lower a split reduction: (FusionIR, SplitSignature) -> the kernel IR of one of its two
kernels (nvfuse/schedule/split.py says when and why a reduction splits).

Both kernels take the same arguments: the row lowering's tensors (inputs, then outputs), then
one workspace per partial (`workspace_dtypes`, `ws0`, `ws1`, ...: rows * splits elements); the
row lowering's scalars, then `splits` and `chunk_len` (the launch binds each kernel's by name,
nvfuse/schedule/names.py).  A row signature lays the workspaces out [rows, splits] (partial
`row * splits + chunk`: a row's partials contiguous, for kernel 2's block per row), a column
signature [splits, rows] (partial `chunk * rows + row`: the kept elements contiguous, for
kernel 1's and kernel 2's threads across them).
Kernel 1 reads only the inputs and writes the workspaces and the full outputs that depend on no
reduction (`prologue_outputs`, stored by its first loop: a GELU backward's gradient beside its
bias gradient); kernel 2 reads the workspaces and writes the other outputs.

Kernel 1 (stage 1) is the row lowering (`RowLowering`) with block b working on row b / splits
and its columns [chunk * chunk_len, min(row_numel, (chunk + 1) * chunk_len)) (the `lane` and
`col_end` hooks), so prologues, broadcast operands and multi-dim rows work as in one block per
row.  A Welford M2 keeps its pivot (the row's first element, the same in every chunk), so the
stored shifted means of a row's chunks combine directly.  Empty chunks store the identity (a
Welford count of 0).
A column signature (kept dims innermost) lowers kernel 1 with `ColumnLowering`'s layout
instead: block b owns rows (b / splits) * COLUMN_X * L + tx * L .. + L - 1, its thread rows ty
stride over chunk b % splits; the ty == 0 thread of each live row stores its L partials of
each workspace at chunk * rows + row as 16-byte vectors (fewer lanes where L is smaller), so
a warp stores 32 * L consecutive partials.
Kernel 2 (stage 2) of a row signature: block r, thread t < splits / L loads partials
L * t .. L * t + L - 1 of row r as one vector (L = the signature's `lanes`, `stage2_lanes`;
at most one vector: splits <= block), folds them in order, the block reduction combines them
(BlockReduce with the reduction's own op, WelfordReduce's Chan update for M2), then the
epilogue (`row_phase`, ROW_NUMEL = the original row length) and thread 0 stores the row
outputs.  Kernel 2 of a column signature is nvfuse/lower/split_columns.py: threads across the
kept elements, reading each partial row as vectors, with the same combine order (for the
split counts `choose_splits` gives: powers of two up to MAX_SPLITS).
"""

from __future__ import annotations

import dataclasses

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.phases import PhaseKind, plain_runs, prologue_outputs
from nvfuse.fusion.prims import Prim
from nvfuse.lower import kir
from nvfuse.lower.kir import (
    Assign, Compute, Const, Declare, Elem, Expr, For, If, IndexOp, Load, Param,
    ReduceOp, ReduceScope, Special, Stmt, Store, Var, WelfordReduce,
)
from nvfuse.lower.column import ColumnLowering
from nvfuse.lower.pointwise import content_name
from nvfuse.lower.reduction import REDUCE_OPS, lower_plains, store_output
from nvfuse.lower.reduction_state import RowLowering
from nvfuse.lower.split_columns import combine_columns
from nvfuse.lower.welford import lower_m2
from nvfuse.schedule import names
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.reduction import COLUMN_X, VECTOR_BYTES
from nvfuse.schedule.split import SplitSignature, parts, stage2_columns, workspace_dtypes


def lower_split(ir: FusionIR, sig: SplitSignature) -> kir.Kernel:
    """Kernel `sig.stage` of the split form of `ir` (module docstring)."""
    base = sig.base
    # both kernels of a column signature lay their threads across the kept elements (kernel
    # 2 with `stage2_columns`' lanes and threads across); a row signature's kernel 2 reads one
    # partial per split, a short row
    column = base.kind is ScheduleKind.COLUMN
    across = COLUMN_X
    if column and sig.stage == 2:
        lanes, across = stage2_columns(ir, base)
        base = dataclasses.replace(base, lanes=lanes)
    lo = ColumnLowering(ir, base, sig.block, across) if column else RowLowering(ir, base)
    idx = lo.idx
    dtypes = workspace_dtypes(ir)
    spaces = [f"ws{k}" for k in range(len(dtypes))]
    lo.tensors = lo.tensors + tuple(kir.TensorParam(n, d, True, d.itemsize * _ws_lanes(sig, lo, d))
                                    for n, d in zip(spaces, dtypes))
    width = sig.base.outer_rank + sig.base.inner_rank
    lo.strides.extend([Const(0, idx)] * width for _ in spaces)  # addressed by `part` only
    if isinstance(lo, ColumnLowering):
        lo.unit.extend(False for _ in spaces)  # not an operand of the column loops
    splits, chunk_len = Param(names.SPLITS, idx), Param(names.CHUNK_LEN, idx)
    lo.scalars.extend([splits, chunk_len])
    if sig.stage == 1:
        body = _stage1(lo, sig, spaces, splits, chunk_len)
    elif isinstance(lo, ColumnLowering):
        body = []
        lo.declare_row(Special("blockIdx.x", idx), body)
        outer = _rows_and_offsets(lo, Var("row", idx), body)
        body += combine_columns(lo, sig, spaces, splits, outer)
    else:
        body = _stage2_rows(lo, sig, spaces, splits)
    grid = IndexOp("*", lo.grid(), splits, idx) if sig.stage == 1 else lo.grid()
    return kir.Kernel(content_name(f"nvfuse_split{sig.stage}", ir, sig), lo.tensors,
                      tuple(lo.scalars), tuple(body), sig.block, grid, idx)


def _ws_lanes(sig: SplitSignature, lo: RowLowering, dtype: DType) -> int:
    """The widest access to a workspace of `dtype` (its alignment, in elements): a column
    kernel's vector of kept elements (`_vector_width`), a row kernel 2's vector of partials."""
    if isinstance(lo, ColumnLowering):
        return _vector_width(lo.vec, dtype)
    return sig.lanes


def _vector_width(lanes: int, dtype: DType) -> int:
    """Elements of `dtype` per access when storing `lanes` consecutive ones: one 16-byte
    vector at most."""
    return max(1, min(lanes, VECTOR_BYTES // dtype.itemsize))


def _rows_and_offsets(lo: RowLowering, row: Expr, body: list[Stmt]) -> list[Expr]:
    outer = lo.split(row, lo.outer_sizes, lo.sig.outer_rank, "i", body)
    for k, t in enumerate(lo.tensors):
        body.append(Declare(f"ro_{t.name}", lo.idx,
                            init=lo.offset(k, outer, range(lo.sig.outer_rank))))
    return outer


def _stage1(lo: RowLowering, sig: SplitSignature, spaces: list[str], splits: Param,
            chunk_len: Param) -> list[Stmt]:
    idx, ir = lo.idx, lo.ir
    body: list[Stmt] = []
    block = Special("blockIdx.x", idx)
    chunk = Var("chunk", idx)
    body.append(Declare(chunk.name, idx, init=IndexOp("%", block, splits, idx)))
    group = IndexOp("/", block, splits, idx)
    if isinstance(lo, ColumnLowering):  # COLUMN_X rows per block, thread rows along the chunk
        lo.declare_row(group, body)
        lane: Expr = lo.ty
    else:
        body.append(Declare("row", idx, init=group))
        lane = Special("threadIdx.x", idx)
    row, part = Var("row", idx), Var("part", idx)
    # this thread's (first) partial: [rows, splits] for a row, [splits, rows] for columns
    body.append(Declare(part.name, idx, init=IndexOp(
        "+", IndexOp("*", chunk, lo.rows, idx), row, idx) if isinstance(lo, ColumnLowering)
        else IndexOp("+", IndexOp("*", row, splits, idx), chunk, idx)))
    body.append(Declare("col_begin", idx, init=IndexOp("*", chunk, chunk_len, idx)))
    end = IndexOp("+", Var("col_begin", idx), chunk_len, idx)
    body.append(Declare("col_end", idx, init=Compute(
        Prim.WHERE, (IndexOp("<", end, lo.numel, DType.BOOL), end, lo.numel), idx)))
    lo.lane = IndexOp("+", Var("col_begin", idx), lane, idx)
    lo.col_end = Var("col_end", idx)
    outer = _rows_and_offsets(lo, Var("row", idx), body)
    lo.hoist_row_invariant_loads(body)
    n_in = len(ir.inputs)
    early = [(n_in + j, ir.outputs[j]) for j in sorted(prologue_outputs(ir))]
    declared: set[DType] = set()
    results: list[Expr] = []
    for run in plain_runs(ir, parts(ir)):  # workspaces in `parts` order (workspace_dtypes)
        p = run[0]
        welford = p.kind is PhaseKind.WELFORD
        for dtype in dict.fromkeys(ir.nodes[q.node].dtype for q in run):
            if (not welford or p.partners) and dtype not in declared:
                lo.declare_scratch(dtype, sig.block, body)
                declared.add(dtype)
        if welford:
            dtype = ir.nodes[p.node].dtype
            body.extend(lower_m2(lo, p.node, sig.block, p.partners, state=True))
            results.extend(lo.state(f"w{w}_row{p.node}", dtype) for w in ("mean", "m2", "n"))
            results.extend(lo.row_exprs[s] for s in p.partners)
            continue
        stmts, values = lower_plains(lo, [q.node for q in run], early, outer)
        early = []  # stored by the first part's loop (`splittable`: it is a plain one)
        body.extend(stmts)
        results.extend(values[q.node] for q in run)
    stores: list[Stmt] = []
    for name, value in zip(spaces, results):
        if isinstance(lo, ColumnLowering):
            stores.extend(_put_lanes(lo, name, value, part))
        else:
            stores.extend(_put(name, value, part))
    body.append(If(lo.first_thread(), tuple(stores)))
    return body


def _put_lanes(lo: ColumnLowering, tensor: str, value: Expr, at: Expr) -> list[Stmt]:
    """Store a column thread's `lo.vec` partials (`value`, lane `pl`'s) at at .. at + vec - 1:
    one vector of `_vector_width` lanes per access (the thread's kept elements are
    consecutive in the [splits, rows] layout, and rows is a multiple of vec)."""
    if lo.vec == 1:
        return _put(tensor, value, at)
    idx, dtype = lo.idx, value.dtype
    width = _vector_width(lo.vec, dtype)
    out: list[Stmt] = []
    for first in range(0, lo.vec, width):
        reg = f"r_{tensor}" if width == lo.vec else f"r_{tensor}_{first // width}"
        lane = IndexOp("-", lo.pl, Const(first, idx), idx) if first else lo.pl
        out += [Declare(reg, dtype, lanes=width),
                For(lo.pl, Const(first, idx), Const(first + width, idx), Const(1, idx),
                    (Assign(Elem(reg, lane, dtype), value),), unroll=True),
                Store(tensor, dtype, IndexOp("+", at, Const(first, idx), idx) if first else at,
                      reg, width, vector=width > 1)]
    return out


def _put(tensor: str, value: Expr, at: Expr) -> list[Stmt]:
    reg = f"r_{tensor}"
    return [Declare(reg, value.dtype, lanes=1),
            Assign(Elem(reg, Const(0, DType.INT32), value.dtype), value),
            Store(tensor, value.dtype, at, reg, 1, vector=False)]


def _stage2_rows(lo: RowLowering, sig: SplitSignature, spaces: list[str],
                 splits: Param) -> list[Stmt]:
    idx, ir = lo.idx, lo.ir
    body: list[Stmt] = []
    row = Var("row", idx)
    body.append(Declare(row.name, idx, init=Special("blockIdx.x", idx)))
    outer = _rows_and_offsets(lo, row, body)
    first = IndexOp("*", row, splits, idx)
    # this thread's first partial (at most `lanes` of them: splits <= block * lanes)
    t = Var("t", idx)
    at = IndexOp("+", first, t, idx)
    lanes = sig.lanes
    declared: set[DType] = set()
    done: set[int] = set()
    queue = iter(spaces)

    def read(name: str, dst: Var, fold: ReduceOp | None) -> list[Stmt]:
        """dst = (dst op) workspace `name` at this thread's partials, one vector of `lanes`
        (`fold` None: one partial, assigned)."""
        stmts: list[Stmt] = [Declare(f"r_{name}", dst.dtype, lanes=lanes),
                             Load(f"r_{name}", dst.dtype, name, at, lanes, lanes > 1)]
        for k in range(lanes):
            value: Expr = Elem(f"r_{name}", Const(k, DType.INT32), dst.dtype)
            if fold is not None:
                value = Compute(kir.combine_prim(fold), (dst, value), dst.dtype)
            stmts.append(Assign(dst, value))
        return stmts

    def loop(stmts: list[Stmt]) -> Stmt:
        start: Expr = Special("threadIdx.x", idx)
        step: Expr = Special("blockDim.x", idx)
        if lanes > 1:
            start, step = (IndexOp("*", e, Const(lanes, idx), idx) for e in (start, step))
        return For(t, start, splits, step, tuple(stmts))

    def plain(node: int, dtype: DType, op: ReduceOp) -> None:
        if dtype not in declared:
            lo.declare_scratch(dtype, sig.block, body)
            declared.add(dtype)
        acc = Var(f"acc{node}", dtype)
        body.append(Declare(acc.name, dtype, init=Const(kir.identity_value(op, dtype), dtype)))
        body.append(loop(read(next(queue), acc, op)))
        result = Var(f"v{node}", dtype)
        body.append(Declare(result.name, dtype))
        body.extend(lo.allreduce(result, acc, op, dtype))
        lo.row_exprs[node] = result

    for p in parts(ir):
        dtype = ir.nodes[p.node].dtype
        if p.kind is PhaseKind.WELFORD:
            state = [Var(f"w{w}{p.node}", dtype) for w in ("mean", "m2", "n")]
            for v in state:
                body.append(Declare(v.name, dtype, init=Const(0.0, dtype)))
            body.append(loop([s for v in state for s in read(next(queue), v, None)]))
            res = [Var(f"w{w}_row{p.node}", dtype) for w in ("mean", "m2", "n")]
            scratch = f"wel_{dtype.c_type}{p.node}"
            body.append(kir.Shared(scratch, dtype, 3 * max(1, sig.block // 32)))
            body.extend(Declare(v.name, dtype) for v in res)
            body.append(WelfordReduce(res[0], res[1], res[2], state[0], state[1], state[2],
                                      ReduceScope.BLOCK, scratch))
            body.append(Declare(f"v{p.node}", dtype, init=res[1]))
            lo.row_exprs[p.node] = Var(f"v{p.node}", dtype)
            for s in p.partners:
                plain(s, dtype, ReduceOp.SUM)
        else:
            plain(p.node, dtype, REDUCE_OPS[ir.nodes[p.node].op])
        done.update(p.nodes)
        lo.row_phase(done, body)
    n_in = len(ir.inputs)
    stores: list[Stmt] = []
    prologue = prologue_outputs(ir)  # kernel 1 stored them
    for j, o in enumerate(ir.outputs):
        if j in prologue:
            continue
        k = n_in + j
        stores.extend(store_output(o, lo.row_exprs[o.value], Var(f"ro_{o.name}", idx),
                             lo.guard(k, outer, range(sig.base.outer_rank))))
    body.append(If(lo.first_thread(), tuple(stores)))
    return body

