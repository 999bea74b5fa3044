"""Fusion prims on numpy arrays, with eager PyTorch's (CUDA) semantics.

Input: a `Prim`, its argument arrays, the operand dtype and the result dtype.  Output: a new
numpy array of the result dtype's storage type (`DType.np_storage`).

Value representation (shared with the fusion evaluator and the kernel-IR machine):
- every dtype is held in its `np_storage` type; bfloat16 values are uint16 *bit patterns*;
- arithmetic never sees float16/bfloat16 operands (they are computed in float32, as on the
  device); only `cast` converts to and from them;
- arguments may be 0-d arrays, numpy scalars or Python scalars; they broadcast like numpy.

Float ops on float32 stay float32 (arguments are converted to the operand storage type first,
so numpy's promotion never widens them).  Integer arithmetic wraps around.  Numpy floating
point warnings are silenced: IEEE results (inf, NaN) are the intended answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.prims import BINARY_PRED, UNARY_PRED, Prim
from nvfuse.interpret.bf16 import bf16_to_f32, f32_to_bf16

P = Prim
Array = np.ndarray
ArrayFn = Callable[..., Any]


# -- casts ---------------------------------------------------------------------------------


def cast(x: Any, src: DType, dst: DType) -> np.ndarray:
    """Convert values of dtype `src` (in its storage type) to dtype `dst` (its storage type).

    float -> int truncates toward zero; NaN gives 0 and out-of-range values saturate (what the
    device's cvt.rzi does; it is undefined behaviour in C++), except uint8, which torch converts
    through int64 and wraps.  Reduced floats are rounded from float32 (torch converts double and
    int64 to half/bfloat16 through float).  Anything -> bool is `x != 0`.
    """
    value = _widen(np.asarray(x, dtype=src.np_storage), src)
    with np.errstate(all="ignore"):
        if dst is DType.BOOL:
            return np.asarray(value != 0)
        if dst is DType.BFLOAT16:
            return f32_to_bf16(value.astype(np.float32))
        if dst is DType.FLOAT16:
            return value.astype(np.float32).astype(np.float16)
        if dst.is_float:
            return value.astype(dst.np_storage)
        if value.dtype.kind == "f":
            return _float_to_int(value, dst)
        return value.astype(dst.np_storage)


def _widen(x: np.ndarray, src: DType) -> np.ndarray:
    """Reduced-float storage -> float32 values; other dtypes unchanged."""
    if src is DType.BFLOAT16:
        return bf16_to_f32(x)
    if src is DType.FLOAT16:
        return x.astype(np.float32)
    return x


def _float_to_int(value: np.ndarray, dst: DType) -> np.ndarray:
    whole = np.trunc(value)
    whole = np.where(np.isnan(whole), 0, whole)
    if dst is DType.UINT8:
        return _saturate(whole, np.int64).astype(np.uint8)
    return _saturate(whole, dst.np_storage)


def _saturate(whole: np.ndarray, int_type: type) -> np.ndarray:
    info = np.iinfo(int_type)
    # float(info.max) rounds up to a power of two, so `>=` catches every value that overflows.
    high = whole >= float(info.max)
    low = whole <= float(info.min)
    inside: np.ndarray = np.where(high | low, 0, whole)
    inside = inside.astype(int_type)
    return np.where(high, info.max, np.where(low, info.min, inside)).astype(int_type)


# -- integer helpers -----------------------------------------------------------------------


def _one(x: np.ndarray) -> Any:
    return x.dtype.type(1)


def _safe_divisor(b: np.ndarray) -> np.ndarray:
    return np.where(b == 0, _one(b), b)


def _int_div_floor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # x / 0 is undefined on the device (PTX gives an unspecified value); we give -1.
    q = np.floor_divide(a, _safe_divisor(b))
    return np.where(b == 0, a.dtype.type(-1) if a.dtype.kind == "i" else ~a.dtype.type(0), q)


def _int_div_trunc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    safe = _safe_divisor(b)
    q = np.floor_divide(a, safe)
    r = np.remainder(a, safe)
    # Floor and truncation differ by one when the division is inexact and the signs differ.
    fix = (r != 0) & ((a < 0) != (safe < 0))
    q = q + fix.astype(q.dtype)
    return np.where(b == 0, _int_div_floor(a, b), q)


def _int_mod(fn: ArrayFn) -> ArrayFn:
    def mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # x % 0 is undefined on the device; we keep x (so that x == (x / 0) * 0 + x % 0).
        return np.where(b == 0, a, fn(a, _safe_divisor(b)))

    return mod


def _int_pow(base: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """Exact power by repeated squaring, wrapping; negative exponents follow torch's rule."""
    base, exp = np.broadcast_arrays(base, exp)
    negative = exp < 0
    e = np.where(negative, 0, exp).astype(np.uint64)
    result = np.ones_like(base)
    square = base.copy()
    while True:
        result = np.where((e & np.uint64(1)) != 0, result * square, result)
        e = e >> np.uint64(1)
        if not e.any():
            break
        square = square * square
    if negative.any():
        odd = (exp & 1) != 0
        minus_one = np.where(odd, base.dtype.type(-1), _one(base))
        special = np.where(base == 1, _one(base), np.where(base == -1, minus_one, 0))
        result = np.where(negative, special, result)
    return result


def _shift(left: bool) -> ArrayFn:
    def shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        bits = 8 * a.dtype.itemsize
        out_of_range = (b < 0) | (b >= bits)
        safe = np.where(out_of_range, 0, b).astype(a.dtype)
        if left:
            return np.where(out_of_range, 0, np.left_shift(a, safe))
        # torch: a >> (bits - 1) for signed types (sign fill), 0 for unsigned ones.
        fill = np.right_shift(a, bits - 1) if a.dtype.kind == "i" else np.zeros_like(a)
        return np.where(out_of_range, fill, np.right_shift(a, safe))

    return shift


# -- float helpers -------------------------------------------------------------------------


def _float_div_floor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """torch's div_floor_floating, step by step (it differs from a / b floored near ties)."""
    mod = np.fmod(a, b)
    div = (a - mod) / b
    div = np.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1, div)
    floor = np.floor(div)
    floor = np.where(div - floor > 0.5, floor + 1, floor)
    zero = np.copysign(np.zeros_like(div), a / b)
    result = np.where(div != 0, floor, zero)
    return np.where(b == 0, a / b, result)


