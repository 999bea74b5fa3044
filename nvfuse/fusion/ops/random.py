"""Random ops -> the RAND prim (a counter-based Philox stream per op, seeded per launch).

Contract: importing this module registers rand_like, bernoulli (tensor of probabilities, or a
scalar p) in the op table.  Same torch seed, same results; each op gets its own stream, so two
dropouts in one kernel draw independent masks.  Explicit generators are not supported (the
seed comes from torch's default generator).  Dropout itself reaches the op table as rand_like
and elementwise ops through nvfuse's decomposition of native_dropout (nvfuse/frontend/fx.py),
which also returns the mask the backward reuses.
"""

from __future__ import annotations

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.registry import Call, aten, register

# Mantissa bits (with the implicit one) of each float dtype: a uniform drawn for a narrower
# dtype keeps only that many bits, so rounding to it can never produce 1.0.
_BITS = {DType.FLOAT16: 11, DType.BFLOAT16: 8, DType.FLOAT32: 24, DType.FLOAT64: 24}


def _no_generator(c: Call) -> None:
    if c.args.get("generator") is not None:
        raise Unsupported("an explicit torch.Generator")
    if c.args.get("layout") not in (None,) and str(c.args.get("layout")) != "torch.strided":
        raise Unsupported(f"layout {c.args.get('layout')}")


def uniform(c: Call, dtype: DType) -> Val:
    """A uniform in [0, 1) representable in `dtype` (as a float32 compute value)."""
    b = c.b
    r = b.random()
    bits = _BITS[dtype]
    if bits < 24:  # r * 2^bits is exact; floor drops the bits `dtype` cannot hold
        scale = b.const(float(1 << bits), DType.FLOAT32)
        r = b.prim(Prim.MUL, b.prim(Prim.FLOOR, b.prim(Prim.MUL, r, scale)),
                   b.const(1.0 / (1 << bits), DType.FLOAT32))
    return r


@register(aten.rand_like.default)
def _rand_like(c: Call) -> Val:
    _no_generator(c)
    if not c.out.is_float:
        raise Unsupported(f"rand_like of dtype {c.out}")
    return c.b.convert(uniform(c, c.out), c.out)


@register(aten.bernoulli.p)
def _bernoulli_p(c: Call) -> Val:
    _no_generator(c)
    p = c.b.const(float(c.scalar("p")), DType.FLOAT32)
    return c.b.convert(c.b.prim(Prim.LT, uniform(c, DType.FLOAT32), p), c.out)


@register(aten.bernoulli.default)
def _bernoulli(c: Call) -> Val:
    _no_generator(c)
    p = c.b.cast(c.tensor("self"), DType.FLOAT32)
    return c.b.convert(c.b.prim(Prim.LT, uniform(c, DType.FLOAT32), p), c.out)
