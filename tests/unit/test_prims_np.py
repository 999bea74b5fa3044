"""prims_np and bf16 against torch on the CPU (whose semantics equal eager CUDA for these ops)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.prims import BINARY_PRED, FLOAT_ONLY, INT_ONLY, UNARY_PRED, Prim
from nvfuse.interpret.bf16 import bf16_to_f32, f32_to_bf16
from nvfuse.interpret.prims_np import apply_prim, cast

P = Prim
FLOATS = [DType.FLOAT32, DType.FLOAT64]
INTS = [DType.UINT8, DType.INT8, DType.INT16, DType.INT32, DType.INT64]

SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.0, -3.0, 7.0, -7.0, 0.1, -0.1,
    100.0, 1e-7, 1e-45, -1e-45, 1e-40, -3e-39, 3.0e38, -3.0e38, float("inf"), float("-inf"),
    float("nan"), 0.9999999, 1.0000001, 123456.789, -65504.0,
]


def special_ints(dtype: DType) -> np.ndarray:
    info = np.iinfo(dtype.np_storage)
    values = {0, 1, 2, 3, 7, 9, 64, info.max, info.max - 1, info.min, info.min + 1, 200, 31, 33}
    if dtype.is_signed:
        values |= {-1, -2, -3, -7, -9, -64, -200, -31, -33}
    return np.array(sorted(v for v in values if info.min <= v <= info.max), dtype=dtype.np_storage)


def special_values(dtype: DType) -> np.ndarray:
    if dtype.is_float:
        return np.array(SPECIAL_FLOATS, dtype=dtype.np_storage)
    if dtype is DType.BOOL:
        return np.array([False, True])
    return special_ints(dtype)


def assert_same(got: np.ndarray, want: np.ndarray, exact: bool, what: str) -> None:
    """Exact: equal bits (any NaN matches any NaN).  Else a few ulp, with NaN/inf in place."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.dtype.kind != "f":
        bad = got != want
    elif exact:
        both_nan = np.isnan(got) & np.isnan(want)
        bad = ~both_nan & (got.view(f"u{got.itemsize}") != want.view(f"u{want.itemsize}"))
    else:
        tol = 4 * np.finfo(got.dtype).eps
        close = np.isclose(got, want, rtol=tol, atol=np.finfo(got.dtype).tiny, equal_nan=True)
        bad = ~close | (np.isnan(got) != np.isnan(want))
    if bad.any():
        index = np.flatnonzero(bad)[:8]
        raise AssertionError(
            f"{what}: {bad.sum()} mismatches, got {got.ravel()[index]} want {want.ravel()[index]}")


# -- bfloat16 ------------------------------------------------------------------------------