def _float_remainder(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Not np.remainder: numpy gives +0 with the divisor's sign where torch keeps fmod's zero.
    mod = np.fmod(a, b)
    return np.where((mod != 0) & ((b < 0) != (mod < 0)), mod + b, mod)


def _via_torch(fn: Callable[[torch.Tensor], torch.Tensor]) -> ArrayFn:
    """numpy has no erf/erfc; borrow torch's (same dtype in, same dtype out)."""

    def apply(x: np.ndarray) -> np.ndarray:
        return fn(torch.from_numpy(np.array(x, copy=True))).numpy()

    return apply


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return x.dtype.type(1) / np.sqrt(x)


def _identity(x: np.ndarray) -> np.ndarray:
    return x.copy()


def _signbit(x: np.ndarray) -> np.ndarray:
    return np.signbit(x) if x.dtype.kind == "f" else x < 0


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.trunc(a / b)


# -- tables --------------------------------------------------------------------------------

_COMMON: dict[Prim, ArrayFn] = {
    P.NEG: np.negative, P.ABS: np.abs, P.BITWISE_NOT: np.invert,
    P.ISNAN: np.isnan, P.ISINF: np.isinf, P.ISFINITE: np.isfinite, P.SIGNBIT: _signbit,
    P.ADD: np.add, P.SUB: np.subtract, P.MUL: np.multiply,
    P.MAXIMUM: np.maximum, P.MINIMUM: np.minimum,
    P.BITWISE_AND: np.bitwise_and, P.BITWISE_OR: np.bitwise_or, P.BITWISE_XOR: np.bitwise_xor,
    P.EQ: np.equal, P.NE: np.not_equal, P.LT: np.less, P.LE: np.less_equal,
    P.GT: np.greater, P.GE: np.greater_equal,
}

_FLOAT: dict[Prim, ArrayFn] = {
    P.RECIPROCAL: np.reciprocal, P.SQRT: np.sqrt, P.RSQRT: _rsqrt,
    P.EXP: np.exp, P.EXP2: np.exp2, P.EXPM1: np.expm1,
    P.LOG: np.log, P.LOG2: np.log2, P.LOG10: np.log10, P.LOG1P: np.log1p,
    P.SIN: np.sin, P.COS: np.cos, P.TAN: np.tan,
    P.ASIN: np.arcsin, P.ACOS: np.arccos, P.ATAN: np.arctan,
    P.SINH: np.sinh, P.COSH: np.cosh, P.TANH: np.tanh,
    P.ASINH: np.arcsinh, P.ACOSH: np.arccosh, P.ATANH: np.arctanh,
    P.ERF: _via_torch(torch.special.erf), P.ERFC: _via_torch(torch.special.erfc),
    P.FLOOR: np.floor, P.CEIL: np.ceil, P.TRUNC: np.trunc, P.RINT: np.rint,
    P.DIV: np.true_divide, P.DIV_TRUNC: _trunc_div, P.DIV_FLOOR: _float_div_floor,
    P.REMAINDER: _float_remainder, P.FMOD: np.fmod, P.POW: np.power,
    P.ATAN2: np.arctan2, P.HYPOT: np.hypot, P.FMAX: np.fmax, P.FMIN: np.fmin,
    P.COPYSIGN: np.copysign,
}

_INT: dict[Prim, ArrayFn] = {
    P.FLOOR: _identity, P.CEIL: _identity, P.TRUNC: _identity, P.RINT: _identity,
    P.DIV_TRUNC: _int_div_trunc, P.DIV_FLOOR: _int_div_floor,
    P.REMAINDER: _int_mod(np.remainder), P.FMOD: _int_mod(np.fmod), P.POW: _int_pow,
    P.SHL: _shift(left=True), P.SHR: _shift(left=False),
}

# bool arithmetic that numpy refuses (or gets wrong) is done on 0/1 bytes, then tested != 0.
_BOOL_NATIVE = frozenset({
    P.BITWISE_NOT, P.BITWISE_AND, P.BITWISE_OR, P.BITWISE_XOR, P.MAXIMUM, P.MINIMUM,
}) | BINARY_PRED | UNARY_PRED


def _lookup(prim: Prim, operand: DType) -> ArrayFn:
    table = _FLOAT if operand.is_float else _INT
    fn = table.get(prim) or _COMMON.get(prim)
    if fn is None:
        raise NotImplementedError(f"interpreter: prim {prim.value} on {operand}")
    return fn


def apply_prim(prim: Prim, args: Sequence[Any], operand: DType, result: DType) -> np.ndarray:
    """`prim(*args)` with operands of dtype `operand`, as an array of `result`'s storage."""
    if prim is P.CAST:
        return cast(args[0], operand, result)
    compute = operand.compute
    with np.errstate(all="ignore"):
        if prim is P.WHERE:
            cond = np.asarray(args[0], dtype=np.bool_)
            a: np.ndarray = np.asarray(args[1], dtype=compute.np_storage)
            b: np.ndarray = np.asarray(args[2], dtype=compute.np_storage)
            return np.asarray(np.where(cond, a, b), dtype=result.np_storage)
        if compute is DType.BOOL and prim not in _BOOL_NATIVE:
            values = [np.asarray(x, dtype=np.bool_).astype(np.uint8) for x in args]
            out = _lookup(prim, DType.UINT8)(*values)
        else:
            values = [np.asarray(x, dtype=compute.np_storage) for x in args]
            out = _lookup(prim, compute)(*values)
        return np.asarray(out).astype(result.np_storage, copy=False)
