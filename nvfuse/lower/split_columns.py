"""Kernel 2 of a split column reduction: (the stage's `ColumnLowering`, its `SplitSignature`,
the workspace names, the row's outer indices) -> the statements that combine the partials
kernel 1 stored, run the epilogue and store the row outputs (nvfuse/lower/split.py declares
the kernel and its rows; nvfuse/schedule/split.py says when a column reduction splits).

Layout.  Workspace w holds partial (chunk c, kept element r) at c * rows + r ([splits, rows]).
The threads are `ColumnLowering`'s with the stage's (V, A) = `stage2_columns`: tx =
threadIdx.x % A owns kept elements row .. row + V - 1 (row = blockIdx.x * A * V + tx * V; V:
the column schedule's lanes, at most one 16-byte vector of the widest partial), ty =
threadIdx.x / A is one of Y = block / A thread rows along the splits (A * V partials: one
128-byte line of a partial row).  Every workspace access is one V-element vector of one
partial row, and a warp's accesses are whole lines.

Combine order: the bits of the row layout's kernel 2, which combines a kept element's S
partials in one block: thread t folds partials F * t .. F * t + F - 1 in order from the
identity (F = the signature's `lanes`, `stage2_lanes`), then nvf_block_allreduce runs an xor
butterfly over each warp's 32 threads and one over the warps' results (threads past the
G = S / F leaves pass the identity).  Combining with the identity changes nothing (a leaf sum
starts from +0, so no partial sum is -0; an empty Welford state gives the other side as it
is), so that is a binary tree over the G leaves: R(leaves) = combine(R(the even ones),
R(the odd ones)) within each warp's 32 threads, and again over the warps' results.  Visited
in the order
    leaf(i) = rev5(i % 32) * min(G, 32) / 32 + 32 * (rev_h(i / 32) * G / Gmax)
(rev_b: the lowest b bits reversed; Gmax = MAX_SPLITS / F, h = log2(Gmax / 32); S is a power of
two), the tree combines positions 2k and 2k + 1, then pairs of those, and so on: a contiguous
pairwise tree.  So thread row ty takes positions [ty * P, (ty + 1) * P) (P = G / Y; with G < Y,
P = 1 and rows ty >= G take none), a whole subtree, which it folds leaf by leaf with a
binary-counter stack: s_l holds a finished subtree of 2^l leaves until its right sibling is
done; after leaf j, y is merged with s_l while bit l of j is set, then parked at the first
clear bit (levels up to log2(Gmax / Y)).  The thread rows' subtrees are then combined pairwise
in ty order through shared memory, log2(Y) rounds of halving (`_across_rows`), into thread
row 0, which runs the epilogue and stores.  Every combine is the reduction's own prim or
Chan's update operation for operation as nvf_welford_combine (no FMA the device would not
also form there), so the results are the bits the row layout gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nvfuse.dtypes import DType
from nvfuse.fusion.phases import PhaseKind, prologue_outputs
from nvfuse.fusion.prims import Prim
from nvfuse.lower.column import ColumnLowering
from nvfuse.lower.kir import (
    Assign, Compute, Const, Declare, Elem, Expr, For, If, IndexOp, Load, Param, ReduceOp,
    Shared, SharedElem, Special, Stmt, Sync, Var, combine_prim, identity_value,
)
from nvfuse.lower.reduction import REDUCE_OPS, store_output
from nvfuse.schedule.split import MAX_SPLITS, SplitSignature, parts

WARP = 32
P = Prim


@dataclass(frozen=True)
class _Tree:
    """One reduction's combine: plain (`op`, one workspace) or Welford (op None: mean, m2, n
    from three workspaces); its result lands in the lowering's row value of `node`."""

    node: int
    dtype: DType
    op: ReduceOp | None
    spaces: tuple[str, ...]