def torch_bf16_bits(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(x).bfloat16().view(torch.int16).numpy().view(np.uint16)


def test_bf16_special_values() -> None:
    x = np.array(SPECIAL_FLOATS + [3.4028235e38, -3.4028235e38, 1.17549435e-38], np.float32)
    got = f32_to_bf16(x)
    want = torch_bf16_bits(x)
    nan = np.isnan(x)
    assert (got[~nan] == want[~nan]).all()
    assert (got[nan] == 0x7FC0).all()
    assert (got == torch.tensor(float("nan")).bfloat16().view(torch.int16).item()).sum() == 1


def test_bf16_random_and_halfway_bits() -> None:
    rng = np.random.default_rng(0)
    high = rng.integers(0, 1 << 16, size=200_000, dtype=np.uint32) << np.uint32(16)
    low = rng.integers(0, 1 << 16, size=200_000, dtype=np.uint32)
    # Ties, one below and one above a tie, exact values and the all-ones tail.
    ties = np.array([0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF], dtype=np.uint32)
    bits = np.concatenate([high | low, (high[:, None] | ties).ravel()])
    denormal = rng.integers(0, 1 << 23, size=50_000, dtype=np.uint32)  # exponent 0
    bits = np.concatenate([bits, denormal, denormal | np.uint32(1 << 31)])
    x = bits.view(np.float32)
    got, want = f32_to_bf16(x), torch_bf16_bits(x)
    nan = np.isnan(x)
    assert (got[~nan] == want[~nan]).all()
    assert np.isnan(bf16_to_f32(got[nan])).all()


def test_bf16_to_f32_all_patterns() -> None:
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert_same(bf16_to_f32(bits), want, exact=True, what="bf16_to_f32")
    # Every non-NaN pattern survives the round trip.
    finite = ~np.isnan(want)
    assert (f32_to_bf16(want)[finite] == bits[finite]).all()


# -- prims against torch -------------------------------------------------------------------

UNARY_TORCH: dict[Prim, Callable[[torch.Tensor], torch.Tensor]] = {
    P.NEG: torch.neg, P.ABS: torch.abs, P.RECIPROCAL: torch.reciprocal, P.SQRT: torch.sqrt,
    P.RSQRT: torch.rsqrt, P.EXP: torch.exp, P.EXP2: torch.exp2, P.EXPM1: torch.expm1,
    P.LOG: torch.log, P.LOG2: torch.log2, P.LOG10: torch.log10, P.LOG1P: torch.log1p,
    P.SIN: torch.sin, P.COS: torch.cos, P.TAN: torch.tan, P.ASIN: torch.asin,
    P.ACOS: torch.acos, P.ATAN: torch.atan, P.SINH: torch.sinh, P.COSH: torch.cosh,
    P.TANH: torch.tanh, P.ASINH: torch.asinh, P.ACOSH: torch.acosh, P.ATANH: torch.atanh,
    P.ERF: torch.erf, P.ERFC: torch.erfc, P.FLOOR: torch.floor, P.CEIL: torch.ceil,
    P.TRUNC: torch.trunc, P.RINT: torch.round, P.BITWISE_NOT: torch.bitwise_not,
    P.ISNAN: torch.isnan, P.ISINF: torch.isinf, P.ISFINITE: torch.isfinite,
    P.SIGNBIT: torch.signbit,
}
BINARY_TORCH: dict[Prim, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    P.ADD: torch.add, P.SUB: torch.sub, P.MUL: torch.mul, P.DIV: torch.div,
    P.DIV_TRUNC: lambda a, b: torch.div(a, b, rounding_mode="trunc"),
    P.DIV_FLOOR: lambda a, b: torch.div(a, b, rounding_mode="floor"),
    P.REMAINDER: torch.remainder, P.FMOD: torch.fmod, P.POW: torch.pow, P.ATAN2: torch.atan2,
    P.HYPOT: torch.hypot, P.MAXIMUM: torch.maximum, P.MINIMUM: torch.minimum,
    P.FMAX: torch.fmax, P.FMIN: torch.fmin, P.COPYSIGN: torch.copysign,
    P.BITWISE_AND: torch.bitwise_and, P.BITWISE_OR: torch.bitwise_or,
    P.BITWISE_XOR: torch.bitwise_xor, P.SHL: torch.bitwise_left_shift,
    P.SHR: torch.bitwise_right_shift, P.EQ: torch.eq, P.NE: torch.ne, P.LT: torch.lt,
    P.LE: torch.le, P.GT: torch.gt, P.GE: torch.ge,
}
# Results that must match torch bit for bit; the rest are libm-dependent (a few ulp).  sqrt is
# correctly rounded here and on CUDA, but torch's vectorized CPU sqrt is 1 ulp off near 3e38.
EXACT = frozenset({
    P.NEG, P.ABS, P.RECIPROCAL, P.FLOOR, P.CEIL, P.TRUNC, P.RINT, P.BITWISE_NOT,
    P.ADD, P.SUB, P.MUL, P.DIV, P.DIV_TRUNC, P.DIV_FLOOR, P.REMAINDER, P.FMOD, P.FMAX, P.FMIN,
    P.COPYSIGN, P.BITWISE_AND, P.BITWISE_OR, P.BITWISE_XOR, P.SHL, P.SHR,
}) | UNARY_PRED | BINARY_PRED
# Which zero maximum(-0, +0) returns is not specified by torch (CPU and CUDA differ).
SIGNED_ZERO_FREE = frozenset({P.MAXIMUM, P.MINIMUM, P.FMAX, P.FMIN})


def result_dtype(prim: Prim, operand: DType) -> DType:
    return DType.BOOL if prim in UNARY_PRED or prim in BINARY_PRED else operand


def applicable(prim: Prim, dtype: DType) -> bool:
    if prim in FLOAT_ONLY:
        return dtype.is_float
    if prim in INT_ONLY:
        return not dtype.is_float
    return True


def check(prim: Prim, dtype: DType, args: list[np.ndarray], want: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning may leak out of apply_prim
        got = apply_prim(prim, args, dtype, result_dtype(prim, dtype))
    want_np = want.numpy()
    exact = prim in EXACT or not dtype.is_float
    if prim in SIGNED_ZERO_FREE and dtype.is_float:
        got, want_np = got + 0, want_np + 0  # -0 + 0 == +0: forget the zero's sign
    assert_same(got, want_np, exact, f"{prim.value}<{dtype}>")


def cases(prims: list[Prim], dtypes: list[DType]) -> list[tuple[Prim, DType]]:
    """The (prim, dtype) pairs the typing rules allow."""
    return [(p, d) for p in prims for d in dtypes if applicable(p, d)]


def case_id(case: tuple[Prim, DType]) -> str:
    return f"{case[0].value}-{case[1]}"


# abs(uint8) is not defined by torch; signbit on ints is x < 0 (tested below).
UNARY_CASES = [(p, d) for p, d in cases(list(UNARY_TORCH), FLOATS + INTS)
               if not (p is P.ABS and d is DType.UINT8) and not (p is P.SIGNBIT and d in INTS)]


@pytest.mark.parametrize("case", UNARY_CASES, ids=case_id)
def test_unary(case: tuple[Prim, DType]) -> None:
    prim, dtype = case
    x = special_values(dtype)
    check(prim, dtype, [x], UNARY_TORCH[prim](torch.from_numpy(x)))


def test_signbit_ints() -> None:
    x = special_ints(DType.INT32)
    assert (apply_prim(P.SIGNBIT, [x], DType.INT32, DType.BOOL) == (x < 0)).all()


def grid(dtype: DType) -> tuple[np.ndarray, np.ndarray]:
    values = special_values(dtype)
    a, b = np.meshgrid(values, values, indexing="ij")
    return a.ravel(), b.ravel()


@pytest.mark.parametrize("case", cases(list(BINARY_TORCH), FLOATS), ids=case_id)
def test_binary_float(case: tuple[Prim, DType]) -> None:
    prim, dtype = case
    a, b = grid(dtype)
    if prim in (P.FMOD, P.REMAINDER) and dtype is DType.FLOAT32:
        # torch's vectorized CPU fmodf returns NaN when a / b overflows (a tiny divisor); C's
        # fmodf, CUDA's and ours are exact there.  Compare the rest.
        with np.errstate(all="ignore"):
            keep = ~(np.abs(a.astype(np.float64) / b) > np.finfo(np.float32).max) | ~np.isfinite(a)
        a, b = a[keep], b[keep]
    check(prim, dtype, [a, b], BINARY_TORCH[prim](torch.from_numpy(a), torch.from_numpy(b)))


def test_fmod_with_tiny_divisor_is_exact() -> None:
    a = np.array([1.5, -1.5], dtype=np.float32)
    b = np.array([-3.000001e-39, 1e-45], dtype=np.float32)
    got = apply_prim(P.FMOD, [a, b], DType.FLOAT32, DType.FLOAT32)
    assert got.tolist() == np.fmod(a.astype(np.float64), b.astype(np.float64)).astype(
        np.float32).tolist()


DIVISIONS = frozenset({P.DIV_TRUNC, P.DIV_FLOOR, P.REMAINDER, P.FMOD})


@pytest.mark.parametrize("case", cases(list(BINARY_TORCH), INTS), ids=case_id)
def test_binary_int(case: tuple[Prim, DType]) -> None:
    prim, dtype = case
    a, b = grid(dtype)
    if prim in DIVISIONS:
        # torch raises on x / 0 and the CPU traps on MIN / -1: both are tested apart.
        keep = (b != 0) & ~((a == np.iinfo(a.dtype).min) & (b == b.dtype.type(-1) if
                                                         dtype.is_signed else False))
        a, b = a[keep], b[keep]
    check(prim, dtype, [a, b], BINARY_TORCH[prim](torch.from_numpy(a), torch.from_numpy(b)))


@pytest.mark.parametrize("prim", sorted(DIVISIONS, key=lambda p: p.value), ids=lambda p: p.value)
def test_int_division_corner_cases_do_not_crash(prim: Prim) -> None:
    a = np.array([5, -5, np.iinfo(np.int32).min, 0], dtype=np.int32)
    b = np.array([0, 0, -1, 0], dtype=np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = apply_prim(prim, [a, b], DType.INT32, DType.INT32)
    assert got.dtype == np.int32
    if prim in (P.DIV_TRUNC, P.DIV_FLOOR):
        assert got[2] == np.iinfo(np.int32).min  # wraps, as the device does
    else:
        assert got[2] == 0


def test_int_pow_exact_and_negative_exponents() -> None:
    base = np.array([3, 3, -3, 1, -1, -1, 2, 0, 7], dtype=np.int64)
    exp = np.array([39, 40, 39, -5, -3, -4, -1, -2, 63], dtype=np.int64)
    got = apply_prim(P.POW, [base, exp], DType.INT64, DType.INT64)
    want = [pow(int(x), int(e), 1 << 64) if e >= 0 else None for x, e in zip(base, exp)]
    wrapped = [np.int64(np.uint64(w)) if w is not None else None for w in want]
    assert list(got[[0, 1, 2, 8]]) == [wrapped[i] for i in (0, 1, 2, 8)]
    assert list(got[3:8]) == [1, -1, 1, 0, 0]
    assert (got == torch.pow(torch.from_numpy(base), torch.from_numpy(exp)).numpy()).all()


BOOL_BINARY = [P.ADD, P.MUL, P.MAXIMUM, P.MINIMUM, P.BITWISE_AND, P.BITWISE_OR, P.BITWISE_XOR,
               P.EQ, P.NE, P.LT, P.LE, P.GT, P.GE]


@pytest.mark.parametrize("prim", BOOL_BINARY, ids=lambda p: p.value)
def test_binary_bool(prim: Prim) -> None:
    a, b = grid(DType.BOOL)
    check(prim, DType.BOOL, [a, b], BINARY_TORCH[prim](torch.from_numpy(a), torch.from_numpy(b)))


def test_where_and_scalar_broadcast_keep_float32() -> None:
    cond = np.array([True, False, True])
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    got = apply_prim(P.WHERE, [cond, a, np.float32(-1)], DType.FLOAT32, DType.FLOAT32)
    assert got.dtype == np.float32 and got.tolist() == [1.0, -1.0, 3.0]
    # A 0-d float32 with a Python float must not widen to float64.
    assert apply_prim(P.MUL, [np.float32(3), 0.1], DType.FLOAT32, DType.FLOAT32).dtype == np.float32
    got = apply_prim(P.ADD, [np.array(1e-8, np.float32), 1.0], DType.FLOAT32, DType.FLOAT32)
    assert got == np.float32(1.0)


def test_signed_int_arithmetic_wraps_silently() -> None:
    big = np.array([np.iinfo(np.int32).max], dtype=np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_prim(P.ADD, [big, 1], DType.INT32, DType.INT32)[0] == np.iinfo(np.int32).min
        scalar = np.int64(np.iinfo(np.int64).max)
        assert apply_prim(P.MUL, [scalar, scalar], DType.INT64, DType.INT64) == 1
        assert apply_prim(P.NEG, [np.int8(-128)], DType.INT8, DType.INT8) == -128


# -- casts ---------------------------------------------------------------------------------

ALL = [DType.BOOL, *INTS, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32, DType.FLOAT64]


def storage_of(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Values (float64/int) -> storage of `dtype` through torch (the reference)."""
    t = torch.from_numpy(values).to(dtype.torch)
    return t.view(torch.int16).numpy().view(np.uint16) if dtype is DType.BFLOAT16 else t.numpy()


def cast_sources(src: DType, dst: DType) -> np.ndarray:
    if src.is_float:
        values = np.array(SPECIAL_FLOATS + [65519.0, 65520.0, 1.0 + 2.0**-11 + 2.0**-40])
        stored = storage_of(values, src)
        if not dst.is_float and dst is not DType.BOOL:
            # float -> int is defined only in range (uint8: torch goes through int64).
            wide = stored if src is not DType.BFLOAT16 else bf16_to_f32(stored)
            wide = wide.astype(np.float64)
            info = np.iinfo(dst.np_storage)
            low = -128 if dst is DType.UINT8 else info.min
            stored = stored[np.isfinite(wide) & (wide > low - 1) & (wide < info.max + 1)]
        return stored
    return special_values(src)


@pytest.mark.parametrize("dst", ALL, ids=str)
@pytest.mark.parametrize("src", ALL, ids=str)
def test_cast(src: DType, dst: DType) -> None:
    x = cast_sources(src, dst)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cast(x, src, dst)
    source = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16) if src is DType.BFLOAT16 \
        else torch.from_numpy(x)
    want = source.to(dst.torch)
    if dst is DType.BFLOAT16:
        got, want_np = bf16_to_f32(got), want.float().numpy()
    else:
        want_np = want.numpy()
    assert_same(got, want_np, exact=True, what=f"cast {src}->{dst}")


def test_float_to_int_undefined_values_do_not_crash() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 3e9], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dst in INTS:
            assert cast(x, DType.FLOAT32, dst).dtype == dst.np_storage
    assert cast(x, DType.FLOAT32, DType.INT32).tolist()[:3] == [0, 2**31 - 1, -(2**31)]



@pytest.mark.parametrize("dst", ALL, ids=str)
def test_zero_dim_values_stay_zero_dim(dst: DType) -> None:
    assert cast(np.float32(1.5), DType.FLOAT32, dst).shape == ()
    assert cast(np.array(3, dtype=np.int64), DType.INT64, dst).shape == ()
    assert f32_to_bf16(np.float32(1.0)).shape == () and bf16_to_f32(np.uint16(1)).shape == ()
    got = apply_prim(P.ERF, [np.float32(0.5)], DType.FLOAT32, DType.FLOAT32)
    assert got.shape == () and got.dtype == np.float32
    got = apply_prim(P.POW, [np.int32(3), np.int32(4)], DType.INT32, DType.INT32)
    assert got.shape == () and got == 81
