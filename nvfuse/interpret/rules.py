"""Interpreter rules for registers, arithmetic and control flow.

Input: expressions (Const, Var, Param, Special, Elem, IndexOp, Compute) and statements (Comment,
Declare, Assign, If, For) of the kernel IR.  Output: values, register updates and mask changes on
the `Machine` (see state.py); the rules register themselves on import.

Divergence is a mask: `If` narrows it, assignments merge under it.  A `For` with uniform bounds
runs once with a Python integer loop variable; one with per-thread bounds runs until no active
thread is left, narrowing the mask as threads finish.
"""

from __future__ import annotations

import numpy as np

from nvfuse.fusion.prims import Prim
from nvfuse.interpret.fusion_eval import literal
from nvfuse.interpret.random import rand_uniform
from nvfuse.interpret.prims_np import apply_prim, cast
from nvfuse.interpret.shared import store_shared
from nvfuse.interpret.state import (
    MISSING,
    Machine,
    RegArray,
    Value,
    assign_var,
    convert,
    evaluate_expr,
    execute_body,
    is_uniform,
    merge,
    poison,
    read_var,
    reg_array,
    register_expr,
    register_stmt,
    restore,
)
from nvfuse.lower.kir import (
    Assign,
    Comment,
    Compute,
    Random,
    Const,
    Declare,
    Elem,
    For,
    If,
    IndexOp,
    Param,
    SharedElem,
    Special,
    Var,
)

# -- expressions ---------------------------------------------------------------------------


@register_expr(Const)
def _const(m: Machine, e: Const) -> Value:
    return literal(e.value, e.dtype)


@register_expr(Var)
def _var(m: Machine, e: Var) -> Value:
    return read_var(m, e)


@register_expr(Param)
def _param(m: Machine, e: Param) -> Value:
    try:
        return m.params[e.name]
    except KeyError:
        raise m.fail(f"unknown scalar parameter {e.name!r}") from None