def combine_columns(lo: ColumnLowering, sig: SplitSignature, spaces: list[str], splits: Param,
                    outer: list[Expr]) -> list[Stmt]:
    """The statements of kernel 2 after the rows and offsets (module docstring)."""
    idx, ir = lo.idx, lo.ir
    trees: list[_Tree] = []
    queue = iter(spaces)
    for p in parts(ir):  # workspaces in `workspace_dtypes` order
        dtype = ir.nodes[p.node].dtype
        if p.kind is PhaseKind.WELFORD:
            trees.append(_Tree(p.node, dtype, None, tuple(next(queue) for _ in range(3))))
            trees.extend(_Tree(s, dtype, ReduceOp.SUM, (next(queue),)) for s in p.partners)
        else:
            trees.append(_Tree(p.node, dtype, REDUCE_OPS[ir.nodes[p.node].op], (next(queue),)))
    body: list[Stmt] = []
    _leaf_range(lo, sig, splits, body)
    for t in trees:
        for k in range(len(t.spaces)):
            # the leaf, merged with the parked subtrees: after the loop the thread row's
            # subtree (the identity for a row with no leaves)
            body += lo.declare_state(f"y{k}_{t.node}", t.dtype, _identity(t))
            body += [s for level in range(_depth(lo, sig))
                     for s in lo.declare_state(f"s{level}_{k}_{t.node}", t.dtype)]
    j = Var("j", idx)
    leaf: list[Stmt] = []
    index = _leaf_index(IndexOp("+", Var("leaf0", idx), j, idx), MAX_SPLITS // sig.lanes, idx,
                        leaf)
    leaf.append(Declare("leaf", idx, init=index))
    for t in trees:
        leaf += _leaf_value(lo, sig, t)
        leaf += _fold(lo, sig, t, j)
    body.append(lo.guarded(For(j, Const(0, idx), Var("leaf_count", idx), Const(1, idx),
                               tuple(leaf))))
    body += _across_rows(lo, trees)
    done: set[int] = {n for p in parts(ir) for n in p.nodes}
    lo.row_phase(done, body)
    body += _store_rows(lo, outer)
    return body


