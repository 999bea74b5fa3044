"""Arithmetic lowerings: aten add / sub / rsub / mul / div (true, trunc, floor), remainder,
fmod, atan2, hypot, copysign, maximum / minimum / fmax / fmin, pow and square -> prims.

Contract: importing this module registers each lowering in the op table
(`nvfuse.graph.ops.registry.TABLE`); each takes a `Call` and returns the result `Val`, raising
`Unsupported` where eager raises or where it cannot be exact.  Rounding and scalar-divisor rules
follow eager's CUDA kernels, cited per op.
"""

from __future__ import annotations

import numpy as np
import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.ir import Scalar
from nvfuse.fusion.prims import Prim
from nvfuse.graph.ops.registry import (
    BOOL,
    F64,
    Call,
    Operand,
    P,
    aten,
    binary_same,
    op,
    ops,
    register,
)


def _opmath_scalar(value: Scalar, dt: DType) -> float:
    """A Python scalar as mul / div read it for common dtype `dt`: in opmath, not narrowed
    to a half dtype (CPU: `original_scalar_value<opmath_t>` in the reduced-float branch;
    CUDA: `scalar_value<opmath_t>` of the unconverted CPU scalar)."""
    return float(torch.tensor(float(value), dtype=torch.float64).to(dt.compute.torch).item())


def _scalar_operand(c: Call, x: Operand, dt: DType) -> Val:
    """A mul / div operand: a Val converted to `dt`; a Python scalar in opmath (see
    `_opmath_scalar`; add and sub differ: TensorIterator narrows their scalar to `dt` first)."""
    if isinstance(x, Val) or not dt.is_float:
        return c.value(x, dt)
    return c.b.const(_opmath_scalar(x, dt), dt.compute)


# -- add / sub / mul / div ------------------------------------------------------------------
def _alpha_times(c: Call, y: Val, dt: DType) -> Val:
    """alpha * y, alpha read as opmath (torch: AddFunctor computes a + alpha * b)."""
    alpha = c.scalar("alpha")
    if alpha == 1:
        return y
    if dt is BOOL:
        return y if alpha else c.b.const(False, BOOL)
    return c.p(P.MUL, c.opmath(alpha, dt), y)


def _bool_arith(c: Call, op: Prim, a: Val, b: Val) -> Val:
    """bool + bool / bool * bool: C++ computes in int and stores `!= 0` (logical or / and)."""
    r = c.p(op, c.b.cast(a, DType.UINT8), c.b.cast(b, DType.UINT8))
    return c.b.cast(r, BOOL)


@register(*ops("add", "Tensor", "Scalar"))
def _add(c: Call) -> Val:
    x, y = c.operand("self"), c.operand("other")
    dt = c.out
    a, b = c.value(x, dt), c.value(y, dt)
    b = _alpha_times(c, b, dt)
    return _bool_arith(c, P.ADD, a, b) if dt is BOOL else c.p(P.ADD, a, b)


def _subtract(c: Call, x: Operand, y: Operand) -> Val:
    dt = c.out
    if dt is BOOL:
        raise Unsupported("subtraction of bool tensors")  # torch raises too
    a, b = c.value(x, dt), c.value(y, dt)
    return c.p(P.SUB, a, _alpha_times(c, b, dt))  # torch: sub is add with -alpha


@register(*ops("sub", "Tensor", "Scalar"), *ops("subtract", "Tensor", "Scalar"))
def _sub(c: Call) -> Val:
    return _subtract(c, c.operand("self"), c.operand("other"))


@register(*ops("rsub", "Tensor", "Scalar"))
def _rsub(c: Call) -> Val:
    return _subtract(c, c.operand("other"), c.operand("self"))


@register(*ops("mul", "Tensor", "Scalar"), *ops("multiply", "Tensor", "Scalar"))
def _mul(c: Call) -> Val:
    dt = c.out
    a, b = _scalar_operand(c, c.operand("self"), dt), _scalar_operand(c, c.operand("other"), dt)
    return _bool_arith(c, P.MUL, a, b) if dt is BOOL else c.p(P.MUL, a, b)


def _true_div(c: Call, x: Operand, y: Operand) -> Val:
    dt = c.float_out()  # integer inputs divide in the default float dtype
    a = c.value(x, dt)
    if isinstance(y, Val):
        return c.p(P.DIV, a, c.value(y, dt))
    # torch (div_true_kernel_cuda): a CPU-scalar divisor becomes a multiply by its
    # reciprocal, computed in opmath from the scalar read in opmath.
    return c.p(P.MUL, a, c.b.const(_reciprocal(y, dt), dt.compute))


def _reciprocal(y: Scalar, dt: DType) -> float:
    """1 / y in opmath, y read in opmath (torch: `opmath_t(1.0) / scalar_value<opmath_t>`)."""
    f = np.float64 if dt is F64 else np.float32
    with np.errstate(divide="ignore"):
        return float(f(1.0) / f(_opmath_scalar(y, dt)))


