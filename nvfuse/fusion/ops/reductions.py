"""Lowerings of row reductions: sum, mean, amax, amin, prod, and softmax / log_softmax written
as the reductions they are made of.

Input: a `Call` whose `self` is a `Val` of known rank (`Val.ndim`).  Output: the result Val;
reductions become REDUCE_* prims over any set of dims (`Builder.reduce`, dims negative and
right-aligned), whose results are row values (keepdim shapes; whether eager keeps the dims only
changes the output's shape, which `nvfuse.fusion.build` records).  A 0-dim input's sum,
prod, amax, amin, mean, any and all are that element in eager's dtype.  Raises Unsupported
for other reductions of a 0-dim input, for a group that already reduces other dims, and for
results nvfuse does not reduce into (bool sums).

Numerics follow eager's CUDA reductions (aten/src/ATen/native/cuda/Reduce*.cu):
- accumulate float16/bfloat16/float32 in float32, float64 in float64, every integer and bool in
  int64 (sum and prod of integers promote to int64 as eager does; amax/amin of narrow integers
  are exact in int64 and converted back);
- a `dtype=` argument converts the input first, as eager does;
- mean = sum / number of reduced elements, that number being a size (ROW_NUMEL, a kernel
  argument), never a literal, so a new row length reuses the kernel;
- logsumexp = log(sum(exp(x - m))) + m with m = amax(x), an infinite m replaced by 0 as eager
  does (an all -inf row gives -inf, a +inf element gives +inf, NaN propagates);
- any / all count the nonzero (zero) elements in int64: an empty row gives False (True);
- amax / amin propagate NaN; softmax (aten._softmax, and TorchScript's aten.softmax.int) =
  exp(x - amax) / sum(exp(x - amax)), log_softmax = x - amax - log(sum(exp(x - amax))), in
  float32 for halves.
"""

from __future__ import annotations

from typing import Any

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.registry import F32, F64, Call, held, op, ops, register

P = Prim


def accumulator(dt: DType) -> DType:
    """The dtype a reduction of eager dtype `dt` accumulates in (see the module docstring)."""
    if dt.is_float:
        return F64 if dt is F64 else F32
    return DType.INT64


def reduced_dims(x: Val, dims: Any) -> tuple[int, ...]:
    """The dims `dims` (an int, a list, or None / [] for all dims) of `x` as negative,
    right-aligned, sorted dims (how the fusion IR names them: independent of the iteration
    space's rank).  Raises Unsupported for a 0-dim or unknown-rank `x` and bad dims."""
    n = x.ndim
    if n < 0:
        raise Unsupported("reduction of a tensor of unknown rank")
    if n == 0:
        raise Unsupported("reduction of a 0-dim tensor")
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        return tuple(range(-n, 0))
    listed = [dims] if isinstance(dims, int) else list(dims)
    if not all(isinstance(d, int) and -n <= d < n for d in listed):
        raise Unsupported(f"reduction dims {dims!r} out of range for rank {n}")
    return tuple(sorted({d % n - n for d in listed}))


def _reduce(c: Call, prim: Prim, dims: Any) -> Val:
    """`prim` of `self` converted to eager's result dtype, over `dims`."""
    x = c.tensor("self")
    out = c.out
    if out is DType.BOOL and prim in (P.REDUCE_SUM, P.REDUCE_PROD):
        raise Unsupported(f"{c.target} into bool")
    # amax / amin of a half prologue: the max of the rounded values (the same value as rounding
    # the max, and the same operand as max.dim's argmax, so both ride one pair reduction)
    v = held(c, x) if prim in (P.REDUCE_MAX, P.REDUCE_MIN) else c.value(x, out)
    acc = accumulator(out)
    if _zero_dim(x, dims):  # a reduction of one element is that element (in eager's dtype)
        return c.b.cast(v, acc)
    return c.b.reduce(prim, c.b.cast(v, acc), reduced_dims(x, dims))


def _zero_dim(x: Val, dims: Any) -> bool:
    """Whether `x` is 0-dim and `dims` names no dim or its one pseudo-dim (0 or -1)."""
    listed = [] if dims is None else [dims] if isinstance(dims, int) else list(dims)
    return x.ndim == 0 and all(d in (0, -1) for d in listed)


def _dims(c: Call, name: str = "dim") -> Any:
    return c.args.get(name)


