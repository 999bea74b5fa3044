"""The op table: the one place that says what each aten op means, as a decomposition into prims.

Contract:
    lower_op(b, target, args, kwargs, out) -> Val
        `target` is an OpOverload (aten.* or prims.*); `args`/`kwargs` are the FX node's, with
        every tensor operand replaced by a `Val` (`.eager` is eager's dtype, `.zero_dim` marks
        0-dim tensors), scalars as Python numbers, dtypes as torch.dtype, lists as lists, None
        as None.  `out` is eager's result dtype.  Returns the result Val; the caller applies
        `b.finish(v, out)` afterwards.  Raises `Unsupported` for anything it cannot lower
        exactly (an op without a lowering, an out=/in-place variant, a non-literal or complex
        scalar, a device change in a conversion, a layout or memory format it cannot honour,
        a dtype the op does not accept).
    has_lowering(target) -> bool
    supported_ops() -> list[str]        sorted op overload names, for docs

Numerics follow eager PyTorch's CUDA kernels (aten/src/ATen/native/cuda/*.cu), cited per op:
- Operands are brought to the op's common dtype as TensorIterator does: a tensor of another
  dtype is converted (a float16/bfloat16 operand promoted from a narrower value is rounded
  first), a Python scalar is narrowed to the common dtype (`iter.scalar_value<opmath_t>` reads
  the converted CPU scalar).  Arithmetic then runs in the compute dtype (float32 for halves).
- Scalar *parameters* of an op (alpha, negative_slope, beta, threshold of softplus...) are
  read as `Scalar::to<opmath_t>()`, i.e. not narrowed to the half dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nvfuse import dtypes
from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder, Unsupported, Val, result_type
from nvfuse.fusion.ir import Scalar
from nvfuse.fusion.prims import Prim

aten = torch.ops.aten
P = Prim
F32 = DType.FLOAT32
F64 = DType.FLOAT64
BOOL = DType.BOOL
Operand = Val | Scalar


# -- the call being lowered ------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One op application: the builder, the bound arguments (by schema name, defaults
    filled in) and eager's result dtype."""

    b: Builder
    target: Any
    args: dict[str, Any]
    out: DType

    def __getitem__(self, name: str) -> Any:
        return self.args[name]

    # -- operands ----------------------------------------------------------------------------
    def tensor(self, name: str) -> Val:
        v = self.args[name]
        if not isinstance(v, Val):
            raise Unsupported(f"argument {name!r} is not a fused tensor: {v!r}")
        return v

    def scalar(self, name: str) -> Scalar:
        return _literal(self.args[name], name)

    def operand(self, name: str) -> Operand:
        """A tensor-or-scalar operand (aten's `Scalar` arguments that take part in promotion)."""
        v = self.args[name]
        return v if isinstance(v, Val) else _literal(v, name)

    def value(self, x: Operand, dt: DType) -> Val:
        """Operand `x` as eager holds it in common dtype `dt`, typed in `dt.compute`."""
        if isinstance(x, Val):
            if x.eager is dt:
                return self.b.cast(x, dt.compute)
            return self.b.convert(x, dt)  # rounds a float32-kept half as eager holds it
        return self.b.const(x, dt)

    def opmath(self, value: Scalar, dt: DType) -> Val:
        """A scalar parameter read as `Scalar::to<opmath_t>()` for common dtype `dt`."""
        return self.b.const(value, dt.compute)

    # -- compute -----------------------------------------------------------------------------
    def p(self, op: Prim, *args: Val) -> Val:
        return self.b.prim(op, *args)

    def where(self, cond: Val, a: Val, b: Val) -> Val:
        return self.b.prim(P.WHERE, cond, a, b)

    def common(self, *xs: Operand) -> DType:
        """torch's n-ary promotion over the operands (DEFAULT kind)."""
        return result_type(*xs)

    def float_out(self) -> DType:
        if not self.out.is_float:
            raise Unsupported(f"result dtype {self.out} is not floating point")
        return self.out


Lowering = Callable[[Call], Val]
_TABLE: dict[Any, Lowering] = {}