def _div_floor_by_scalar(c: Call, a: Val, y: Scalar, dt: DType) -> Val:
    """torch (div_floor_kernel_cuda, CPU-scalar divisor): mod = fmod(a, b);
    div = (a - mod) * (1 / b), minus 1 when mod and b differ in sign; then floor(div), plus 1
    when div - floor(div) > 0.5; a zero quotient takes the sign of a * (1 / b).  b == 0 is
    plain true division."""
    k = dt.compute
    inv = c.b.const(_reciprocal(y, dt), k)
    divisor = _opmath_scalar(y, dt)
    if divisor == 0:
        return c.p(P.MUL, a, inv)
    b, zero, one = c.b.const(divisor, k), c.b.const(0, k), c.b.const(1, k)
    mod = c.p(P.FMOD, a, b)
    div = c.p(P.MUL, c.p(P.SUB, a, mod), inv)
    b_negative = divisor < 0
    mod_sign_differs = c.p(P.GE if b_negative else P.LT, mod, zero)  # (b < 0) != (mod < 0)
    adjust = c.p(P.BITWISE_AND, c.p(P.NE, mod, zero), mod_sign_differs)
    div = c.where(adjust, c.p(P.SUB, div, one), div)
    floored = c.p(P.FLOOR, div)
    half = c.b.const(0.5, k)
    floored = c.where(c.p(P.GT, c.p(P.SUB, div, floored), half), c.p(P.ADD, floored, one), floored)
    signed_zero = c.p(P.COPYSIGN, zero, c.p(P.MUL, a, inv))
    return c.where(c.p(P.NE, div, zero), floored, signed_zero)


def _rounding_div(c: Call, x: Operand, y: Operand, mode: str | None) -> Val:
    if mode is None:
        return _true_div(c, x, y)
    dt = c.out
    if dt is BOOL:
        raise Unsupported("rounding division of bool tensors")
    if mode not in ("trunc", "floor"):
        raise Unsupported(f"rounding_mode {mode!r}")
    a = c.value(x, dt)
    if dt.is_float and not isinstance(y, Val):
        # torch (div_trunc/div_floor_kernel_cuda): a CPU-scalar divisor multiplies by its
        # reciprocal in the accumulate type
        if mode == "trunc":
            return c.p(P.TRUNC, c.p(P.MUL, a, c.b.const(_reciprocal(y, dt), dt.compute)))
        return _div_floor_by_scalar(c, a, y, dt)
    return c.p(P.DIV_TRUNC if mode == "trunc" else P.DIV_FLOOR, a, c.value(y, dt))


@register(*ops("div", "Tensor", "Scalar"), *ops("true_divide", "Tensor", "Scalar"),
          *ops("divide", "Tensor", "Scalar"))
def _div(c: Call) -> Val:
    return _true_div(c, c.operand("self"), c.operand("other"))


@register(*ops("div", "Tensor_mode", "Scalar_mode"), *ops("divide", "Tensor_mode", "Scalar_mode"))
def _div_mode(c: Call) -> Val:
    return _rounding_div(c, c.operand("self"), c.operand("other"), c["rounding_mode"])


@register(*ops("floor_divide", "default", "Scalar"))
def _floor_divide(c: Call) -> Val:
    return _rounding_div(c, c.operand("self"), c.operand("other"), "floor")


register(*ops("remainder", "Tensor", "Scalar", "Scalar_Tensor"))(
    binary_same(P.REMAINDER, bools=False))
register(*ops("fmod", "Tensor", "Scalar"))(binary_same(P.FMOD, bools=False))
register(aten.atan2.default, op("arctan2"))(binary_same(P.ATAN2, ints=False, bools=False))
register(aten.hypot.default)(binary_same(P.HYPOT, ints=False, bools=False))
register(*ops("copysign", "Tensor", "Scalar"))(binary_same(P.COPYSIGN, ints=False, bools=False))
register(aten.maximum.default)(binary_same(P.MAXIMUM))
register(aten.minimum.default)(binary_same(P.MINIMUM))


@register(aten.fmax.default)
def _fmax(c: Call) -> Val:
    # torch: fmax ignores a NaN operand; on integers it is plain max
    return binary_same(P.FMAX if c.out.is_float else P.MAXIMUM)(c)


@register(aten.fmin.default)
def _fmin(c: Call) -> Val:
    return binary_same(P.FMIN if c.out.is_float else P.MINIMUM)(c)


# -- pow --------------------------------------------------------------------------------------
def _pow_scalar_exponent(c: Call, base: Val, exponent: Scalar, dt: DType) -> Val:
    """torch (pow_tensor_scalar_kernel): exponents 0 and 1 fill / copy; 2, 3, 0.5, -0.5, -1,
    -2 are computed as products, sqrt, rsqrt and reciprocals on floats."""
    if exponent == 0:
        return c.b.const(1, dt)
    if exponent == 1:
        return base
    if exponent == 2:
        return c.p(P.MUL, base, base)
    if exponent == 3:
        return c.p(P.MUL, c.p(P.MUL, base, base), base)
    if dt.is_float:
        if exponent == 0.5:
            return c.p(P.SQRT, base)
        if exponent == -0.5:
            return c.p(P.RSQRT, base)
        if exponent == -1:
            return c.p(P.RECIPROCAL, base)
        if exponent == -2:
            return c.p(P.RECIPROCAL, c.p(P.MUL, base, base))
    elif exponent < 0:
        raise Unsupported("integers to negative integer powers")  # torch raises
    return c.p(P.POW, base, c.b.const(exponent, dt))


@register(aten.pow.Tensor_Tensor, aten.pow.Tensor_Scalar, aten.pow.Scalar)
def _pow(c: Call) -> Val:
    dt = c.out
    if dt is BOOL:
        raise Unsupported("pow on bool result")
    x, e = c.operand("self"), c.operand("exponent")
    if isinstance(x, Val) and not isinstance(e, Val):
        return _pow_scalar_exponent(c, c.value(x, dt), e, dt)
    if not isinstance(x, Val) and x == 1:
        return c.b.const(1, dt)  # torch: pow(1, exponent) is ones_like(exponent)
    return c.p(P.POW, c.value(x, dt), c.value(e, dt))


@register(aten.square.default)
def _square(c: Call) -> Val:
    x = c.value(c.tensor("self"), c.out)
    return c.p(P.MUL, x, x)  # torch: square is pow(x, 2) (bool promotes to int64)