@register(*ops("sum", "dim_IntList", "default"))
def _sum(c: Call) -> Val:
    return _reduce(c, P.REDUCE_SUM, _dims(c))


@register(*ops("prod", "dim_int", "default"))
def _prod(c: Call) -> Val:
    return _reduce(c, P.REDUCE_PROD, _dims(c))


@register(op("amax"), op("max", "default"))  # max(): amax over every dim
def _amax(c: Call) -> Val:
    return _reduce(c, P.REDUCE_MAX, _dims(c))


@register(op("amin"), op("min", "default"))
def _amin(c: Call) -> Val:
    return _reduce(c, P.REDUCE_MIN, _dims(c))


@register(*ops("mean", "dim", "default"))
def _mean(c: Call) -> Val:
    c.float_out()  # eager refuses integer means without a float dtype=
    total = _reduce(c, P.REDUCE_SUM, _dims(c))
    if _zero_dim(c.tensor("self"), _dims(c)):
        return total
    count = c.b.cast(c.b.row_numel(c.b.reduce_axes), total.dtype)
    return c.p(P.DIV, total, count)


def _any_all(c: Call, all_: bool) -> Val:
    """any / all: how many elements are nonzero (all: zero), counted in int64 -- an empty row
    counts 0, so any is False and all True, as eager's; NaN counts as nonzero."""
    x = c.tensor("self")
    if c.out is not DType.BOOL:
        raise Unsupported(f"{c.target} into {c.out}")  # uint8 inputs reduce into uint8
    v, zero = c.value(x, x.eager), c.b.const(0, x.eager)
    if _zero_dim(x, _dims(c)):  # one element: any and all are both whether it is nonzero
        return c.p(P.NE, v, zero)
    test = c.p(P.EQ if all_ else P.NE, v, zero)
    count = c.b.reduce(P.REDUCE_SUM, c.b.cast(test, DType.INT64), reduced_dims(x, _dims(c)))
    zero = c.b.const(0, DType.INT64)
    return c.p(P.EQ if all_ else P.NE, count, zero)


register(*ops("any", "dim", "dims", "default"))(lambda c: _any_all(c, False))
register(*ops("all", "dim", "dims", "default"))(lambda c: _any_all(c, True))


def _softmax_parts(c: Call) -> tuple[Val, Val, Val]:
    """(x, x - amax, sum(exp(x - amax))) in the compute dtype, over its one dim."""
    x = c.tensor("self")
    if not isinstance(c["dim"], int):
        raise Unsupported("softmax over more than one dim")
    dims = reduced_dims(x, c["dim"])
    if not c.out.is_float or not x.eager.is_float:
        raise Unsupported(f"{c.target} on {x.eager} -> {c.out}")
    dt = accumulator(c.out)
    xv = c.b.cast(c.value(x, c.out), dt)  # softmax.int's dtype= converts the input first
    peak = c.b.reduce(P.REDUCE_MAX, xv, dims)
    shifted = c.p(P.SUB, xv, peak)
    total = c.b.reduce(P.REDUCE_SUM, c.p(P.EXP, shifted), dims)
    return xv, shifted, total


@register(op("_softmax"), op("softmax", "int"))
def _softmax(c: Call) -> Val:
    _, shifted, total = _softmax_parts(c)
    return c.p(P.DIV, c.p(P.EXP, shifted), total)


@register(op("_log_softmax"), op("log_softmax", "int"))
def _log_softmax(c: Call) -> Val:
    _, shifted, total = _softmax_parts(c)
    return c.p(P.SUB, shifted, c.p(P.LOG, total))


@register(op("logsumexp"))
def _logsumexp(c: Call) -> Val:
    x = c.tensor("self")
    k = reduced_dims(x, c["dim"])
    if not c.out.is_float:
        raise Unsupported(f"logsumexp into {c.out}")
    b = c.b
    dt = accumulator(c.out)
    xv = b.cast(c.value(x, c.out), dt)
    peak = b.reduce(P.REDUCE_MAX, xv, k)
    # eager: an infinite max is replaced by 0, so exp(x - m) stays defined
    infinite = b.prim(P.EQ, b.prim(P.ABS, peak), b.const(float("inf"), dt))
    shift = b.prim(P.WHERE, infinite, b.const(0.0, dt), peak)
    total = b.reduce(P.REDUCE_SUM, b.prim(P.EXP, b.prim(P.SUB, xv, shift)), k)
    return b.prim(P.ADD, b.prim(P.LOG, total), shift)
