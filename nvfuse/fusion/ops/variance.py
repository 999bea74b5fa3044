"""Lowerings of the variance family: var and std with any `correction` (and the legacy
`unbiased` overloads), over any dims, keepdim either way.

Input: a `Call` whose `self` is a floating-point `Val` of known rank.  Output: the result Val,
a row value: var = m2 / max(0, n - correction), std = sqrt(var), where m2 is REDUCE_M2 (the
sum of squared deviations from the row mean, one Welford pass -- see nvfuse/fusion/prims.py)
and n is ROW_NUMEL (a kernel argument, so a new row length reuses the kernel).  As eager's
CUDA kernels: float16/bfloat16 computed in float32 and rounded once, float64 in float64, a row
with n <= correction gives m2 / 0 (nan for a constant row, else inf).  Raises Unsupported for
non-float inputs (eager refuses them too).

aten.layer_norm (single output: what TorchScript graphs hold; FX traces decompose it first):
y = (x - mean) * rsqrt(var(correction=0) + eps) [* weight] [+ bias] over the trailing
normalized dims, in float32 for halves, mean and var from one Welford pass over the row.

var_mean / std_mean return two tensors; nvfuse/frontend/fx.py decomposes them into var (or
std) and mean calls, which land here and in nvfuse/fusion/ops/reductions.py.
"""

from __future__ import annotations

from typing import Any

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.reductions import accumulator, reduced_dims
from nvfuse.fusion.ops.registry import Call, op, register

P = Prim


def _correction(c: Call) -> float:
    """The correction of any overload: `correction` (None = 1), or `unbiased` (True = 1)."""
    if "correction" in c.args:
        value = c.args["correction"]
        return 1.0 if value is None else float(value)
    return 1.0 if c.args.get("unbiased", True) else 0.0


def variance(c: Call, dims: Any, correction: float) -> Val:
    """var(self) over `dims` in the accumulator dtype of eager's result dtype."""
    x = c.tensor("self")
    out = c.float_out()
    if not x.eager.is_float:
        raise Unsupported(f"{c.target} of {x.eager}")
    k = reduced_dims(x, dims)
    acc = accumulator(out)
    m2 = c.b.reduce(P.REDUCE_M2, c.b.cast(c.value(x, out), acc), k)
    n = c.b.cast(c.b.row_numel(k), acc)
    divisor = c.p(P.MAXIMUM, c.p(P.SUB, n, c.b.const(correction, acc)), c.b.const(0.0, acc))
    return c.p(P.DIV, m2, divisor)


@register(op("var", "correction"), op("var", "dim"), op("var", "default"))
def _var(c: Call) -> Val:
    return variance(c, c.args.get("dim"), _correction(c))


@register(op("std", "correction"), op("std", "dim"), op("std", "default"))
def _std(c: Call) -> Val:
    return c.p(P.SQRT, variance(c, c.args.get("dim"), _correction(c)))


def _affine_operand(c: Call, name: str, acc: DType) -> Val | None:
    w = c.args.get(name)
    if w is None:
        return None
    if not isinstance(w, Val):
        raise Unsupported(f"{c.target}: {name} is not a fused tensor")
    return c.b.cast(c.value(w, w.eager), acc)


@register(op("layer_norm"))
def _layer_norm(c: Call) -> Val:
    x = c.tensor("input")
    out = c.float_out()
    shape = c["normalized_shape"]
    if not x.eager.is_float or not isinstance(shape, (list, tuple)) or not shape:
        raise Unsupported(f"{c.target} of {x.eager} over {shape!r}")
    if x.ndim < len(shape):
        raise Unsupported(f"{c.target}: normalized_shape {shape!r} longer than the input")
    k = len(shape)
    acc = accumulator(out)
    xv = c.b.cast(c.value(x, x.eager), acc)
    m2 = c.b.reduce(P.REDUCE_M2, xv, k)
    total = c.b.reduce(P.REDUCE_SUM, xv, k)
    n = c.b.cast(c.b.row_numel(k), acc)
    mean = c.p(P.DIV, total, n)
    rstd = c.p(P.RSQRT, c.p(P.ADD, c.p(P.DIV, m2, n), c.b.const(float(c["eps"]), acc)))
    y = c.p(P.MUL, c.p(P.SUB, xv, mean), rstd)
    weight, bias = _affine_operand(c, "weight", acc), _affine_operand(c, "bias", acc)
    if weight is not None:
        y = c.p(P.MUL, y, weight)
    if bias is not None:
        y = c.p(P.ADD, y, bias)
    return y
