"""The one op -> C table: how each fusion prim, cast and literal is spelled in CUDA C++.

Input: a prim, the C expressions of its operands and their dtypes.  Output: one fully
parenthesised C expression whose C type is exactly `result.c_type` (integer results are cast
back to their own type, so `signed char` arithmetic never leaks C's promotion to int).

The expressions rely on the helper headers listed in `HEADERS` (codegen_templates/), which the
emitter inlines, in that order, at the top of every kernel.  Semantics are those documented in
nvfuse/fusion/prims.py: eager PyTorch's CUDA kernels, including NaN propagation, signed zeros,
wrapping signed integer arithmetic and torch's integer division, remainder, pow and shift rules.
Operands are expressions of the compute dtype; float16 / bfloat16 values are computed in
float32, so those dtypes appear only in `cast_expr` (and as WHERE's operands, which only select).
Combinations a prim does not support (eager torch rejects them too) raise ValueError.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import Scalar
from nvfuse.fusion.prims import BINARY_PRED, UNARY_PRED, Prim, arity

HEADERS: tuple[str, ...] = ("nvf_types.cuh", "nvf_math.cuh")

P = Prim

# Prims whose float32 / float64 form is a CUDA math builtin: name (float adds the `f` suffix).
_FLOAT_BUILTIN: dict[Prim, str] = {
    P.SQRT: "sqrt", P.EXP: "exp", P.EXP2: "exp2", P.EXPM1: "expm1", P.LOG: "log",
    P.LOG2: "log2", P.LOG10: "log10", P.LOG1P: "log1p", P.SIN: "sin", P.COS: "cos",
    P.TAN: "tan", P.ASIN: "asin", P.ACOS: "acos", P.ATAN: "atan", P.SINH: "sinh",
    P.COSH: "cosh", P.TANH: "tanh", P.ASINH: "asinh", P.ACOSH: "acosh", P.ATANH: "atanh",
    P.ERF: "erf", P.ERFC: "erfc", P.FLOOR: "floor", P.CEIL: "ceil", P.TRUNC: "trunc",
    P.RINT: "rint", P.ABS: "fabs", P.POW: "pow", P.ATAN2: "atan2", P.HYPOT: "hypot",
    P.COPYSIGN: "copysign", P.FMAX: "fmax", P.FMIN: "fmin", P.FMOD: "fmod",
}

# Prims computed by an nvf_math.cuh template helper, called as nvf_name<T>(args...).
_FLOAT_HELPER: dict[Prim, str] = {
    P.RSQRT: "nvf_rsqrt", P.DIV_TRUNC: "nvf_div_trunc", P.DIV_FLOOR: "nvf_div_floor",
    P.REMAINDER: "nvf_remainder", P.MAXIMUM: "nvf_maximum", P.MINIMUM: "nvf_minimum",
    P.ISNAN: "nvf_isnan", P.ISINF: "nvf_isinf", P.ISFINITE: "nvf_isfinite",
    P.SIGNBIT: "nvf_signbit",
}
_INT_HELPER: dict[Prim, str] = {
    P.NEG: "nvf_neg", P.ABS: "nvf_abs", P.ADD: "nvf_add", P.SUB: "nvf_sub", P.MUL: "nvf_mul",
    P.DIV_TRUNC: "nvf_div_trunc", P.DIV_FLOOR: "nvf_div_floor", P.REMAINDER: "nvf_remainder",
    P.FMOD: "nvf_fmod", P.POW: "nvf_pow", P.MAXIMUM: "nvf_maximum", P.MINIMUM: "nvf_minimum",
    P.SHL: "nvf_shl", P.SHR: "nvf_shr", P.SIGNBIT: "nvf_signbit",
}

_FLOAT_INFIX: dict[Prim, str] = {P.ADD: "+", P.SUB: "-", P.MUL: "*", P.DIV: "/"}
_INT_BITWISE: dict[Prim, str] = {P.BITWISE_AND: "&", P.BITWISE_OR: "|", P.BITWISE_XOR: "^"}
_COMPARE: dict[Prim, str] = {P.EQ: "==", P.NE: "!=", P.LT: "<", P.LE: "<=", P.GT: ">", P.GE: ">="}
# Integer prims that are the identity (torch.floor etc. on integers return the input).
_INT_IDENTITY = frozenset({P.FLOOR, P.CEIL, P.TRUNC, P.RINT})

# bool: what eager torch accepts (add is or, mul is and, ...); everything else it rejects.
_BOOL_BINARY: dict[Prim, str] = {
    P.ADD: "||", P.MAXIMUM: "||", P.BITWISE_OR: "||",
    P.MUL: "&&", P.MINIMUM: "&&", P.BITWISE_AND: "&&",
    P.BITWISE_XOR: "!=",
}

_FLOAT_DTYPES = (DType.FLOAT32, DType.FLOAT64)


def c_type(dtype: DType) -> str:
    """The C type of one element of `dtype` (in memory and in registers)."""
    return dtype.c_type


# -- prims ---------------------------------------------------------------------------------


def _unsupported(prim: Prim, dtype: DType, why: str = "not supported") -> ValueError:
    return ValueError(f"nvfuse codegen: prim {prim.value} on {dtype}: {why}")


def _call(name: str, args: Sequence[str]) -> str:
    return f"{name}(" + ", ".join(args) + ")"


def _float_expr(prim: Prim, args: Sequence[str], dtype: DType) -> str:
    suffix = "f" if dtype is DType.FLOAT32 else ""
    if prim in _FLOAT_INFIX:
        return f"(({args[0]}) {_FLOAT_INFIX[prim]} ({args[1]}))"
    if prim is P.NEG:
        return f"(-({args[0]}))"
    if prim is P.RECIPROCAL:
        # torch computes 1 / x (a true division, not the approximate rcp instruction)
        return f"(1.0{suffix} / ({args[0]}))"
    if prim in _FLOAT_BUILTIN:
        return _call(_FLOAT_BUILTIN[prim] + suffix, args)
    if prim in _FLOAT_HELPER:
        return _call(f"{_FLOAT_HELPER[prim]}<{dtype.c_type}>", args)
    raise _unsupported(prim, dtype, "integer-only prim")


def _int_expr(prim: Prim, args: Sequence[str], dtype: DType) -> str:
    t = dtype.c_type
    if prim in _INT_HELPER:
        return _call(f"{_INT_HELPER[prim]}<{t}>", args)
    if prim in _INT_BITWISE:
        return f"(({t})(({args[0]}) {_INT_BITWISE[prim]} ({args[1]})))"
    if prim is P.BITWISE_NOT:
        return f"(({t})(~({args[0]})))"
    if prim in _INT_IDENTITY:
        return f"({args[0]})"
    raise _unsupported(prim, dtype, "float-only prim")


def _bool_expr(prim: Prim, args: Sequence[str], dtype: DType) -> str:
    if prim in _BOOL_BINARY:
        return f"(({args[0]}) {_BOOL_BINARY[prim]} ({args[1]}))"
    if prim is P.BITWISE_NOT:
        return f"(!({args[0]}))"
    if prim is P.SIGNBIT:
        return "false"
    raise _unsupported(prim, dtype, "torch does not support it on bool")


def _check_types(prim: Prim, operand: DType, result: DType) -> None:
    predicate = prim in UNARY_PRED or prim in BINARY_PRED
    expected = DType.BOOL if predicate else operand
    if result is not expected:
        raise ValueError(
            f"nvfuse codegen: prim {prim.value} on {operand} gives {expected}, not {result}")
    if operand.is_reduced_float and prim is not P.WHERE:
        raise _unsupported(prim, operand, "float16/bfloat16 are computed in float32")


def prim_expr(prim: Prim, args: Sequence[str], operand: DType, result: DType) -> str:
    """C expression for `prim(*args)`; `args` are C expressions of dtype `operand`.

    WHERE takes (cond, a, b) with cond bool and a, b of `operand`.  Not for LOAD, CONST, CAST.
    """
    if prim in (P.LOAD, P.CONST, P.CAST):
        raise ValueError(f"nvfuse codegen: prim {prim.value} has no prim_expr (dtype {operand})")
    if len(args) != arity(prim):
        raise ValueError(
            f"nvfuse codegen: prim {prim.value} on {operand} takes {arity(prim)} args, "
            f"got {len(args)}")
    _check_types(prim, operand, result)
    if prim is P.WHERE:
        return f"(({args[0]}) ? ({args[1]}) : ({args[2]}))"
    if prim in _COMPARE:
        return f"(({args[0]}) {_COMPARE[prim]} ({args[1]}))"
    if operand in _FLOAT_DTYPES:
        return _float_expr(prim, args, operand)
    if operand is DType.BOOL:
        return _bool_expr(prim, args, operand)
    return _int_expr(prim, args, operand)


# -- casts ---------------------------------------------------------------------------------


def cast_expr(arg: str, src: DType, dst: DType) -> str:
    """C expression converting `arg` (of dtype `src`) to `dst` with torch's semantics."""
    if src is dst:
        return arg
    return f"nvf_cast<{dst.c_type}, {src.c_type}>({arg})"


