"""The op -> C table (nvfuse.codegen.prims_c) against NVRTC.

Every prim x every compute dtype it supports, every cast between the 10 dtypes and a set of
literals are put in one translation unit (one kernel per dtype) that also static_asserts each
expression's C type, and compiled for sm_80 and sm_90 with the helper headers inlined.  Every
unsupported combination must raise ValueError naming the prim and the dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

from nvfuse.codegen.prims_c import HEADERS, c_type, cast_expr, literal, prim_expr
from nvfuse.codegen.templates import read_template
from nvfuse.dtypes import DType
from nvfuse.fusion.prims import (
    BINARY_PRED,
    BINARY_SAME,
    FLOAT_ONLY,
    INT_ONLY,
    UNARY_PRED,
    UNARY_SAME,
    Prim,
    arity,
)

P = Prim
COMPUTE = (DType.BOOL, DType.UINT8, DType.INT8, DType.INT16, DType.INT32, DType.INT64,
           DType.FLOAT32, DType.FLOAT64)
EXPRESSION_PRIMS = sorted(UNARY_SAME | UNARY_PRED | BINARY_SAME | BINARY_PRED | {P.WHERE},
                          key=lambda p: p.value)
# What eager torch accepts on bool tensors (add is or, mul is and, ...).
BOOL_OK = frozenset({P.ADD, P.MUL, P.MAXIMUM, P.MINIMUM, P.BITWISE_AND, P.BITWISE_OR,
                     P.BITWISE_XOR, P.BITWISE_NOT, P.SIGNBIT, P.WHERE} | BINARY_PRED)


def supported(prim: Prim, dtype: DType) -> bool:
    if dtype is DType.BOOL:
        return prim in BOOL_OK
    if dtype.is_float:
        return prim not in INT_ONLY
    return prim not in FLOAT_ONLY


def result_dtype(prim: Prim, dtype: DType) -> DType:
    return DType.BOOL if prim in UNARY_PRED or prim in BINARY_PRED else dtype


def args_for(prim: Prim) -> list[str]:
    if prim is P.WHERE:
        return ["p", "x", "y"]
    return ["x", "y"][: arity(prim)]


# -- the translation unit ------------------------------------------------------------------

_PRELUDE = """
template <typename A, typename B> struct t_same { static const bool value = false; };
template <typename A> struct t_same<A, A> { static const bool value = true; };
template <typename A> struct t_decay { typedef A type; };
template <typename A> struct t_decay<A&> { typedef A type; };
template <typename A> struct t_decay<const A&> { typedef A type; };
template <typename A> struct t_decay<const A> { typedef A type; };
#define CHECK_TYPE(T, ...) \\
  static_assert(t_same<t_decay<decltype(__VA_ARGS__)>::type, T>::value, #__VA_ARGS__)
"""


def _prim_kernel(dtype: DType) -> str:
    t = c_type(dtype)
    header = (f'extern "C" __global__ void k_{dtype.value}(const {t}* a, const {t}* b, '
              f"const bool* c, {t}* out, bool* pout) {{")
    lines = [header,
             "  const int i = threadIdx.x;",
             f"  const {t} x = a[i]; const {t} y = b[i]; const bool p = c[i];"]
    n = 0
    for prim in EXPRESSION_PRIMS:
        if not supported(prim, dtype):
            continue
        result = result_dtype(prim, dtype)
        expr = prim_expr(prim, args_for(prim), dtype, result)
        target = "pout" if result is DType.BOOL and dtype is not DType.BOOL else "out"
        lines.append(f"  CHECK_TYPE({c_type(result)}, {expr});  // {prim.value}")
        lines.append(f"  {target}[{n} * 32 + i] = {expr};")
        n += 1
    lines.append("}")
    return "\n".join(lines)


def _cast_kernel() -> str:
    dtypes = list(DType)
    params = ", ".join(f"const {d.c_type}* in_{d.value}" for d in dtypes)
    outs = ", ".join(f"{d.c_type}* out_{d.value}" for d in dtypes)
    lines = [f'extern "C" __global__ void k_casts({params}, {outs}) {{',
             "  const int i = threadIdx.x;"]
    lines += [f"  const {d.c_type} v_{d.value} = in_{d.value}[i];" for d in dtypes]
    for n, src in enumerate(dtypes):
        for dst in dtypes:
            expr = cast_expr(f"v_{src.value}", src, dst)
            lines.append(f"  CHECK_TYPE({dst.c_type}, {expr});")
            lines.append(f"  out_{dst.value}[{n} * 32 + i] = {expr};")
    lines.append("}")
    return "\n".join(lines)


LITERALS: dict[DType, list[bool | int | float]] = {
    DType.BOOL: [True, False, 0, 3, 0.0, float("nan")],
    DType.UINT8: [0, 255, True, 7.0],
    DType.INT8: [-128, 127, -1, False],
    DType.INT16: [-(2**15), 2**15 - 1, -300],
    DType.INT32: [-(2**31), 2**31 - 1, -5, 0],
    DType.INT64: [-(2**63), 2**63 - 1, -5, 2**40],
    DType.FLOAT32: [0.0, -0.0, 0.1, -1.5, 1e30, 1e-45, 3.4028234663852886e38, 1e39,
                    float("inf"), float("-inf"), float("nan"), -float("nan"), 7, 2**63 - 1,
                    True],
    DType.FLOAT64: [0.0, -0.0, 0.1, -1.5, 1e300, 5e-324, float("inf"), float("-inf"),
                    float("nan"), 2**63 - 1, -(2**53) - 1, False],
}


def _literal_kernel() -> str:
    lines = ['extern "C" __global__ void k_literals(' + ", ".join(
        f"{d.c_type}* o_{d.value}" for d in LITERALS) + ") {"]
    for dtype, values in LITERALS.items():
        for n, value in enumerate(values):
            text = literal(value, dtype)
            lines.append(f"  CHECK_TYPE({dtype.c_type}, {text});")
            lines.append(f"  o_{dtype.value}[{n}] = {text};")
    lines.append("}")
    return "\n".join(lines)


def translation_unit() -> str:
    parts = [read_template(h) for h in HEADERS] + [_PRELUDE]
    parts += [_prim_kernel(d) for d in COMPUTE] + [_cast_kernel(), _literal_kernel()]
    return "\n".join(parts)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_prim_cast_and_literal_compiles(arch: str) -> None:
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    src = translation_unit()
    prog = nvrtc.createProgram(src, "prims_c_test.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", "-std=c++17"])
        except Exception:
            numbered = "\n".join(f"{i:5d} {s}" for i, s in enumerate(src.splitlines(), 1))
            pytest.fail(f"NVRTC ({arch}):\n{nvrtc.getProgramLog(prog)}\n{numbered}")
        log = nvrtc.getProgramLog(prog).strip()
        assert "warning" not in log, log
    finally:
        nvrtc.destroyProgram(prog)


# -- the table's contract ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", COMPUTE, ids=str)
def test_unsupported_combinations_raise(dtype: DType) -> None:
    for prim in EXPRESSION_PRIMS:
        if supported(prim, dtype):
            continue
        with pytest.raises(ValueError, match=f"{prim.value}.*{dtype.value}"):
            prim_expr(prim, args_for(prim), dtype, result_dtype(prim, dtype))


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.BFLOAT16], ids=str)
def test_reduced_floats_are_not_compute_dtypes(dtype: DType) -> None:
    with pytest.raises(ValueError, match="add.*" + dtype.value):
        prim_expr(P.ADD, ["x", "y"], dtype, dtype)
    with pytest.raises(ValueError):
        literal(1.0, dtype)
    assert prim_expr(P.WHERE, ["p", "x", "y"], dtype, dtype) == "((p) ? (x) : (y))"


def test_bad_calls_raise() -> None:
    for prim in (P.LOAD, P.CONST, P.CAST):
        with pytest.raises(ValueError, match=prim.value):
            prim_expr(prim, ["x"], DType.FLOAT32, DType.FLOAT32)
    with pytest.raises(ValueError, match="takes 2 args"):
        prim_expr(P.ADD, ["x"], DType.FLOAT32, DType.FLOAT32)
    with pytest.raises(ValueError, match="lt"):
        prim_expr(P.LT, ["x", "y"], DType.INT32, DType.INT32)  # predicates give bool
    with pytest.raises(ValueError, match="sqrt.*int32"):
        prim_expr(P.SQRT, ["x"], DType.INT32, DType.INT32)


def test_expression_spellings() -> None:
    assert prim_expr(P.ADD, ["a", "b"], DType.FLOAT32, DType.FLOAT32) == "((a) + (b))"
    assert prim_expr(P.ADD, ["a", "b"], DType.INT32, DType.INT32) == "nvf_add<int>(a, b)"
    assert prim_expr(P.EXP, ["a"], DType.FLOAT32, DType.FLOAT32) == "expf(a)"
    assert prim_expr(P.EXP, ["a"], DType.FLOAT64, DType.FLOAT64) == "exp(a)"
    assert prim_expr(P.RECIPROCAL, ["a"], DType.FLOAT32, DType.FLOAT32) == "(1.0f / (a))"
    assert prim_expr(P.ADD, ["a", "b"], DType.BOOL, DType.BOOL) == "((a) || (b))"
    assert prim_expr(P.FLOOR, ["a"], DType.INT8, DType.INT8) == "(a)"
    assert cast_expr("v", DType.FLOAT16, DType.FLOAT16) == "v"
    assert cast_expr("v", DType.FLOAT16, DType.INT64) == "nvf_cast<long long, nvf_half>(v)"


# -- literals ------------------------------------------------------------------------------


def test_special_literals() -> None:
    assert literal(float("inf"), DType.FLOAT32) == "nvf_bits_as_float(0x7f800000u)"
    assert literal(float("-inf"), DType.FLOAT32) == "nvf_bits_as_float(0xff800000u)"
    assert literal(float("nan"), DType.FLOAT32) == "nvf_bits_as_float(0x7fc00000u)"
    assert literal(1e39, DType.FLOAT32) == "nvf_bits_as_float(0x7f800000u)"  # overflows
    assert literal(float("inf"), DType.FLOAT64) == "nvf_bits_as_double(0x7ff0000000000000ull)"
    assert literal(float("nan"), DType.FLOAT64) == "nvf_bits_as_double(0x7ff8000000000000ull)"
    assert literal(-0.0, DType.FLOAT32) == "(-0.0f)"
    assert literal(-0.0, DType.FLOAT64) == "(-0.0)"
    assert literal(2, DType.FLOAT32) == "2.0f"
    assert literal(0.1, DType.FLOAT32) == "0.1f"
    assert literal(1e30, DType.FLOAT64) == "1e+30"
    assert literal(-(2**63), DType.INT64) == "(-9223372036854775807LL - 1LL)"
    assert literal(-(2**31), DType.INT32) == "(-2147483647 - 1)"
    assert literal(-5, DType.INT64) == "(-5LL)"
    assert literal(200, DType.UINT8) == "((unsigned char)200)"
    assert literal(-5, DType.INT8) == "((signed char)-5)"
    assert literal(True, DType.INT32) == "1"
    assert literal(3, DType.BOOL) == "true"
    assert literal(0.0, DType.BOOL) == "false"


def test_literal_range_and_integrality() -> None:
    with pytest.raises(ValueError, match="out of range"):
        literal(256, DType.UINT8)
    with pytest.raises(ValueError, match="out of range"):
        literal(2**63, DType.INT64)
    with pytest.raises(ValueError, match="not a int32"):
        literal(1.5, DType.INT32)
    with pytest.raises(ValueError):
        literal(float("nan"), DType.INT64)


def _parse_float(text: str) -> float:
    return float(text.strip("()").rstrip("f"))


def test_float32_literals_round_trip() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=2000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    for v in values[np.isfinite(values)]:
        text = literal(float(v), DType.FLOAT32)
        assert np.float32(_parse_float(text)) == v, (v, text)


def test_float64_literals_round_trip() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**63, size=2000, dtype=np.uint64).view(np.float64)
    for v in values[np.isfinite(values)]:
        assert _parse_float(literal(float(v), DType.FLOAT64)) == float(v)


def test_int_to_float32_rounds_once() -> None:
    # 2**60 + 2**36 + 1 lies just above a float32 tie: rounding through a double first would
    # land exactly on the tie and round to even (down); rounding once goes up.
    v = 2**60 + 2**36 + 1
    expected = np.float32(2**60 + 2**37)
    assert np.float32(_parse_float(literal(v, DType.FLOAT32))) == expected
    assert np.float32(_parse_float(literal(-v, DType.FLOAT32))) == -expected


# -- templates -----------------------------------------------------------------------------


def test_read_template() -> None:
    for name in HEADERS:
        text = read_template(name)
        assert text.startswith(f"// {name} -- ") and "#pragma once" in text
        assert "#include" not in text  # NVRTC alone must suffice
    assert read_template(HEADERS[0]) is read_template(HEADERS[0])  # cached
    with pytest.raises(ValueError):
        read_template("../setup.py")
    with pytest.raises(FileNotFoundError, match="nvf_missing.cuh"):
        read_template("nvf_missing.cuh")