@register_expr(Special)
def _special(m: Machine, e: Special) -> Value:
    key = (e.name, e.dtype)
    if key not in m.specials:
        block, storage = m.kernel.block, e.dtype.np_storage
        ids = np.arange(m.threads, dtype=np.int64)
        table = {
            "threadIdx.x": lambda: (ids % block).astype(storage),
            "blockIdx.x": lambda: (ids // block).astype(storage),
            "blockDim.x": lambda: storage(block),
            "gridDim.x": lambda: storage(m.grid),
        }
        if e.name not in table:
            raise m.fail(f"unknown special {e.name!r}")
        m.specials[key] = table[e.name]()
    return m.specials[key]


@register_expr(Elem)
def _elem(m: Machine, e: Elem) -> Value:
    reg = reg_array(m, e.array)
    lane = evaluate_expr(m, e.lane)
    if is_uniform(lane):
        return reg.columns[_lane_index(m, reg, e.array, int(lane))]
    # A per-thread lane: pick each thread's column (inactive threads' lanes are clamped).
    lanes = np.clip(np.asarray(lane, dtype=np.int64), 0, len(reg.columns) - 1)
    _check_lanes(m, reg, e.array, np.asarray(lane, dtype=np.int64))
    stacked = np.stack([np.broadcast_to(c, (m.threads,)) for c in reg.columns])
    return stacked[lanes, np.arange(m.threads)]


def _lane_index(m: Machine, reg: RegArray, name: str, lane: int) -> int:
    if not 0 <= lane < len(reg.columns):
        raise m.fail(f"lane {lane} out of range for register array {name}[{len(reg.columns)}]")
    return lane


def _check_lanes(m: Machine, reg: RegArray, name: str, lanes: np.ndarray) -> None:
    bad = (lanes < 0) | (lanes >= len(reg.columns))
    if m.mask is not None:
        bad &= m.mask
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise m.fail(f"{m.where(t)}: lane {int(lanes[t])} out of range for {name}"
                     f"[{len(reg.columns)}]")


_INDEX_PRIMS = {"+": Prim.ADD, "-": Prim.SUB, "*": Prim.MUL, "/": Prim.DIV_TRUNC,
                "%": Prim.FMOD}
_INDEX_COMPARE = {"<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}


@register_expr(IndexOp)
def _index_op(m: Machine, e: IndexOp) -> Value:
    a, b = evaluate_expr(m, e.a), evaluate_expr(m, e.b)
    if e.op in _INDEX_PRIMS:
        # C arithmetic in the index dtype: wraps, `/` truncates and `%` keeps the dividend's
        # sign (for the non-negative operands lowering produces, floor and trunc agree).
        return apply_prim(_INDEX_PRIMS[e.op], [a, b], e.dtype, e.dtype)
    if e.op in _INDEX_COMPARE:
        return _INDEX_COMPARE[e.op](a, b)
    if e.op == "&&":
        return np.logical_and(np.asarray(a) != 0, np.asarray(b) != 0)
    if e.op == "||":
        return np.logical_or(np.asarray(a) != 0, np.asarray(b) != 0)
    raise m.fail(f"unknown index operator {e.op!r}")


@register_expr(Compute)
def _compute(m: Machine, e: Compute) -> Value:
    args = [evaluate_expr(m, a) for a in e.args]
    if e.prim is Prim.CAST:
        return cast(args[0], e.args[0].dtype, e.dtype)
    operand = (e.args[1] if e.prim is Prim.WHERE else e.args[0]).dtype
    if operand.is_reduced_float:
        raise m.fail(f"{e.prim.value} computes in {operand}; cast to float32 first")
    return apply_prim(e.prim, args, operand, e.dtype)


@register_expr(Random)
def _random(m: Machine, e: Random) -> Value:
    index = np.broadcast_to(np.asarray(evaluate_expr(m, e.index), dtype=np.int64), (m.threads,))
    seed = int(np.asarray(evaluate_expr(m, e.seed)).reshape(-1)[0])  # uniform: a kernel arg
    return rand_uniform(index, seed, e.stream)


# -- statements ----------------------------------------------------------------------------


@register_stmt(Comment)
def _comment(m: Machine, s: Comment) -> None:
    return None


@register_stmt(Declare)
def _declare(m: Machine, s: Declare) -> None:
    # A fresh declaration: inactive threads' values are never observable, so no merge.
    if s.init is not None:
        value = convert(evaluate_expr(m, s.init), s.init.dtype, s.dtype)
    else:
        value = poison(s.dtype)
    if s.lanes is None:
        m.values[s.name] = value
    else:
        m.values[s.name] = RegArray(s.dtype, [value] * s.lanes)


@register_stmt(Assign)
def _assign(m: Machine, s: Assign) -> None:
    value = evaluate_expr(m, s.value)
    target = s.target
    if isinstance(target, Var):
        assign_var(m, target, value, s.value.dtype)
        return
    if isinstance(target, SharedElem):
        store_shared(m, target, convert(value, s.value.dtype, target.dtype))
        return
    reg = reg_array(m, target.array)
    value = convert(value, s.value.dtype, reg.dtype)
    lane = evaluate_expr(m, target.lane)
    columns = list(reg.columns)
    if is_uniform(lane):
        index = _lane_index(m, reg, target.array, int(lane))
        columns[index] = merge(m, value, columns[index], reg.dtype)
    else:
        lanes = np.asarray(lane, dtype=np.int64)
        _check_lanes(m, reg, target.array, lanes)
        active = m.active()
        for index, old in enumerate(columns):
            hit = active & (lanes == index)
            merged = np.asarray(np.where(hit, value, old))
            columns[index] = merged.astype(reg.dtype.np_storage, copy=False)
    m.values[target.array] = RegArray(reg.dtype, columns)


@register_stmt(If)
def _if(m: Machine, s: If) -> None:
    cond = np.asarray(evaluate_expr(m, s.cond)) != 0
    outer = m.mask
    if cond.ndim == 0:
        if bool(cond):
            execute_body(m, s.body)
        return
    inner = cond if outer is None else outer & cond
    if not inner.any():
        return
    m.mask = None if inner.all() else inner
    try:
        execute_body(m, s.body)
    finally:
        m.mask = outer


@register_stmt(For)
def _for(m: Machine, s: For) -> None:
    start, stop, step = (evaluate_expr(m, x) for x in (s.start, s.stop, s.step))
    saved = {s.var.name: m.values.get(s.var.name, MISSING)}
    try:
        if all(is_uniform(x) for x in (start, stop, step)):
            _uniform_loop(m, s, int(start), int(stop), int(step))
        else:
            _divergent_loop(m, s, start, stop, step)
    finally:
        restore(m, saved)


def _uniform_loop(m: Machine, s: For, start: int, stop: int, step: int) -> None:
    if start >= stop:  # C tests the condition first: an empty loop's step is never used
        return
    if step <= 0:
        raise m.fail(f"loop over {s.var.name} with step {step} never ends")
    storage = s.var.dtype.np_storage
    for i in range(start, stop, step):
        m.values[s.var.name] = storage(i)
        execute_body(m, s.body)


def _divergent_loop(m: Machine, s: For, start: Value, stop: Value, step: Value) -> None:
    storage = s.var.dtype.np_storage
    outer = m.mask
    var: np.ndarray = np.broadcast_to(np.asarray(start, dtype=storage), (m.threads,))
    step_arr: np.ndarray = np.asarray(step, dtype=storage)
    try:
        while True:
            live = var < stop
            active = live if outer is None else live & outer
            if not active.any():
                return
            if np.any(np.broadcast_to(step_arr <= 0, (m.threads,)) & active):
                raise m.fail(f"loop over {s.var.name} with a non-positive step never ends")
            m.mask = None if active.all() else active
            m.values[s.var.name] = var
            execute_body(m, s.body)
            # The body may assign the loop variable, as C allows.
            current: np.ndarray = np.asarray(m.values[s.var.name], dtype=storage)
            with np.errstate(over="ignore"):
                var = np.broadcast_to(current + step_arr, (m.threads,)).astype(storage)
    finally:
        m.mask = outer