# -- literals ------------------------------------------------------------------------------

_INT_RANGE: dict[DType, tuple[int, int]] = {
    DType.UINT8: (0, 255), DType.INT8: (-128, 127), DType.INT16: (-(2**15), 2**15 - 1),
    DType.INT32: (-(2**31), 2**31 - 1), DType.INT64: (-(2**63), 2**63 - 1),
}


def _as_int(value: Scalar, dtype: DType) -> int:
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError(f"nvfuse codegen: literal {value!r} is not a {dtype} value")
        value = int(value)
    low, high = _INT_RANGE[dtype]
    if not low <= int(value) <= high:
        raise ValueError(f"nvfuse codegen: literal {value!r} is out of range for {dtype}")
    return int(value)


def _int_literal(v: int, dtype: DType) -> str:
    if dtype is DType.INT64:
        # -9223372036854775808LL would be unary minus on an out-of-range literal
        return "(-9223372036854775807LL - 1LL)" if v == -(2**63) else _signed(f"{v}LL", v)
    if dtype is DType.INT32:
        return "(-2147483647 - 1)" if v == -(2**31) else _signed(str(v), v)
    return f"(({dtype.c_type}){v})"


def _signed(text: str, v: int) -> str:
    return f"({text})" if v < 0 else text


def _int_to_float32(v: int) -> np.float32:
    """Round a Python int to float32 once (to nearest even), as static_cast<float>(int64)."""
    magnitude = abs(v)
    if magnitude <= 2**53:  # exact as a double, so one rounding step
        return np.float32(float(v))
    shift = magnitude.bit_length() - 24
    q, r = divmod(magnitude, 1 << shift)
    half = 1 << (shift - 1)
    if r > half or (r == half and q & 1):
        q += 1
    with np.errstate(over="ignore"):
        return np.float32(math.copysign(float(q << shift), v))


