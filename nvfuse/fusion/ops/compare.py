"""Comparison and logical lowerings: eq / ne / lt / le / gt / ge, logical and / or / xor / not,
bitwise and / or / xor / shifts / not, float predicates (isnan, isinf, isfinite, isposinf,
isneginf, signbit), where and masked_fill -> prims.

Contract: importing this module registers each lowering in the op table
(`nvfuse.fusion.ops.registry.TABLE`); each takes a `Call` and returns the result `Val` (bool for
comparisons, predicates and logical ops), raising `Unsupported` where eager raises.
"""

from __future__ import annotations

import math

from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.registry import (
    BOOL,
    Call,
    Lowering,
    P,
    aten,
    binary_same,
    held,
    ops,
    register,
)

# -- bitwise ----------------------------------------------------------------------------------
_BITWISE: dict[Prim, tuple[str, ...]] = {
    P.BITWISE_AND: ("bitwise_and", "__and__"), P.BITWISE_OR: ("bitwise_or", "__or__"),
    P.BITWISE_XOR: ("bitwise_xor", "__xor__"), P.SHL: ("bitwise_left_shift", "__lshift__"),
    P.SHR: ("bitwise_right_shift", "__rshift__"),
}
for _prim, _names in _BITWISE.items():
    # torch: bitwise ops are integer/bool only; shifts are integer only
    _lower = binary_same(_prim, floats=False, bools=_prim not in (P.SHL, P.SHR))
    for _name in _names:
        register(*ops(_name, "Tensor", "Scalar", "Scalar_Tensor", "Tensor_Scalar"))(_lower)


@register(aten.bitwise_not.default)
def _bitwise_not(c: Call) -> Val:
    dt = c.out
    x = c.value(c.tensor("self"), dt)
    if dt is BOOL:
        return c.p(P.EQ, x, c.b.const(False, BOOL))  # torch: logical not on bool
    if dt.is_float:
        raise Unsupported(f"bitwise_not of {dt}")
    return c.p(P.BITWISE_NOT, x)


# -- predicates -------------------------------------------------------------------------------
def _compare(op: Prim) -> Lowering:
    """Comparisons compute in the promoted operand dtype and return bool."""

    def lower(c: Call) -> Val:
        x, y = c.operand("self"), c.operand("other")
        dt = c.common(x, y)
        return c.p(op, c.value(x, dt), c.value(y, dt))

    return lower


_COMPARE: dict[Prim, tuple[str, ...]] = {
    P.EQ: ("eq",), P.NE: ("ne", "not_equal"), P.LT: ("lt", "less"), P.LE: ("le", "less_equal"),
    P.GT: ("gt", "greater"), P.GE: ("ge", "greater_equal"),
}
for _prim, _names in _COMPARE.items():
    for _name in _names:
        register(*ops(_name, "Tensor", "Scalar"))(_compare(_prim))


def _truth(c: Call, x: Val) -> Val:
    return c.b.cast(x, BOOL)  # any -> bool is x != 0 (NaN is true)


def _logical(op: Prim) -> Lowering:
    def lower(c: Call) -> Val:
        a, b = _truth(c, c.tensor("self")), _truth(c, c.tensor("other"))
        return c.p(op, a, b)

    return lower


register(aten.logical_and.default)(_logical(P.BITWISE_AND))
register(aten.logical_or.default)(_logical(P.BITWISE_OR))
register(aten.logical_xor.default)(_logical(P.NE))


@register(aten.logical_not.default)
def _logical_not(c: Call) -> Val:
    return c.p(P.EQ, _truth(c, c.tensor("self")), c.b.const(False, BOOL))


def _float_pred(c: Call, op: Prim, int_answer: bool) -> Val:
    x = c.tensor("self")
    if not x.eager.is_float:
        return c.b.const(int_answer, BOOL)
    return c.p(op, held(c, x))


register(aten.isnan.default)(lambda c: _float_pred(c, P.ISNAN, False))
register(aten.isinf.default)(lambda c: _float_pred(c, P.ISINF, False))
register(aten.isfinite.default)(lambda c: _float_pred(c, P.ISFINITE, True))


def _is_inf_of_sign(c: Call, value: float) -> Val:
    x = c.tensor("self")
    if not x.eager.is_float:
        return c.b.const(False, BOOL)
    return c.p(P.EQ, held(c, x), c.b.const(value, x.eager))


register(aten.isposinf.default)(lambda c: _is_inf_of_sign(c, math.inf))
register(aten.isneginf.default)(lambda c: _is_inf_of_sign(c, -math.inf))


@register(aten.signbit.default)
def _signbit(c: Call) -> Val:
    x = c.tensor("self")
    if not x.eager.is_signed:
        return c.b.const(False, BOOL)
    x = c.value(x, x.eager)
    if x.dtype.is_float:
        return c.p(P.SIGNBIT, x)
    return c.p(P.LT, x, c.b.const(0, x.dtype))


# -- where / masked_fill ----------------------------------------------------------------------
@register(*ops("where", "self", "ScalarSelf", "ScalarOther", "Scalar"))
def _where(c: Call) -> Val:
    dt = c.out
    cond = _truth(c, c.tensor("condition"))
    return c.where(cond, c.value(c.operand("self"), dt), c.value(c.operand("other"), dt))


@register(*ops("masked_fill", "Scalar", "Tensor"))
def _masked_fill(c: Call) -> Val:
    dt = c.out
    fill = c.value(c.operand("value"), dt)  # the fill value is converted to self's dtype
    return c.where(_truth(c, c.tensor("mask")), fill, c.value(c.tensor("self"), dt))
