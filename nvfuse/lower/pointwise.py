"""Lower a pointwise fusion: (FusionIR, PointwiseSignature) -> kernel IR.

Each thread owns `lanes` consecutive elements of the merged iteration space, starting at
linear index base = (blockIdx.x * blockDim.x + threadIdx.x) * lanes.  It splits `base` into
per-dim indices with the merged sizes, forms each operand's offset from its strides, loads every
input into a register array (one vector transaction when lanes > 1; one scalar for an input that
broadcasts along the innermost dim), computes the fusion DAG once per lane, and stores each
output.  For rank > 1 the schedule guarantees that the innermost size is a multiple of `lanes`,
so a thread's lanes never cross a row; a rank-1 space has one row and its last thread may own
lanes past numel: when base + lanes > numel the thread runs the same code with one element at a
time (lanes 1, scalar accesses), each guarded by e < numel (the tail).  Outputs that broadcast
(stride class "0" on some dim) are stored only by the threads whose index along those dims is 0.

Kernel arguments: the input then output pointers; then numel, the merged sizes without the
outermost (implied by numel), and the "s" strides operand by operand, named as
`nvfuse.schedule.names` spells them (the schedule's launch scalars carry the same names; the
launcher binds them by name), then `seed` for a random kernel.  A fusion with a concatenation (a
ConcatSignature) adds its piece loads and scalars (nvfuse.lower.concat) and skips the plain
load of inputs it reads only through pieces (their plain offset would lie outside them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from typing import cast

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, content_key, needed_nodes
from nvfuse.fusion.prims import LEAVES, REDUCTIONS, Prim
from nvfuse.lower import kir
from nvfuse.lower.index import broadcast_guard, offset, split_index
from nvfuse.lower.values import node_values
from nvfuse.lower.concat import input_aligns, lower_pieces, piece_params
from nvfuse.lower.kir import (
    Assign, Compute, Const, Declare, Elem, Expr, For, If, IndexOp, Load, Param, Random, Special,
    Stmt, Store, Var,
)
from nvfuse.schedule import names
from nvfuse.schedule.concat import ConcatSignature, plain_inputs
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.pointwise import PointwiseSignature


def content_name(prefix: str, ir: FusionIR, signature: object) -> str:
    """A kernel name that depends only on what it computes and its specialization, so equal
    groups anywhere share one kernel (and goldens stay stable)."""
    digest = hashlib.sha256(f"{content_key(ir)}|{signature!r}".encode()).hexdigest()[:12]
    return f"{prefix}_{digest}"


def kernel_name(ir: FusionIR, signature: object) -> str:
    if getattr(signature, "aliased", False):  # not in the signature's repr
        return content_name("nvfuse_pw", ir, f"{signature!r} aliased")
    return content_name("nvfuse_pw", ir, signature)


def _add(a: Expr, b: Expr, t: DType) -> Expr:
    return IndexOp("+", a, b, t)


def _mul(a: Expr, b: Expr, t: DType) -> Expr:
    return IndexOp("*", a, b, t)


def lower_pointwise(ir: FusionIR, sig: PointwiseSignature, block: int) -> kir.Kernel:
    """The kernel IR of `ir` specialized on `sig` with `block` threads per block."""
    idx = sig.index
    lanes = sig.lanes
    cat = cast(ConcatSignature, sig) if sig.kind is ScheduleKind.CONCAT else None
    piece_align = input_aligns(ir, cat) if cat is not None else {}
    restrict = not sig.aliased
    tensors = tuple(
        [kir.TensorParam(i.name, i.dtype, False,
                         max(_align(i.dtype, c, lanes), piece_align.get(k, 1)), restrict)
         for k, (i, c) in enumerate(zip(ir.inputs, sig.inputs))]
        + [kir.TensorParam(o.name, o.dtype, True, _align(o.dtype, c, lanes), restrict)
           for o, c in zip(ir.outputs, sig.outputs)])
    numel = Param(names.NUMEL, idx)
    # the outermost size is implied by numel: only the inner sizes split the linear index
    sizes = [Param(names.size(d), idx) for d in range(1, sig.rank)]
    strides: list[list[Expr]] = []  # per operand, per dim
    scalars: list[Param] = [numel, *sizes]
    for t, classes in zip(tensors, sig.inputs + sig.outputs):
        strides.append(kir.stride_exprs(classes, partial(names.stride, t.name), idx, scalars))
    piece_strides: list[list[Expr]] = []
    if cat is not None:
        piece_strides, piece_scalars = piece_params(ir, cat, idx)
        scalars += piece_scalars
    seed = Param(names.SEED, DType.INT64)
    if ir.random:
        scalars.append(seed)  # a fresh value every launch, drawn from torch's generator
    operands = _Operands(ir, sig, tensors, strides, piece_strides, sizes, seed)

    body: list[Stmt] = []
    base = Var("base", idx)
    thread = _add(_mul(Special("blockIdx.x", idx), Special("blockDim.x", idx), idx),
                  Special("threadIdx.x", idx), idx)
    body.append(Declare(base.name, idx, init=_mul(thread, Const(lanes, idx), idx)))
    inner = tuple(_elements(operands, base, lanes))
    if lanes > 1 and sig.rank == 1 and cat is None:
        # the last thread's lanes may pass numel (the schedule does not make numel a multiple
        # of lanes): it takes its elements one by one, each guarded
        end = _add(base, Const(lanes, idx), idx)
        tail, element = Var("tail", DType.INT32), Var("e", idx)
        one = (Declare(element.name, idx, init=_add(base, Compute(Prim.CAST, (tail,), idx), idx)),
               If(IndexOp("<", element, numel, DType.BOOL),
                  tuple(_elements(operands, element, 1))))
        inner = (If(IndexOp("<=", end, numel, DType.BOOL), inner),
                 If(IndexOp("<", numel, end, DType.BOOL),
                    (For(tail, Const(0, DType.INT32), Const(lanes, DType.INT32),
                         Const(1, DType.INT32), one, rolled=True),)))
    body.append(If(IndexOp("<", base, numel, DType.BOOL), inner))
    grid = IndexOp("/", _add(numel, Const(block * lanes - 1, idx), idx),
                   Const(block * lanes, idx), idx)
    return kir.Kernel(kernel_name(ir, sig), tensors, tuple(scalars), tuple(body), block, grid,
                      idx)


@dataclass(frozen=True)
class _Operands:
    """What `_elements` reads: the fusion, its signature, the pointer and scalar parameters."""

    ir: FusionIR
    sig: PointwiseSignature
    tensors: tuple[kir.TensorParam, ...]
    strides: list[list[Expr]]        # per operand (inputs, outputs), per merged dim
    piece_strides: list[list[Expr]]  # per concatenation piece operand
    sizes: list[Param]               # merged sizes of dims 1..rank-1
    seed: Param


def _elements(ops: _Operands, base: Var, lanes: int) -> list[Stmt]:
    """A thread's work on the `lanes` consecutive elements from linear index `base` (lying in
    one row): split the index, load the inputs (one vector per input when lanes > 1), compute
    every lane, store the outputs."""
    ir, sig, tensors, idx = ops.ir, ops.sig, ops.tensors, ops.sig.index
    n_in = len(ir.inputs)
    cat = cast(ConcatSignature, sig) if sig.kind is ScheduleKind.CONCAT else None
    plain = plain_inputs(ir) if cat is not None else set(range(n_in))
    inner: list[Stmt] = []
    index_vars = split_index(base, ops.sizes, sig.rank, idx, inner)
    offsets: list[Var] = []
    for k, (t, row) in enumerate(zip(tensors, ops.strides)):
        off = Var(f"off_{t.name}", idx)
        offsets.append(off)
        if k < n_in and k not in plain:
            continue  # read only through its pieces
        inner.append(Declare(off.name, idx, init=offset(index_vars, row, idx)))

    # loads: a register array per input (one element when it broadcasts along the inner dim)
    in_lanes = []
    for k, (t, classes) in enumerate(zip(tensors[:n_in], sig.inputs)):
        n = _lanes_of(classes, lanes)
        in_lanes.append(n)
        if k not in plain:
            continue
        inner.append(Declare(f"r_{t.name}", t.dtype, lanes=n))
        inner.append(Load(f"r_{t.name}", t.dtype, t.name, offsets[k], n, vector=n > 1))
    lane = Var("lane", DType.INT32)
    leaves: dict[int, Expr] = {}
    if cat is not None:
        stmts, leaves = lower_pieces(ir, cat, index_vars, ops.piece_strides, idx, lane)
        inner += stmts
    # one register per lane; one for an output broadcast along the inner dim (all lanes
    # compute its one value of the row: lane 0's is stored)
    out_lanes = [_lanes_of(classes, lanes) for classes in sig.outputs]
    for t, n in zip(tensors[n_in:], out_lanes):
        inner.append(Declare(f"r_{t.name}", t.dtype, lanes=n))

    element = Compute(Prim.CAST, (_add(base, Compute(Prim.CAST, (lane,), idx), idx),),
                      DType.INT64)
    before, lane_body = _lane_body(ir, lane, in_lanes, out_lanes, element, ops.seed, leaves,
                                   lanes)
    inner += before
    inner.append(For(lane, Const(0, DType.INT32), Const(lanes, DType.INT32),
                     Const(1, DType.INT32), tuple(lane_body), unroll=True))
    for k, (t, classes) in enumerate(zip(tensors[n_in:], sig.outputs)):
        n = out_lanes[k]
        store: Stmt = Store(t.name, t.dtype, offsets[n_in + k], f"r_{t.name}", n, vector=n > 1)
        guard = broadcast_guard(classes, index_vars, idx)
        inner.append(If(guard, (store,)) if guard is not None else store)
    return inner


def _lanes_of(classes: str, lanes: int) -> int:
    """The elements a thread accesses per operand access: `lanes` along a unit-stride inner
    dim, else 1 (an operand broadcast along it)."""
    return lanes if classes and classes[-1] == "1" else 1


def _align(dtype: DType, classes: str, lanes: int) -> int:
    return dtype.itemsize * _lanes_of(classes, lanes)


def _lane_body(ir: FusionIR, lane: Var, in_lanes: list[int], out_lanes: list[int],
               element: Expr, seed: Param, leaves: dict[int, Expr], lanes: int
               ) -> tuple[list[Stmt], list[Stmt]]:
    """One lane's computation: every node the outputs need, in order, as registers.
    `element` is the lane's linear index in the iteration space (what RAND draws for);
    `leaves` holds the expressions of the concatenation leaves; `out_lanes` the registers of
    each output (1: broadcast along the inner dim, lane 0 assigns it).  Returns (statements
    before the lane loop, the loop's body): with `lanes` > 1, the nodes that are the same in
    every lane (`lane_invariant`) are computed once, before the loop."""
    def leaf(index: int, out: list[Stmt]) -> Expr | None:
        node = ir.nodes[index]
        if index in leaves:
            return leaves[index]
        if node.op is Prim.LOAD:
            k = int(node.attr)  # type: ignore[arg-type]
            at: Expr = lane if in_lanes[k] > 1 else Const(0, DType.INT32)
            return Elem(f"r_{ir.inputs[k].name}", at, node.dtype)
        if node.op is Prim.RAND:
            out.append(Declare(f"v{index}", node.dtype,
                               init=Random(element, seed, int(node.attr))))  # type: ignore
            return Var(f"v{index}", node.dtype)
        return None

    needed = sorted(needed_nodes(ir.nodes, ir.outputs))
    same = lane_invariant(ir, needed, in_lanes, leaves) if lanes > 1 else set()
    before: list[Stmt] = []
    exprs = node_values(ir, [i for i in needed if i in same], {}, before, leaf)
    stmts: list[Stmt] = []
    exprs = node_values(ir, [i for i in needed if i not in same], exprs, stmts, leaf)
    for out, n in zip(ir.outputs, out_lanes):
        value = exprs[out.value]
        if value.dtype is not out.dtype:
            value = Compute(Prim.CAST, (value,), out.dtype)
        if n > 1 or lanes == 1:
            stmts.append(Assign(Elem(f"r_{out.name}", lane, out.dtype), value))
        else:  # broadcast along the inner dim: lane 0's value (the element at inner index 0)
            stmts.append(If(IndexOp("==", lane, Const(0, DType.INT32), DType.BOOL), (
                Assign(Elem(f"r_{out.name}", Const(0, DType.INT32), out.dtype), value),)))
    return before, stmts


def lane_invariant(ir: FusionIR, needed: list[int], in_lanes: list[int],
                   leaves: dict[int, Expr]) -> set[int]:
    """The computed nodes of `needed` (ascending) that are equal in every lane of a thread:
    built only from literals and inputs loaded as one element (`in_lanes` 1: broadcast along
    the inner dim), never from a random draw or a concatenation leaf."""
    same: set[int] = set()
    for index in needed:
        node = ir.nodes[index]
        if index in leaves or node.op in REDUCTIONS:
            continue
        if node.op is Prim.CONST:
            same.add(index)
        elif node.op is Prim.LOAD:
            if in_lanes[int(node.attr)] == 1:  # type: ignore[arg-type]
                same.add(index)
        elif node.op not in LEAVES and all(a in same for a in node.args):
            same.add(index)
    return same