def _decimal(text: str) -> str:
    """Make a shortest-repr number a C floating literal (it needs a '.' or an exponent)."""
    return text if any(c in text for c in ".eE") else text + ".0"


def _float32_literal(x: np.float32) -> str:
    bits = int(np.array(x, dtype=np.float32).view(np.uint32))
    if not math.isfinite(float(x)):
        return f"nvf_bits_as_float(0x{bits:08x}u)"
    # numpy's float32 str is the shortest decimal that parses back to exactly x
    text = _decimal(str(x)) + "f"
    return f"({text})" if bits >> 31 else text


def _float64_literal(x: float) -> str:
    if not math.isfinite(x):
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        return f"nvf_bits_as_double(0x{bits:016x}ull)"
    text = _decimal(repr(x))
    return f"({text})" if math.copysign(1.0, x) < 0 else text


def literal(value: Scalar, dtype: DType) -> str:
    """An exact C literal of compute dtype `dtype` for the Python scalar `value`.

    Floats round once, to nearest even, as torch converts a Python scalar (float32 from the
    double, or directly from the int); NaN and inf keep their bits via nvf_bits_as_*.
    Integers must be in range; floats given for integer dtypes must be whole.
    """
    if dtype is DType.BOOL:
        return "true" if value else "false"  # torch: any nonzero (and NaN) is True
    if dtype.is_int:
        return _int_literal(_as_int(value, dtype), dtype)
    if dtype is DType.FLOAT32:
        if isinstance(value, float):
            with np.errstate(over="ignore"):
                return _float32_literal(np.float32(value))
        return _float32_literal(_int_to_float32(int(value)))
    if dtype is DType.FLOAT64:
        return _float64_literal(float(value))  # float(int) rounds to nearest even
    raise ValueError(f"nvfuse codegen: no literal of {dtype}; it is computed in float32")