def register(*targets: Any) -> Callable[[Lowering], Lowering]:
    """Register `fn` as the lowering of each OpOverload in `targets` (missing ones skipped,
    so the table works across torch versions)."""

    def deco(fn: Lowering) -> Lowering:
        for t in targets:
            if t is not None:
                _TABLE[t] = fn
        return fn

    return deco


def _op(name: str, overload: str = "default", ns: Any = aten) -> Any:
    """torch.ops.<ns>.<name>.<overload>, or None where this torch lacks it."""
    packet = getattr(ns, name, None)
    return getattr(packet, overload, None) if packet is not None else None


def _ops(name: str, *overloads: str) -> list[Any]:
    return [_op(name, o) for o in overloads]


# -- public API ------------------------------------------------------------------------------
def lower_op(b: Builder, target: Any, args: tuple, kwargs: dict, out: DType) -> Val:
    """Lower one aten op application to prims; see the module docstring."""
    fn = _TABLE.get(target)
    if fn is None:
        raise Unsupported(f"no lowering for {target}")
    return fn(Call(b, target, _bind(target, args, kwargs), out))


def has_lowering(target: Any) -> bool:
    return target in _TABLE


def supported_ops() -> list[str]:
    return sorted(str(t) for t in _TABLE)


def _bind(target: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by schema name, defaults filled in; rejects writes (in-place / out=)."""
    schema = target._schema
    bound: dict[str, Any] = {}
    params = list(schema.arguments)
    if any(a.alias_info is not None and a.alias_info.is_write for a in params):
        raise Unsupported(f"{target} writes one of its arguments (in-place or out=)")
    if len(args) > len(params):
        raise Unsupported(f"{target}: too many arguments")
    for param, value in zip(params, args):
        bound[param.name] = value
    for name, value in kwargs.items():
        if name not in {p.name for p in params}:
            raise Unsupported(f"{target}: unknown argument {name!r}")
        bound[name] = value
    for param in params:
        if param.name not in bound:
            if not param.has_default_value():
                raise Unsupported(f"{target}: missing argument {param.name!r}")
            bound[param.name] = param.default_value
    return bound


def _narrow(value: float, dt: DType) -> float:
    """A Python float as a tensor of dtype `dt` holds it (torch's conversion)."""
    return float(torch.tensor(value, dtype=torch.float64).to(dt.torch).double().item())


def _literal(value: Any, name: str) -> Scalar:
    """A Python number usable as a literal (not complex, not symbolic, not a tensor)."""
    if isinstance(value, (bool, int, float)) and not isinstance(value, complex):
        return value
    raise Unsupported(f"argument {name!r} is not a literal real scalar: {value!r}")


def _const_of(value: float, dt: DType) -> float:
    """`value` rounded to the compute dtype of `dt` (how C++ holds an opmath constant)."""
    return float(np.float64(value)) if dt.compute is F64 else float(np.float32(value))


def _held(c: Call, x: Val) -> Val:
    """`x` as eager holds it in memory, in its compute dtype: a float32-kept half is rounded to
    its dtype first.  Used where a result is discontinuous in that rounding (overflow to inf)."""
    if x.eager.is_reduced_float and x.dtype is F32:
        x = c.b.cast(x, x.eager)
    return c.b.cast(x, x.eager.compute)


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


@register(*_ops("add", "Tensor", "Scalar"))
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


@register(*_ops("sub", "Tensor", "Scalar"), *_ops("subtract", "Tensor", "Scalar"))
def _sub(c: Call) -> Val:
    return _subtract(c, c.operand("self"), c.operand("other"))


@register(*_ops("rsub", "Tensor", "Scalar"))
def _rsub(c: Call) -> Val:
    return _subtract(c, c.operand("other"), c.operand("self"))


@register(*_ops("mul", "Tensor", "Scalar"), *_ops("multiply", "Tensor", "Scalar"))
def _mul(c: Call) -> Val:
    dt = c.out
    a, b = c.value(c.operand("self"), dt), c.value(c.operand("other"), dt)
    return _bool_arith(c, P.MUL, a, b) if dt is BOOL else c.p(P.MUL, a, b)


def _true_div(c: Call, x: Operand, y: Operand) -> Val:
    dt = c.float_out()  # integer inputs divide in the default float dtype
    a = c.value(x, dt)
    if isinstance(y, Val):
        return c.p(P.DIV, a, c.value(y, dt))
    # torch (div_true_kernel_cuda): a CPU-scalar divisor becomes a multiply by its
    # reciprocal, computed in opmath from the scalar narrowed to the common dtype.
    return c.p(P.MUL, a, c.b.const(_reciprocal(y, dt), dt.compute))


def _reciprocal(y: Scalar, dt: DType) -> float:
    """1 / y in opmath, y first narrowed to `dt` (torch: `opmath_t(1.0) / scalar_value`)."""
    f = np.float64 if dt is F64 else np.float32
    with np.errstate(divide="ignore"):
        return float(f(1.0) / f(_narrow(float(y), dt)))


def _div_floor_by_scalar(c: Call, a: Val, y: Scalar, dt: DType) -> Val:
    """torch (div_floor_kernel_cuda, CPU-scalar divisor): mod = fmod(a, b);
    div = (a - mod) * (1 / b), minus 1 when mod and b differ in sign; then floor(div), plus 1
    when div - floor(div) > 0.5; a zero quotient takes the sign of a * (1 / b).  b == 0 is
    plain true division."""
    k = dt.compute
    inv = c.b.const(_reciprocal(y, dt), k)
    if _narrow(float(y), dt) == 0:
        return c.p(P.MUL, a, inv)
    b, zero, one = c.b.const(y, dt), c.b.const(0, k), c.b.const(1, k)
    mod = c.p(P.FMOD, a, b)
    div = c.p(P.MUL, c.p(P.SUB, a, mod), inv)
    b_negative = bool(_narrow(float(y), dt) < 0)
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


@register(*_ops("div", "Tensor", "Scalar"), *_ops("true_divide", "Tensor", "Scalar"),
          *_ops("divide", "Tensor", "Scalar"))
def _div(c: Call) -> Val:
    return _true_div(c, c.operand("self"), c.operand("other"))


@register(*_ops("div", "Tensor_mode", "Scalar_mode"), *_ops("divide", "Tensor_mode", "Scalar_mode"))
def _div_mode(c: Call) -> Val:
    return _rounding_div(c, c.operand("self"), c.operand("other"), c["rounding_mode"])


@register(*_ops("floor_divide", "default", "Scalar"))
def _floor_divide(c: Call) -> Val:
    return _rounding_div(c, c.operand("self"), c.operand("other"), "floor")


def _binary_same(
    op: Prim, *, floats: bool = True, ints: bool = True, bools: bool = True
) -> Lowering:
    """Lowering of a binary op computed in the common (= result) dtype."""

    def lower(c: Call) -> Val:
        dt = c.out
        allowed = floats if dt.is_float else ints if dt.is_int else bools
        if not allowed:
            raise Unsupported(f"{c.target} on {dt}")
        return c.p(op, c.value(c.operand("self"), dt), c.value(c.operand("other"), dt))

    return lower


register(*_ops("remainder", "Tensor", "Scalar", "Scalar_Tensor"))(
    _binary_same(P.REMAINDER, bools=False))
register(*_ops("fmod", "Tensor", "Scalar"))(_binary_same(P.FMOD, bools=False))
register(aten.atan2.default, _op("arctan2"))(_binary_same(P.ATAN2, ints=False, bools=False))
register(aten.hypot.default)(_binary_same(P.HYPOT, ints=False, bools=False))
register(*_ops("copysign", "Tensor", "Scalar"))(_binary_same(P.COPYSIGN, ints=False, bools=False))
register(aten.maximum.default)(_binary_same(P.MAXIMUM))
register(aten.minimum.default)(_binary_same(P.MINIMUM))
_BITWISE: dict[Prim, tuple[str, ...]] = {
    P.BITWISE_AND: ("bitwise_and", "__and__"), P.BITWISE_OR: ("bitwise_or", "__or__"),
    P.BITWISE_XOR: ("bitwise_xor", "__xor__"), P.SHL: ("bitwise_left_shift", "__lshift__"),
    P.SHR: ("bitwise_right_shift", "__rshift__"),
}
for _prim, _names in _BITWISE.items():
    # torch: bitwise ops are integer/bool only; shifts are integer only
    _lower = _binary_same(_prim, floats=False, bools=_prim not in (P.SHL, P.SHR))
    for _name in _names:
        register(*_ops(_name, "Tensor", "Scalar", "Scalar_Tensor", "Tensor_Scalar"))(_lower)


@register(aten.fmax.default)
def _fmax(c: Call) -> Val:
    # torch: fmax ignores a NaN operand; on integers it is plain max
    return _binary_same(P.FMAX if c.out.is_float else P.MAXIMUM)(c)


@register(aten.fmin.default)
def _fmin(c: Call) -> Val:
    return _binary_same(P.FMIN if c.out.is_float else P.MINIMUM)(c)


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
    register(*(_op(n) for n in _names))(_float_unary(_prim))


def _rounding_unary(op: Prim) -> Lowering:
    """floor / ceil / trunc / round: the identity on integers (torch copies them)."""

    def lower(c: Call) -> Val:
        x = c.value(c.tensor("self"), c.out)
        return c.p(op, x) if c.out.is_float else x

    return lower


register(aten.floor.default)(_rounding_unary(P.FLOOR))
register(aten.ceil.default)(_rounding_unary(P.CEIL))
register(aten.trunc.default, _op("fix"))(_rounding_unary(P.TRUNC))
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
    # torch (round_decimals_kernel): ten_pow = opmath(pow(10, |d|)); negative decimals
    # divide then multiply, positive ones multiply then divide.
    ten = c.b.const(_const_of(10.0 ** abs(decimals), dt), dt.compute)
    if decimals < 0:
        return c.p(P.MUL, c.p(P.RINT, c.p(P.DIV, x, ten)), ten)
    return c.p(P.DIV, c.p(P.RINT, c.p(P.MUL, x, ten)), ten)


@register(aten.frac.default)
def _frac(c: Call) -> Val:
    x = c.value(c.tensor("self"), c.float_out())
    return c.p(P.SUB, x, c.p(P.TRUNC, x))  # torch: a - trunc(a) (inf -> NaN)


@register(aten.abs.default, _op("absolute"))
def _abs(c: Call) -> Val:
    x = c.value(c.tensor("self"), c.out)
    if c.out in (BOOL, DType.UINT8):
        return x  # torch: abs_wrapper is the identity on unsigned types
    return c.p(P.ABS, x)  # integer abs wraps at the minimum, as torch's


@register(aten.neg.default, _op("negative"))
def _neg(c: Call) -> Val:
    if c.out is BOOL:
        raise Unsupported("neg of bool")  # torch raises
    return c.p(P.NEG, c.value(c.tensor("self"), c.out))


@register(_op("positive"), aten.clone.default, aten.alias.default, aten.detach.default,
          _op("lift_fresh_copy"))
def _copy(c: Call) -> Val:
    fmt = c.args.get("memory_format")
    if fmt not in (None, torch.preserve_format, torch.contiguous_format):
        raise Unsupported(f"memory_format {fmt}")
    return c.value(c.tensor("self"), c.out)


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
        register(*_ops(_name, "Tensor", "Scalar"))(_compare(_prim))


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
    return c.p(op, _held(c, x))


register(aten.isnan.default)(lambda c: _float_pred(c, P.ISNAN, False))
register(aten.isinf.default)(lambda c: _float_pred(c, P.ISINF, False))
register(aten.isfinite.default)(lambda c: _float_pred(c, P.ISFINITE, True))


def _is_inf_of_sign(c: Call, value: float) -> Val:
    x = c.tensor("self")
    if not x.eager.is_float:
        return c.b.const(False, BOOL)
    return c.p(P.EQ, _held(c, x), c.b.const(value, x.eager))


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


# -- where / masked_fill / clamp ---------------------------------------------------------------
@register(*_ops("where", "self", "ScalarSelf", "ScalarOther", "Scalar"))
def _where(c: Call) -> Val:
    dt = c.out
    cond = _truth(c, c.tensor("condition"))
    return c.where(cond, c.value(c.operand("self"), dt), c.value(c.operand("other"), dt))


@register(*_ops("masked_fill", "Scalar", "Tensor"))
def _masked_fill(c: Call) -> Val:
    dt = c.out
    fill = c.value(c.operand("value"), dt)  # the fill value is converted to self's dtype
    return c.where(_truth(c, c.tensor("mask")), fill, c.value(c.tensor("self"), dt))


def _clamp_between(c: Call, lo: Operand | None, hi: Operand | None) -> Val:
    """torch: clamp is min(max(x, lo), hi): NaN in x or in a bound gives NaN; lo > hi gives
    hi.  Scalar bounds are converted to the common dtype."""
    if lo is None and hi is None:
        raise Unsupported("clamp without bounds")  # torch raises
    dt = c.out
    if dt is BOOL:
        raise Unsupported("clamp of bool")
    x = c.value(c.tensor("self"), dt)
    if lo is not None:
        x = c.p(P.MAXIMUM, x, c.value(lo, dt))
    if hi is not None:
        x = c.p(P.MINIMUM, x, c.value(hi, dt))
    return x


def _bound(c: Call, name: str) -> Operand | None:
    v = c.args.get(name)
    return None if v is None else c.operand(name)


@register(*_ops("clamp", "default", "Tensor"), *_ops("clip", "default", "Tensor"))
def _clamp(c: Call) -> Val:
    return _clamp_between(c, _bound(c, "min"), _bound(c, "max"))


@register(*_ops("clamp_min", "default", "Tensor"))
def _clamp_min(c: Call) -> Val:
    return _clamp_between(c, c.operand("min"), None)


@register(*_ops("clamp_max", "default", "Tensor"))
def _clamp_max(c: Call) -> Val:
    return _clamp_between(c, None, c.operand("max"))


@register(aten.hardtanh.default)
def _hardtanh(c: Call) -> Val:
    return _clamp_between(c, c.scalar("min_val"), c.scalar("max_val"))  # torch: clamp


@register(aten.relu6.default)
def _relu6(c: Call) -> Val:
    return _clamp_between(c, 0, 6)  # torch: hardtanh(x, 0, 6)


@register(aten.relu.default)
def _relu(c: Call) -> Val:
    if c.out is BOOL:
        raise Unsupported("relu of bool")  # torch raises
    return _clamp_between(c, 0, None)  # torch: clamp_min(x, 0), so relu(NaN) is NaN


# -- activations ------------------------------------------------------------------------------
def _float_input(c: Call) -> tuple[Val, DType]:
    dt = c.float_out()
    return c.value(c.tensor("self"), dt), dt


@register(aten.sigmoid.default, _op("special_expit"))
def _sigmoid(c: Call) -> Val:
    x, dt = _float_input(c)
    one = c.b.const(1, dt.compute)
    return c.p(P.DIV, one, c.p(P.ADD, one, c.p(P.EXP, c.p(P.NEG, x))))  # 1 / (1 + exp(-x))


@register(aten.logit.default)
def _logit(c: Call) -> Val:
    x, dt = _float_input(c)
    one = c.b.const(1, dt.compute)
    eps = c.args.get("eps")
    if eps is not None:
        eps = _literal(eps, "eps")
    if eps is not None and eps >= 0:
        # torch (logit_kernel_cuda): z = x < lo ? lo : (x > hi ? hi : x), hi = 1 - eps in
        # the accumulate type; NaN stays NaN.
        lo_v = _const_of(eps, dt)
        hi_v = _const_of(1.0 - lo_v, dt) if dt.compute is F64 else float(
            np.float32(1.0) - np.float32(lo_v))
        lo, hi = c.b.const(lo_v, dt.compute), c.b.const(hi_v, dt.compute)
        x = c.where(c.p(P.LT, x, lo), lo, c.where(c.p(P.GT, x, hi), hi, x))
    return c.p(P.LOG, c.p(P.DIV, x, c.p(P.SUB, one, x)))


@register(aten.leaky_relu.default)
def _leaky_relu(c: Call) -> Val:
    x, dt = _float_input(c)
    slope = c.opmath(c.scalar("negative_slope"), dt)
    # torch: x > 0 ? x : x * negval (NaN -> NaN * negval)
    return c.where(c.p(P.GT, x, c.b.const(0, dt.compute)), x, c.p(P.MUL, x, slope))


def _elu_of(c: Call, alpha: float, scale: float, input_scale: float) -> Val:
    """torch (elu_kernel): x > 0 ? x * scale : expm1(x * input_scale) * (alpha * scale),
    the coefficients read as opmath and multiplied there."""
    x, dt = _float_input(c)
    f = np.float64 if dt.compute is F64 else np.float32
    negcoef = float(f(alpha) * f(scale))
    pos = c.p(P.MUL, x, c.b.const(_const_of(scale, dt), dt.compute))
    inner = c.p(P.MUL, x, c.b.const(_const_of(input_scale, dt), dt.compute))
    neg = c.p(P.MUL, c.p(P.EXPM1, inner), c.b.const(negcoef, dt.compute))
    return c.where(c.p(P.GT, x, c.b.const(0, dt.compute)), pos, neg)


@register(aten.elu.default)
def _elu(c: Call) -> Val:
    return _elu_of(c, float(c.scalar("alpha")), float(c.scalar("scale")),
                   float(c.scalar("input_scale")))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@register(aten.selu.default)
def _selu(c: Call) -> Val:
    return _elu_of(c, _SELU_ALPHA, _SELU_SCALE, 1.0)  # torch: elu(x, SELU_ALPHA, SELU_SCALE)


@register(aten.celu.default)
def _celu(c: Call) -> Val:
    alpha = float(c.scalar("alpha"))
    return _elu_of(c, alpha, 1.0, 1.0 / alpha)  # torch: elu(x, alpha, 1, 1 / alpha)


@register(aten.gelu.default)
def _gelu(c: Call) -> Val:
    x, dt = _float_input(c)
    k = dt.compute

    def const(v: float) -> Val:
        return c.b.const(_const_of(v, dt), k)

    half, one = const(0.5), const(1.0)
    approximate = c["approximate"]
    if approximate == "tanh":
        # torch (GeluCUDAKernelImpl): 0.5 * x * (1 + tanh(kBeta * (x + kKappa * x^3)))
        beta = const(math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5)
        cube = c.p(P.MUL, c.p(P.MUL, x, x), x)
        inner = c.p(P.MUL, beta, c.p(P.ADD, x, c.p(P.MUL, const(0.044715), cube)))
        return c.p(P.MUL, c.p(P.MUL, half, x), c.p(P.ADD, one, c.p(P.TANH, inner)))
    if approximate != "none":
        raise Unsupported(f"gelu approximate={approximate!r}")
    # torch: x * 0.5 * (1 + erf(x * M_SQRT1_2))
    erf = c.p(P.ERF, c.p(P.MUL, x, const(math.sqrt(0.5))))
    return c.p(P.MUL, c.p(P.MUL, x, half), c.p(P.ADD, one, erf))


@register(aten.silu.default)
def _silu(c: Call) -> Val:
    x, dt = _float_input(c)
    one = c.b.const(1, dt.compute)
    return c.p(P.DIV, x, c.p(P.ADD, one, c.p(P.EXP, c.p(P.NEG, x))))  # x / (1 + exp(-x))


@register(aten.mish.default)
def _mish(c: Call) -> Val:
    x, _ = _float_input(c)
    return c.p(P.MUL, x, c.p(P.TANH, c.p(P.LOG1P, c.p(P.EXP, x))))  # x * tanh(log1p(exp(x)))


@register(aten.softplus.default)
def _softplus(c: Call) -> Val:
    x, dt = _float_input(c)
    beta = c.opmath(c.scalar("beta"), dt)
    threshold = c.opmath(c.scalar("threshold"), dt)
    # torch: (x * beta) > threshold ? x : log1p(exp(x * beta)) / beta
    xb = c.p(P.MUL, x, beta)
    soft = c.p(P.DIV, c.p(P.LOG1P, c.p(P.EXP, xb)), beta)
    return c.where(c.p(P.GT, xb, threshold), x, soft)


def _hard_gate(c: Call, x: Val, dt: DType) -> Val:
    """min(max(x + 3, 0), 6) in opmath (std::max/min keep a NaN first operand)."""
    three = c.b.const(3, dt.compute)
    gate = c.p(P.MAXIMUM, c.p(P.ADD, x, three), c.b.const(0, dt.compute))
    return c.p(P.MINIMUM, gate, c.b.const(6, dt.compute))


def _one_sixth(c: Call, dt: DType) -> Val:
    # torch: `const opmath_t one_sixth(1.0f / 6.0f)`: a float even when opmath is double
    return c.b.const(float(np.float32(1.0) / np.float32(6.0)), dt.compute)


@register(aten.hardsigmoid.default)
def _hardsigmoid(c: Call) -> Val:
    x, dt = _float_input(c)
    return c.p(P.MUL, _hard_gate(c, x, dt), _one_sixth(c, dt))


@register(aten.hardswish.default)
def _hardswish(c: Call) -> Val:
    x, dt = _float_input(c)
    return c.p(P.MUL, c.p(P.MUL, x, _hard_gate(c, x, dt)), _one_sixth(c, dt))


@register(aten.threshold.default)
def _threshold(c: Call) -> Val:
    dt = c.out
    if dt is BOOL:
        raise Unsupported("threshold of bool")
    x = c.value(c.tensor("self"), dt)
    # torch: x <= threshold ? value : x, both scalars converted to the tensor's dtype
    le = c.p(P.LE, x, c.b.const(c.scalar("threshold"), dt))
    return c.where(le, c.b.const(c.scalar("value"), dt), x)


@register(aten.hardshrink.default)
def _hardshrink(c: Call) -> Val:
    x, dt = _float_input(c)
    lambd = c.b.const(c.scalar("lambd"), dt)
    # torch: (x >= -lambd && x <= lambd) ? 0 : x, i.e. |x| <= lambd; NaN stays
    return c.where(c.p(P.LE, c.p(P.ABS, x), lambd), c.b.const(0, dt), x)


@register(aten.softshrink.default)
def _softshrink(c: Call) -> Val:
    x, dt = _float_input(c)
    lambd = c.b.const(c.scalar("lambd"), dt)
    zero = c.b.const(0, dt)
    # torch: x > l ? x - l : (x < -l ? x + l : x * 0)  (x * 0 keeps NaN and -0)
    inner = c.where(c.p(P.LT, x, c.p(P.NEG, lambd)), c.p(P.ADD, x, lambd), c.p(P.MUL, x, zero))
    return c.where(c.p(P.GT, x, lambd), c.p(P.SUB, x, lambd), inner)


# -- composite math ---------------------------------------------------------------------------
@register(aten.nan_to_num.default)
def _nan_to_num(c: Call) -> Val:
    dt = c.out
    x = c.value(c.tensor("self"), dt)
    if not dt.is_float:
        return x  # torch: a copy for integer and bool tensors
    x = _held(c, x)
    info = torch.finfo(dt.torch)
    nan = c["nan"] if c["nan"] is not None else 0.0
    pos = c["posinf"] if c["posinf"] is not None else float(info.max)
    neg = c["neginf"] if c["neginf"] is not None else float(info.min)
    # torch: isnan ? nan : (x == inf ? posinf : (x == -inf ? neginf : x)), each replacement
    # converted to the tensor's dtype
    r_nan, r_pos, r_neg = (c.b.const(_literal(v, "replacement"), dt) for v in (nan, pos, neg))
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
        return small() if abs(_const_of(w, dt)) < 0.5 else large()
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
register(aten.addcdiv.default)(lambda c: _addc(c, P.DIV))


def _logaddexp_of(c: Call, base2: bool) -> Val:
    dt = c.float_out()
    a, b = c.value(c.tensor("self"), dt), c.value(c.tensor("other"), dt)
    # torch (LogAddExpKernel.cu): isinf(a) && a == b ? a : max(a, b) + log1p(exp(-|a - b|))
    m = c.p(P.MAXIMUM, a, b)
    neg = c.p(P.NEG, c.p(P.ABS, c.p(P.SUB, a, b)))
    if base2:
        inv_ln2 = c.b.const(_const_of(1.0 / math.log(2.0), dt), dt.compute)
        tail = c.p(P.MUL, c.p(P.LOG1P, c.p(P.EXP2, neg)), inv_ln2)
    else:
        tail = c.p(P.LOG1P, c.p(P.EXP, neg))
    general = c.p(P.ADD, m, tail)
    same_inf = c.where(c.p(P.EQ, a, b), a, general)
    return c.where(c.p(P.ISINF, a), same_inf, general)


register(aten.logaddexp.default)(lambda c: _logaddexp_of(c, False))
register(aten.logaddexp2.default)(lambda c: _logaddexp_of(c, True))


@register(*_ops("xlogy", "Tensor", "Scalar_Self", "Scalar_Other"), _op("special_xlogy"))
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
    x, dt = _float_input(c)
    # torch: a == 0 ? 1 : sin(pi * a) / (pi * a)
    product = c.p(P.MUL, c.b.const(_const_of(math.pi, dt), dt.compute), x)
    r = c.p(P.DIV, c.p(P.SIN, product), product)
    return c.where(c.p(P.EQ, x, c.b.const(0, dt.compute)), c.b.const(1, dt.compute), r)


# -- conversions and constants ------------------------------------------------------------------
def _check_layout(c: Call) -> None:
    layout = c.args.get("layout")
    if layout not in (None, torch.strided):
        raise Unsupported(f"layout {layout}")
    if c.args.get("pin_memory"):
        raise Unsupported("pin_memory=True")
    fmt = c.args.get("memory_format")
    if fmt not in (None, torch.preserve_format, torch.contiguous_format):
        raise Unsupported(f"memory_format {fmt}")


def _convert_to(c: Call, dtype: Any) -> Val:
    _check_layout(c)
    if c.args.get("device") is not None:
        # lower_op cannot see the input's device; the caller drops `device` when it is the
        # input's own (FakeTensor meta), so any device left here may be a change.
        raise Unsupported("conversion with a device argument")
    target = c.out if dtype is None else dtypes.from_torch(dtype)
    return c.b.convert(c.tensor("self"), target)  # eager's x.to(dtype): rounds halves


@register(aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout)
def _to_copy(c: Call) -> Val:
    return _convert_to(c, c.args.get("dtype"))


@register(aten.to.other, aten.type_as.default)
def _to_other(c: Call) -> Val:
    _check_layout(c)
    return c.b.convert(c.tensor("self"), c.tensor("other").eager)


@register(_op("convert_element_type", ns=torch.ops.prims))
def _convert_element_type(c: Call) -> Val:
    return c.b.convert(c.tensor("a"), dtypes.from_torch(c["dtype"]))


def _filled(c: Call, value: Scalar) -> Val:
    # shape comes from the like-tensor (the caller records it); the value is the constant
    return c.b.const(value, c.out)


@register(aten.zeros_like.default)
def _zeros_like(c: Call) -> Val:
    _check_layout(c)
    return _filled(c, 0)


@register(aten.ones_like.default)
def _ones_like(c: Call) -> Val:
    _check_layout(c)
    return _filled(c, 1)


@register(aten.full_like.default)
def _full_like(c: Call) -> Val:
    _check_layout(c)
    return _filled(c, c.scalar("fill_value"))


def _zero_dim_const(c: Call, value: Scalar) -> Val:
    v = c.b.const(value, c.out)
    return Val(v.index, v.dtype, v.eager, zero_dim=True)


@register(aten.scalar_tensor.default)
def _scalar_tensor(c: Call) -> Val:
    _check_layout(c)
    return _zero_dim_const(c, c.scalar("s"))


@register(_op("scalar_tensor", ns=torch.ops.prims))
def _prims_scalar_tensor(c: Call) -> Val:
    return _zero_dim_const(c, c.scalar("s"))


@register(aten.full.default)
def _full(c: Call) -> Val:
    _check_layout(c)
    if list(c["size"]) != []:
        raise Unsupported("full() with a shape not taken from an input")
    return _zero_dim_const(c, c.scalar("fill_value"))
