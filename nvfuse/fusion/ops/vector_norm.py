"""Lowerings of vector norms: linalg_vector_norm and the norm.Scalar* overloads (what
torch.norm, Tensor.norm and torch.linalg.vector_norm / norm reach the graph as) -> a row value
over the trailing dims (dim None or [] = every dim), one row reduction with whatever pointwise
work surrounds it (`x / x.norm(dim=-1, keepdim=True)` is one kernel).

Numerics follow eager's norm kernels (aten/src/ATen/native/SharedReduceOps.h), computed in the
accumulator dtype (float32 for float16 / bfloat16, float64 for float64), the result rounded
once to eager's dtype; a `dtype=` argument converts the input first:
- ord 2: sqrt(sum(x * x)) (no rescaling: 1e20 in float32 overflows to inf, as eager's);
- ord 1: sum(|x|);  ord inf / -inf: amax / amin of |x| (NaN propagates; over an empty dim
  eager raises, and so does nvfuse: the executor runs such a group eagerly);
- ord 0: the count of nonzero elements (NaN counts);
- any other ord p > 0: sum(|x|^p)^(1/p), 1/p computed in the accumulator dtype.
Unsupported (left to eager): negative finite ord (eager raises over an empty dim, which a sum
cannot tell), integer and complex inputs, a non-literal ord.
"""

from __future__ import annotations

import math

import numpy as np

from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.reductions import accumulator, reduced_dims
from nvfuse.fusion.ops.registry import F64, Call, const_of, literal, op, register

P = Prim


@register(op("linalg_vector_norm"), op("norm", "Scalar"), op("norm", "ScalarOpt_dim"),
          op("norm", "ScalarOpt_dtype"), op("norm", "ScalarOpt_dim_dtype"))
def _vector_norm(c: Call) -> Val:
    x = c.tensor("self")
    p = c.args.get("ord", c.args.get("p"))
    p = 2 if p is None else literal(p, "ord")
    if isinstance(p, bool) or not x.eager.is_float or not c.out.is_float:
        raise Unsupported(f"{c.target} of {x.eager} into {c.out} with ord {p!r}")
    k = reduced_dims(x, c.args.get("dim"))
    b = c.b
    acc = accumulator(c.out)
    xv = b.cast(c.value(x, c.out), acc)
    magnitude = b.prim(P.ABS, xv)
    if p == 2:
        return b.prim(P.SQRT, b.reduce(P.REDUCE_SUM, b.prim(P.MUL, xv, xv), k))
    if p == 1:
        return b.reduce(P.REDUCE_SUM, magnitude, k)
    if p == math.inf:
        return b.reduce(P.REDUCE_MAX, magnitude, k)
    if p == -math.inf:
        return b.reduce(P.REDUCE_MIN, magnitude, k)
    if p == 0:
        nonzero = b.prim(P.NE, xv, b.const(0.0, acc))
        return b.reduce(P.REDUCE_SUM, b.cast(nonzero, acc), k)
    if not p > 0 or math.isnan(p):
        raise Unsupported(f"{c.target} with ord {p!r}")
    exponent = const_of(p, acc)
    # eager: static_cast<acc_t>(1) / p, in the accumulator dtype
    inverse = (1.0 / exponent if acc is F64
               else float(np.float32(1.0) / np.float32(exponent)))
    total = b.reduce(P.REDUCE_SUM, b.prim(P.POW, magnitude, b.const(exponent, acc)), k)
    return b.prim(P.POW, total, b.const(inverse, acc))