# -- which leaves a thread row folds ----------------------------------------------------------
def _depth(lo: ColumnLowering, sig: SplitSignature) -> int:
    """Stack levels: log2 of the most leaves a thread row folds (Gmax / Y)."""
    return max(1, MAX_SPLITS // sig.lanes // lo.thread_rows).bit_length() - 1


def _leaf_range(lo: ColumnLowering, sig: SplitSignature, splits: Param,
                out: list[Stmt]) -> None:
    """Declare leaves (G), leaf0 (this thread row's first position), leaf_count (its leaves:
    P, or 0 past the leaves) and low_leaves (min(G, 32), for `_leaf_index`)."""
    idx = lo.idx
    rows = Const(lo.thread_rows, idx)
    leaves = Var("leaves", idx)
    out.append(Declare(leaves.name, idx, init=splits if sig.lanes == 1 else IndexOp(
        "/", splits, Const(sig.lanes, idx), idx)))
    per_row = Var("per_row", idx)
    out.append(Declare(per_row.name, idx, init=_where(
        IndexOp("<", leaves, rows, DType.BOOL), Const(1, idx), IndexOp("/", leaves, rows, idx),
        idx)))
    first = Var("leaf0", idx)
    out.append(Declare(first.name, idx, init=IndexOp("*", lo.ty, per_row, idx)))
    out.append(Declare("leaf_count", idx, init=_where(
        IndexOp("<", first, leaves, DType.BOOL), per_row, Const(0, idx), idx)))
    if MAX_SPLITS // sig.lanes > WARP:  # the leaves of the first warp's butterfly
        out.append(Declare("low_leaves", idx, init=_where(
            IndexOp("<", leaves, Const(WARP, idx), DType.BOOL), leaves, Const(WARP, idx), idx)))


def _leaf_index(position: Expr, most: int, idx: DType, out: list[Stmt]) -> Expr:
    """The leaf (a group of `sig.lanes` consecutive partials) visited at `position` (module
    docstring), with its helper registers declared into `out`.  rev_b(p) / (2^b / n) for the
    n leaves of a butterfly is computed as rev_b(p) * n / 2^b, exact (the reversed value's low
    bits are zero: p < n, both powers of two), so no division by a runtime value."""
    leaves = Var("leaves", idx)
    if most <= WARP:  # one warp's butterfly
        out.append(Declare("pos", idx, init=position))
        bits = most.bit_length() - 1
        return _scaled(_reverse(Var("pos", idx), bits, idx), leaves, most, idx)
    warp = Const(WARP, idx)
    out.append(Declare("pos_lo", idx, init=IndexOp("%", position, warp, idx)))
    out.append(Declare("pos_hi", idx, init=IndexOp("/", position, warp, idx)))
    low = _scaled(_reverse(Var("pos_lo", idx), WARP.bit_length() - 1, idx),
                  Var("low_leaves", idx), WARP, idx)
    high = _scaled(_reverse(Var("pos_hi", idx), (most // WARP).bit_length() - 1, idx), leaves,
                   most, idx)
    return IndexOp("+", low, IndexOp("*", high, warp, idx), idx)


def _scaled(value: Expr, n: Expr, span: int, idx: DType) -> Expr:
    """value * n / span."""
    return IndexOp("/", IndexOp("*", value, n, idx), Const(span, idx), idx)


def _reverse(value: Expr, bits: int, idx: DType) -> Expr:
    """`value`'s lowest `bits` bits in reverse order (value < 2^bits)."""
    result: Expr = Const(0, idx)
    for b in range(bits):
        bit = IndexOp("%", value if b == 0 else IndexOp("/", value, Const(1 << b, idx), idx),
                      Const(2, idx), idx)
        weight = 1 << (bits - 1 - b)
        term = bit if weight == 1 else IndexOp("*", bit, Const(weight, idx), idx)
        result = term if b == 0 else IndexOp("+", result, term, idx)
    return result


# -- one leaf: load, fold, merge ----------------------------------------------------------------
def _leaf_value(lo: ColumnLowering, sig: SplitSignature, t: _Tree) -> list[Stmt]:
    """y_k = the leaf's state: F partials folded in order from the identity (plain), or the
    partial itself (Welford, F = 1), one vector load of V kept elements per partial."""
    idx, fold = lo.idx, sig.lanes
    out: list[Stmt] = []
    lanes: list[Stmt] = []
    for k, space in enumerate(t.spaces):
        y = lo.state(f"y{k}_{t.node}", t.dtype)
        if t.op is not None:
            lanes.append(Assign(y, Const(identity_value(t.op, t.dtype), t.dtype)))
        for f in range(fold if t.op is not None else 1):
            q = f"q{f}_{space}"
            split = IndexOp("*", Var("leaf", idx), Const(fold, idx), idx) if fold > 1 else \
                Var("leaf", idx)
            if f:
                split = IndexOp("+", split, Const(f, idx), idx)
            at = IndexOp("+", IndexOp("*", split, lo.rows, idx), Var("row", idx), idx)
            out += [Declare(q, t.dtype, lanes=lo.vec),
                    Load(q, t.dtype, space, at, lo.vec, vector=lo.vec > 1)]
            value = _lane(lo, q, t.dtype)
            lanes.append(Assign(y, value if t.op is None else Compute(
                combine_prim(t.op), (y, value), t.dtype)))
    return out + lo.lanes_loop(lanes)


def _fold(lo: ColumnLowering, sig: SplitSignature, t: _Tree, j: Var) -> list[Stmt]:
    """After leaf j of this thread row: merge y with the parked subtrees of the set low bits of
    j, then park it at the first clear bit (after the last leaf y is the whole subtree)."""
    idx = lo.idx
    comps = range(len(t.spaces))
    ys = [lo.state(f"y{k}_{t.node}", t.dtype) for k in comps]
    out: list[Stmt] = []
    depth = _depth(lo, sig)
    for level in range(depth):
        span = Const(2 << level, idx)
        parked = [lo.state(f"s{level}_{k}_{t.node}", t.dtype) for k in comps]
        merged = _combine(t, parked, ys, f"m{level}_{t.node}")
        out.append(If(_bits(j, span, (2 << level) - 1, idx), tuple(lo.lanes_loop(
            merged[0] + [Assign(y, v) for y, v in zip(ys, merged[1])]))))
    for level in range(depth):
        parked = [lo.state(f"s{level}_{k}_{t.node}", t.dtype) for k in comps]
        out.append(If(_bits(j, Const(2 << level, idx), (1 << level) - 1, idx), tuple(
            lo.lanes_loop([Assign(s, y) for s, y in zip(parked, ys)]))))
    return out


def _bits(j: Var, span: Const, value: int, idx: DType) -> Expr:
    """j % span == value."""
    return IndexOp("==", IndexOp("%", j, span, idx), Const(value, idx), DType.BOOL)


# -- the thread rows' subtrees --------------------------------------------------------------------
def _across_rows(lo: ColumnLowering, trees: list[_Tree]) -> list[Stmt]:
    """Combine each tree's thread-row results pairwise in ty order into thread row 0's y, and
    record its row value: log2(Y) rounds; in round r the rows ty = 2^r (mod 2^(r + 1)) write
    their y to shared memory, a barrier, and the rows ty = 0 (mod 2^(r + 1)) combine row
    ty + 2^r's into theirs.  A round's writers are never the previous round's sources (their
    lowest set bits differ), so one barrier per round; the next tree reuses the arrays (one
    per dtype and state component, a slot per thread and lane) behind one more."""
    idx = lo.idx
    tid = Special("threadIdx.x", idx)
    out: list[Stmt] = []
    declared: set[str] = set()
    for n, t in enumerate(trees):
        comps = range(len(t.spaces))
        ys = [lo.state(f"y{k}_{t.node}", t.dtype) for k in comps]
        scratch = [f"rows{k}_{t.dtype}" for k in comps]
        for name in scratch:
            if name not in declared:
                out.append(Shared(name, t.dtype, lo.block * lo.vec))
                declared.add(name)
        if n:
            out.append(Sync())  # the previous tree's last reads are done
        step = 1
        while step < lo.thread_rows:
            span = Const(2 * step, idx)
            writes = lo.lanes_loop([Assign(SharedElem(name, _lane_slot(lo, tid), t.dtype), y)
                                    for name, y in zip(scratch, ys)])
            out.append(If(_bits(lo.ty, span, step, idx), tuple(writes)))
            out.append(Sync())
            partner = _lane_slot(lo, IndexOp("+", tid, Const(step * lo.across, idx), idx))
            stmts, merged = _combine(t, ys, [SharedElem(name, partner, t.dtype)
                                             for name in scratch], f"r{step}_{t.node}")
            out.append(If(_bits(lo.ty, span, 0, idx), tuple(lo.lanes_loop(
                stmts + [Assign(y, v) for y, v in zip(ys, merged)]))))
            step *= 2
        # the row value: a plain reduction's result, an M2's m2
        lo.row_exprs[t.node] = ys[0 if t.op is not None else 1]
    return out


def _lane_slot(lo: ColumnLowering, thread: Expr) -> Expr:
    """Where `thread`'s lane pl lives in a row-combine scratch: lane-major, a block per lane."""
    if lo.vec == 1:
        return thread
    return IndexOp("+", IndexOp("*", lo.pl, Const(lo.block, lo.idx), lo.idx), thread, lo.idx)


# -- combines -------------------------------------------------------------------------------------
def _combine(t: _Tree, a: Sequence[Expr], b: Sequence[Expr], tag: str
             ) -> tuple[list[Stmt], list[Expr]]:
    """(statements, the combined state) of states `a` (the earlier leaves) and `b`."""
    dtype = t.dtype
    if t.op is not None:
        return [], [Compute(combine_prim(t.op), (a[0], b[0]), dtype)]
    # nvf_welford_combine operation for operation: an empty side gives the other as it is
    (am, aq, an), (bm, bq, bn) = a, b
    n, share, delta = (Var(f"w{what}{tag}", dtype) for what in ("total", "share", "delta"))
    zero = Const(0.0, dtype)
    a_empty = Compute(P.EQ, (an, zero), DType.BOOL)
    b_empty = Compute(P.EQ, (bn, zero), DType.BOOL)
    stmts: list[Stmt] = [
        Declare(n.name, dtype, init=Compute(P.ADD, (an, bn), dtype)),
        Declare(share.name, dtype, init=Compute(P.DIV, (bn, n), dtype)),
        Declare(delta.name, dtype, init=Compute(P.SUB, (bm, am), dtype)),
    ]
    # a.m2 + b.m2 + delta * delta * a.n * b_share, associated as C does
    spread = Compute(P.MUL, (Compute(P.MUL, (Compute(P.MUL, (delta, delta), dtype), an), dtype),
                             share), dtype)
    chan: list[Expr] = [Compute(P.ADD, (am, Compute(P.MUL, (delta, share), dtype)), dtype),
                        Compute(P.ADD, (Compute(P.ADD, (aq, bq), dtype), spread), dtype), n]
    result: list[Expr] = []
    for what, av, bv, cv in zip(("mean", "m2", "count"), a, b, chan):
        v = Var(f"w{what}{tag}", dtype)
        stmts.append(Declare(v.name, dtype, init=Compute(P.WHERE, (a_empty, bv, Compute(
            P.WHERE, (b_empty, av, cv), dtype)), dtype)))
        result.append(v)
    return stmts, result


def _identity(t: _Tree) -> Const:
    return Const(0.0 if t.op is None else identity_value(t.op, t.dtype), t.dtype)


def _lane(lo: ColumnLowering, array: str, dtype: DType) -> Elem:
    return Elem(array, lo.pl if lo.vec > 1 else Const(0, DType.INT32), dtype)


def _where(cond: Expr, a: Expr, b: Expr, idx: DType) -> Expr:
    return Compute(P.WHERE, (cond, a, b), idx)


# -- outputs --------------------------------------------------------------------------------------
def _store_rows(lo: ColumnLowering, outer: list[Expr]) -> list[Stmt]:
    """The row outputs (kernel 1 stored the others), by the ty == 0 thread of each live row:
    one vector store per output with lanes, else one element."""
    ir, idx = lo.ir, lo.idx
    n_in = len(ir.inputs)
    prologue = prologue_outputs(ir)
    rows_out = [(n_in + j, o) for j, o in enumerate(ir.outputs) if j not in prologue]
    if lo.vec > 1:
        return lo.store_vector_outputs([], rows_out, outer)
    stores: list[Stmt] = []
    offsets: list[Expr] = [Var(f"ro_{t.name}", idx) for t in lo.tensors]
    values = lo.column_values([o.value for _, o in rows_out], offsets, stores)
    for k, o in rows_out:
        stores += store_output(o, values[o.value], offsets[k],
                               lo.guard(k, outer, range(lo.sig.outer_rank)))
    return [If(lo.first_thread(), tuple(stores))]
