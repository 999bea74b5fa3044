"""Math lowerings: float unary functions (sqrt, exp, log, trig, erf...), rounding (floor, ceil,
trunc, round, frac), abs / neg / sign, and composite math (nan_to_num, lerp, addcmul / addcdiv,
prims.fma, logaddexp, xlogy, deg2rad / rad2deg, sinc) -> prims.

Contract: importing this module registers each lowering in the op table
(`nvfuse.fusion.ops.registry.TABLE`); each takes a `Call` and returns the result `Val`, raising
`Unsupported` where eager raises or where it cannot be exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.registry import (
    BOOL,
    Call,
    Lowering,
    P,
    aten,
    const_of,
    float_input,
    held,
    literal,
    op,
    ops,
    register,
)


# -- unary ------------------------------------------------------------------------------------
def _float_unary(op: Prim) -> Lowering:
    """A float-only unary op; integer inputs promote to the default float dtype (`out`)."""

    def lower(c: Call) -> Val:
        dt = c.float_out()
        return c.p(op, c.value(c.tensor("self"), dt))

    return lower


_FLOAT_UNARY: dict[Prim, tuple[str, ...]] = {
    P.SQRT: ("sqrt",), P.RSQRT: ("rsqrt",), P.RECIPROCAL: ("reciprocal",), P.EXP: ("exp",),
    P.EXP2: ("exp2", "special_exp2"), P.EXPM1: ("expm1", "special_expm1"), P.LOG: ("log",),
    P.LOG2: ("log2",), P.LOG10: ("log10",), P.LOG1P: ("log1p", "special_log1p"),
    P.SIN: ("sin",), P.COS: ("cos",), P.TAN: ("tan",), P.ASIN: ("asin", "arcsin"),
    P.ACOS: ("acos", "arccos"), P.ATAN: ("atan", "arctan"), P.SINH: ("sinh",),
    P.COSH: ("cosh",), P.TANH: ("tanh",), P.ASINH: ("asinh", "arcsinh"),
    P.ACOSH: ("acosh", "arccosh"), P.ATANH: ("atanh", "arctanh"), P.ERF: ("erf", "special_erf"),
    P.ERFC: ("erfc", "special_erfc"),
}
for _prim, _names in _FLOAT_UNARY.items():
    register(*(op(n) for n in _names))(_float_unary(_prim))


def _rounding_unary(op: Prim) -> Lowering:
    """floor / ceil / trunc / round: the identity on integers (torch copies them)."""

    def lower(c: Call) -> Val:
        x = c.value(c.tensor("self"), c.out)
        return c.p(op, x) if c.out.is_float else x

    return lower


register(aten.floor.default)(_rounding_unary(P.FLOOR))
register(aten.ceil.default)(_rounding_unary(P.CEIL))
register(aten.trunc.default, op("fix"))(_rounding_unary(P.TRUNC))
register(aten.round.default)(_rounding_unary(P.RINT))  # torch: nearbyint, half to even


@register(aten.round.decimals)
def _round_decimals(c: Call) -> Val:
    decimals = int(c.scalar("decimals"))
    dt = c.out
    if not dt.is_float:
        raise Unsupported("round(decimals=) on integers")  # torch raises
    x = c.value(c.tensor("self"), dt)
    if decimals == 0:
        return c.p(P.RINT, x)
    # torch (round_decimals_kernel_cuda) computes in the tensor's own type, scalar_t: ten_pow
    # is pow(10, |d|) rounded to the dtype, and the quotient (negative decimals: x / ten_pow)
    # or product (positive: x * ten_pow) rounds to the dtype before nearbyint -- a half or
    # bfloat16 tie can land the other way than in float32.  Then nearbyint(q) * or / ten_pow
    # in float, rounded once on the store.  (CPU eager keeps float32 throughout; nvfuse
    # follows CUDA.)
    ten_value = float(torch.tensor(10.0 ** abs(decimals), dtype=dt.torch).double())
    ten = c.b.const(const_of(ten_value, dt), dt.compute)
    q = c.p(P.DIV, x, ten) if decimals < 0 else c.p(P.MUL, x, ten)
    if dt.is_reduced_float:
        q = c.b.cast(c.b.cast(q, dt), dt.compute)
    q = c.p(P.RINT, q)
    return c.p(P.MUL, q, ten) if decimals < 0 else c.p(P.DIV, q, ten)


@register(aten.frac.default)
def _frac(c: Call) -> Val:
    x = c.value(c.tensor("self"), c.float_out())
    return c.p(P.SUB, x, c.p(P.TRUNC, x))  # torch: a - trunc(a) (inf -> NaN)


@register(aten.abs.default, op("absolute"))
def _abs(c: Call) -> Val:
    x = c.value(c.tensor("self"), c.out)
    if c.out in (BOOL, DType.UINT8):
        return x  # torch: abs_wrapper is the identity on unsigned types
    return c.p(P.ABS, x)  # integer abs wraps at the minimum, as torch's


@register(aten.neg.default, op("negative"))
def _neg(c: Call) -> Val:
    if c.out is BOOL:
        raise Unsupported("neg of bool")  # torch raises
    return c.p(P.NEG, c.value(c.tensor("self"), c.out))


def _sign_of(c: Call, x: Val, dt: DType) -> Val:
    """torch (sign_kernel_cuda): (0 < a) - (a < 0): NaN and -0 give 0."""
    zero, one = c.b.const(0, dt), c.b.const(1, dt)
    if not dt.is_signed:
        return c.where(c.p(P.GT, x, zero), one, zero)
    minus = c.where(c.p(P.LT, x, zero), c.b.const(-1, dt), zero)
    return c.where(c.p(P.GT, x, zero), one, minus)


@register(aten.sign.default, aten.sgn.default)
def _sign(c: Call) -> Val:
    x = c.value(c.tensor("self"), c.out)
    return x if c.out is BOOL else _sign_of(c, x, c.out)


# -- composite math ---------------------------------------------------------------------------
@register(aten.nan_to_num.default)
def _nan_to_num(c: Call) -> Val:
    dt = c.out
    x = c.value(c.tensor("self"), dt)
    if not dt.is_float:
        return x  # torch: a copy for integer and bool tensors
    x = held(c, x)
    info = torch.finfo(dt.torch)
    nan = c["nan"] if c["nan"] is not None else 0.0
    pos = c["posinf"] if c["posinf"] is not None else float(info.max)
    neg = c["neginf"] if c["neginf"] is not None else float(info.min)
    # torch: isnan ? nan : (x == inf ? posinf : (x == -inf ? neginf : x)), each replacement
    # converted to the tensor's dtype
    r_nan, r_pos, r_neg = (c.b.const(literal(v, "replacement"), dt) for v in (nan, pos, neg))
    inf = c.b.const(math.inf, dt)
    y = c.where(c.p(P.EQ, x, c.p(P.NEG, inf)), r_neg, x)
    y = c.where(c.p(P.EQ, x, inf), r_pos, y)
    return c.where(c.p(P.ISNAN, x), r_nan, y)


@register(aten.lerp.Scalar, aten.lerp.Tensor)
def _lerp(c: Call) -> Val:
    dt = c.float_out()
    start, end = c.value(c.tensor("self"), dt), c.value(c.tensor("end"), dt)
    w = c.operand("weight")
    one = c.b.const(1, dt.compute)
    diff = c.p(P.SUB, end, start)
    weight = c.value(w, dt) if isinstance(w, Val) else c.opmath(w, dt)

    def small() -> Val:
        return c.p(P.ADD, start, c.p(P.MUL, weight, diff))

    def large() -> Val:
        return c.p(P.SUB, end, c.p(P.MUL, diff, c.p(P.SUB, one, weight)))

    # torch (lerp in Lerp.h): |w| < 0.5 ? start + w * (end - start)
    #                                    : end - (end - start) * (1 - w)
    if not isinstance(w, Val):
        return small() if abs(const_of(w, dt)) < 0.5 else large()
    is_small = c.p(P.LT, c.p(P.ABS, weight), c.b.const(0.5, dt.compute))
    return c.where(is_small, small(), large())


def _addc(c: Call, op: Prim) -> Val:
    dt = c.out
    if dt is BOOL or (op is P.DIV and not dt.is_float):
        raise Unsupported(f"{c.target} on {dt}")  # torch raises for integer addcdiv
    a = c.value(c.tensor("self"), dt)
    t1, t2 = c.value(c.tensor("tensor1"), dt), c.value(c.tensor("tensor2"), dt)
    # torch (addcmul/addcdiv_cuda_kernel): a + alpha * (b op c), alpha in the accumulate type
    prod = c.p(op, t1, t2)
    value = c.scalar("value")
    if value != 1:
        prod = c.p(P.MUL, c.opmath(value, dt), prod)
    return c.p(P.ADD, a, prod)


register(aten.addcmul.default)(lambda c: _addc(c, P.MUL))


def _fma_op() -> Any:
    """prims.fma (inductor's prim, registered when its module is imported; dynamo writes
    `add_`/`addcmul_`/`addcdiv_` with a scalar factor as it), or None where torch lacks it."""
    try:
        import torch._inductor.inductor_prims
    except ImportError:
        return None
    return op("fma", ns=torch.ops.prims)


@register(_fma_op())
def _fma(c: Call) -> Val:
    # a * b + c with no rounding of the product: computed in the compute dtype (float32 for
    # halves) and rounded once on store; a scalar operand is read in opmath, as eager's
    # addcmul reads its value
    dt = c.out
    if dt is BOOL:
        raise Unsupported(f"{c.target} on {dt}")

    def operand(name: str) -> Val:
        x = c.operand(name)
        return c.value(x, dt) if isinstance(x, Val) else c.opmath(x, dt)

    return c.p(P.ADD, c.p(P.MUL, operand("a"), operand("b")), operand("c"))
register(aten.addcdiv.default)(lambda c: _addc(c, P.DIV))


def _logaddexp_of(c: Call, base2: bool) -> Val:
    dt = c.float_out()
    a, b = c.value(c.tensor("self"), dt), c.value(c.tensor("other"), dt)
    # torch (LogAddExpKernel.cu): isinf(a) && a == b ? a : max(a, b) + log1p(exp(-|a - b|))
    m = c.p(P.MAXIMUM, a, b)
    neg = c.p(P.NEG, c.p(P.ABS, c.p(P.SUB, a, b)))
    if base2:
        inv_ln2 = c.b.const(const_of(1.0 / math.log(2.0), dt), dt.compute)
        tail = c.p(P.MUL, c.p(P.LOG1P, c.p(P.EXP2, neg)), inv_ln2)
    else:
        tail = c.p(P.LOG1P, c.p(P.EXP, neg))
    general = c.p(P.ADD, m, tail)
    same_inf = c.where(c.p(P.EQ, a, b), a, general)
    return c.where(c.p(P.ISINF, a), same_inf, general)


register(aten.logaddexp.default)(lambda c: _logaddexp_of(c, False))
register(aten.logaddexp2.default)(lambda c: _logaddexp_of(c, True))


@register(*ops("xlogy", "Tensor", "Scalar_Self", "Scalar_Other"), op("special_xlogy"))
def _xlogy(c: Call) -> Val:
    dt = c.float_out()
    x, y = c.value(c.operand("self"), dt), c.value(c.operand("other"), dt)
    zero = c.b.const(0, dt.compute)
    # torch: isnan(y) ? NaN : (x == 0 ? 0 : x * log(y))
    r = c.where(c.p(P.EQ, x, zero), zero, c.p(P.MUL, x, c.p(P.LOG, y)))
    return c.where(c.p(P.ISNAN, y), c.b.const(math.nan, dt.compute), r)


def _scale_by(c: Call, factor: float) -> Val:
    # torch: deg2rad / rad2deg are mul by a wrapped scalar (narrowed to the result dtype)
    dt = c.float_out()
    return c.p(P.MUL, c.value(c.tensor("self"), dt), c.b.const(factor, dt))


register(aten.deg2rad.default)(lambda c: _scale_by(c, math.pi / 180.0))
register(aten.rad2deg.default)(lambda c: _scale_by(c, 180.0 / math.pi))


@register(aten.sinc.default)
def _sinc(c: Call) -> Val:
    x, dt = float_input(c)
    # torch: a == 0 ? 1 : sin(pi * a) / (pi * a)
    product = c.p(P.MUL, c.b.const(const_of(math.pi, dt), dt.compute), x)
    r = c.p(P.DIV, c.p(P.SIN, product), product)
    return c.where(c.p(P.EQ, x, c.b.const(0, dt.compute)), c.b.const(1, dt.compute), r)
