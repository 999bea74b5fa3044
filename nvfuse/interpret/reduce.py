"""Interpreter rules for cross-thread reductions: `WarpReduce`, `BlockReduce`, `WelfordReduce`,
`ArgReduce`.

Input: one of those statements and the `Machine`.  Output: the destination register(s) of every
participating thread hold the reduction over its warp or block.

The combine order is exactly that of codegen_templates/nvf_reduce.cuh, so integer results are
bit-identical to the device (they would be in any order: wrapping add / mul, max and min are
associative) and float results are too as far as numpy and the device round alike (the device
may contract Welford's multiply-adds into FMAs; tests use tolerances for floats):
- warp: xor butterfly, offsets 16, 8, 4, 2, 1; each pair of lanes computes
  combine(lower lane's value, upper lane's value);
- block: warp allreduce; lane 0 of each warp provides the warp's partial; every warp then
  reduces the block's partials padded with the identity to 32 lanes, with the same butterfly.
NaN semantics are those of prims_np's MAXIMUM / MINIMUM (NaN propagates), shared with the
pointwise prims.  ArgReduce pairs combine with `arg_combine` (nvf_arg_prefer): the lower lane's
pair unless the upper lane's beats it -- the same pair the device's lanes keep, since the rule
is a strict order on pairs with distinct indices.

Contract checks (InterpretError): the block is a multiple of 32 (at most 1024); a warp
reduction is reached by all or none of each warp's threads, a block reduction by all or none
of each block's (the helpers use full-warp shuffles and barriers); a block reduction's scratch
is a declared shared array of the value dtype, large enough, and untouched since the last
barrier.  Afterwards the scratch holds unspecified values (poison here) and, because the helper
contains barriers, all shared accesses before it are ordered before those after it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nvfuse.dtypes import DType
from nvfuse.interpret.fusion_eval import literal
from nvfuse.interpret.prims_np import apply_prim
from nvfuse.interpret.shared import barrier, check_quiet, scrub
from nvfuse.interpret.state import (
    Machine,
    assign_var,
    evaluate_expr,
    register_stmt,
    uniform_groups,
)
from nvfuse.lower.kir import (
    ARG_NO_INDEX,
    ArgReduce,
    combine_prim,
    identity_value,
    BlockReduce,
    Expr,
    ReduceOp,
    ReduceScope,
    WarpReduce,
    WelfordReduce,
)

WARP = 32
MAX_BLOCK = 1024

State = tuple[np.ndarray, ...]  # one array per component (1 for plain ops, 3 for Welford)
Combine = Callable[[State, State], State]


def identity(op: ReduceOp, dtype: DType) -> np.ndarray:
    """The value a thread with no data passes (the padding of the block's second stage)."""
    return literal(identity_value(op, dtype), dtype)


def scalar_combine(op: ReduceOp, dtype: DType) -> Combine:
    prim = combine_prim(op)
    return lambda lo, hi: (apply_prim(prim, [lo[0], hi[0]], dtype, dtype),)


def welford_combine(a: State, b: State) -> State:
    """nvf_welford_combine, operation for operation (Chan et al.)."""
    a_mean, a_m2, a_n = a
    b_mean, b_m2, b_n = b
    n = a_n + b_n
    # an empty side gives the other side as it is; the update's 0 / 0 and inf * 0 of empty
    # sides are discarded by the wheres
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        b_share = b_n / n
        delta = b_mean - a_mean
        chan = (a_mean + delta * b_share, a_m2 + b_m2 + delta * delta * a_n * b_share, n)
    a_empty, b_empty = a_n == 0, b_n == 0
    return tuple(np.where(a_empty, bv, np.where(b_empty, av, cv))
                 for av, bv, cv in zip(a, b, chan))


def butterfly(values: State, combine: Combine) -> State:
    """Warp allreduce over the last axis (32 lanes), in the device's order."""
    lane = np.arange(WARP)
    offset = WARP // 2
    while offset:
        upper = (lane & offset) != 0
        other = tuple(v[..., lane ^ offset] for v in values)
        lo = tuple(np.where(upper, o, v) for v, o in zip(values, other))
        hi = tuple(np.where(upper, v, o) for v, o in zip(values, other))
        values = combine(lo, hi)
        offset //= 2
    return values


def _warp_allreduce(m: Machine, values: State, combine: Combine) -> State:
    return tuple(v.reshape(-1) for v in butterfly(
        tuple(v.reshape(-1, WARP) for v in values), combine))


def _block_allreduce(m: Machine, values: State, combine: Combine, ident: State) -> State:
    warps = m.kernel.block // WARP
    per_warp = butterfly(tuple(v.reshape(m.grid, warps, WARP) for v in values), combine)
    partials = tuple(p[:, :, 0] for p in per_warp)  # lane 0 writes scratch[warp]
    padding = WARP - warps
    padded = tuple(np.concatenate([p, np.full((m.grid, padding), i, dtype=p.dtype)], axis=1)
                   for p, i in zip(partials, ident))
    result = butterfly(padded, combine)  # the same in every warp: (grid, lane)
    return tuple(np.broadcast_to(r[:, None, :], (m.grid, warps, WARP)).reshape(-1)
                 for r in result)


def sources(m: Machine, exprs: tuple[Expr, ...], dtype: DType) -> State:
    """Each of `exprs` as a (threads,) array of `dtype`'s storage type."""
    return tuple(np.broadcast_to(np.asarray(evaluate_expr(m, e), dtype=dtype.np_storage),
                                 (m.threads,)) for e in exprs)


def _check_block(m: Machine, what: str) -> None:
    block = m.kernel.block
    if block % WARP or block > MAX_BLOCK:
        raise m.fail(f"{what} needs a block that is a multiple of {WARP} and at most "
                     f"{MAX_BLOCK}, got {block}")


def _reduce(m: Machine, scope: ReduceScope, exprs: tuple[Expr, ...], dtype: DType,
            combine: Combine, ident: State, scratch: str | None, what: str) -> State:
    """Evaluate `exprs`, allreduce them over `scope` and return the per-thread results."""
    _check_block(m, what)
    if scope is ReduceScope.WARP:
        uniform_groups(m, WARP, "warp", what)
        return _warp_allreduce(m, sources(m, exprs, dtype), combine)
    blocks = uniform_groups(m, m.kernel.block, "block", what)
    values = sources(m, exprs, dtype)  # before the helper writes its scratch, as on the device
    assert scratch is not None  # the kir node guarantees it
    arr = check_quiet(m, scratch, blocks)
    need = len(exprs) * (m.kernel.block // WARP)
    if arr.dtype is not dtype or arr.size < need:
        raise m.fail(f"{what}: scratch {scratch} is {arr.dtype}[{arr.size}], needs "
                     f"{dtype}[{need}] or more")
    result = _block_allreduce(m, values, combine, ident)
    scrub(arr, blocks)
    barrier(m, blocks)
    return result


@register_stmt(WarpReduce)
def _warp_reduce(m: Machine, s: WarpReduce) -> None:
    dtype = s.dst.dtype
    (value,) = _reduce(m, ReduceScope.WARP, (s.src,), dtype, scalar_combine(s.op, dtype),
                       (identity(s.op, dtype),), None, f"warp {s.op.value} reduction")
    assign_var(m, s.dst, value, dtype)


@register_stmt(BlockReduce)
def _block_reduce(m: Machine, s: BlockReduce) -> None:
    dtype = s.dst.dtype
    (value,) = _reduce(m, ReduceScope.BLOCK, (s.src,), dtype, scalar_combine(s.op, dtype),
                       (identity(s.op, dtype),), s.scratch, f"block {s.op.value} reduction")
    assign_var(m, s.dst, value, dtype)


@register_stmt(WelfordReduce)
def _welford_reduce(m: Machine, s: WelfordReduce) -> None:
    dtype = s.mean.dtype
    zero = literal(0, dtype)
    results = _reduce(m, s.scope, (s.src_mean, s.src_m2, s.src_n), dtype, welford_combine,
                      (zero, zero, zero), s.scratch, f"{s.scope.value} Welford reduction")
    for var, value in zip((s.mean, s.m2, s.n), results):
        assign_var(m, var, value, dtype)


def arg_prefer(a: State, b: State, is_max: bool) -> np.ndarray:
    """Where pair a = (values, indices) beats pair b (nvf_arg_prefer): a NaN beats any number,
    equal values (or two NaNs) go to the smaller index, else the larger (max) or smaller."""
    (av, ai), (bv, bi) = a, b
    a_nan, b_nan = av != av, bv != bv  # the NaN test, also for ints
    with np.errstate(invalid="ignore"):
        better = av > bv if is_max else av < bv
        numbers = np.where(av == bv, ai < bi, better)
    return np.where(a_nan | b_nan, a_nan & (~b_nan | (ai < bi)), numbers)


def arg_combine(is_max: bool) -> Combine:
    def combine(lo: State, hi: State) -> State:
        keep = ~arg_prefer(hi, lo, is_max)
        return tuple(np.where(keep, x, y) for x, y in zip(lo, hi))
    return combine


@register_stmt(ArgReduce)
def _arg_reduce(m: Machine, s: ArgReduce) -> None:
    what = f"{s.scope.value} arg{s.op.value} reduction"
    _check_block(m, what)
    dtype, i64 = s.value.dtype, DType.INT64
    combine = arg_combine(s.op is ReduceOp.MAX)
    values = sources(m, (s.src_value,), dtype) + sources(m, (s.src_index,), i64)
    if s.scope is ReduceScope.WARP:
        uniform_groups(m, WARP, "warp", what)
        result = _warp_allreduce(m, values, combine)
    else:
        blocks = uniform_groups(m, m.kernel.block, "block", what)
        need = m.kernel.block // WARP
        arrays = []
        for name, dt in ((s.scratch, dtype), (s.index_scratch, i64)):
            assert name is not None  # the kir node guarantees it
            arr = check_quiet(m, name, blocks)
            if arr.dtype is not dt or arr.size < need:
                raise m.fail(f"{what}: scratch {name} is {arr.dtype}[{arr.size}], needs "
                             f"{dt}[{need}] or more")
            arrays.append(arr)
        ident = (identity(s.op, dtype), literal(ARG_NO_INDEX, i64))
        result = _block_allreduce(m, values, combine, ident)
        for arr in arrays:
            scrub(arr, blocks)
        barrier(m, blocks)
    assign_var(m, s.value, result[0], dtype)
    assign_var(m, s.index, result[1], i64)
