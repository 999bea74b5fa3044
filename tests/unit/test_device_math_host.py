"""The device math of nvfuse's C table, checked bit for bit against a reference on the CPU.

With no GPU, the only way to run the helpers in codegen_templates/ is to build them for the
host: every helper is __host__ __device__, so one `nvcc -x cu` driver evaluates the expressions
that nvfuse.codegen.prims_c emits on special values (+-0, +-inf, NaN, denormals, huge values,
integer extremes, negative divisors) and prints the result bits, which are compared with the
reference for the same op (NaN == NaN).

The reference: for the operations IEEE 754 rounds correctly (add, sub, mul, div, sqrt and
reciprocal, a division), the correctly rounded result itself, from numpy float64 scalar
arithmetic (IEEE double on every x86-64 CPU), rounded once more to float32 for float32 operands
(exact: double carries more than 2 * 24 + 2 bits, so rounding twice equals rounding once for
these five operations).  torch's CPU kernels are not a reference there: some builds' vectorized
sqrt is one ulp off on some CPUs.  Everything else is compared with torch on the CPU.

Not covered here (documented limits):
- transcendental functions (exp, log, sin, pow on floats, ...): libm and libdevice differ by
  ulps from torch's CPU kernels, so bits cannot match; NVRTC compiles them (test_prims_c);
- rsqrt and the PTX conversions cvt.rn.f16.f32 / cvt.rn.bf16.f32: device-only, the host build
  checks the bit-manipulation fallbacks instead;
- the sign of a zero returned by maximum / minimum / fmax / fmin when both operands are zeros:
  torch's CUDA kernels call fmaxf / fminf there, whose choice is the hardware's, while torch's
  CPU kernel returns the first operand; zeros are compared by value for those four prims.
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nvfuse.codegen.prims_c import HEADERS, cast_expr, literal, prim_expr
from nvfuse.codegen.templates import read_template
from nvfuse.dtypes import DType
from nvfuse.fusion.prims import BINARY_PRED, UNARY_PRED, Prim

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")

P = Prim
D = DType
TorchFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Case:
    name: str
    expr: str  # C expression over a0, a1, a2
    args: tuple[torch.Tensor, ...]
    arg_dtypes: tuple[DType, ...]
    result: DType
    expected: torch.Tensor
    zero_sign: bool = True


# -- inputs --------------------------------------------------------------------------------

_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.0, -3.0, 7.0, -7.0, 5.3,
           -5.3, 0.1, -0.1, 1e30, -1e30, 1e-40, -1e-40, 1e-45, 123456.7, 16777217.0, 3.4e38,
           math.inf, -math.inf, math.nan]
_DOUBLES_EXTRA = [1e300, -1e300, 5e-324, -4.5, 1e-310, 2.0**60 + 1.0]
_INT_RANGE = {D.UINT8: (0, 255), D.INT8: (-128, 127), D.INT16: (-(2**15), 2**15 - 1),
              D.INT32: (-(2**31), 2**31 - 1), D.INT64: (-(2**63), 2**63 - 1)}
_INTS = [0, 1, -1, 2, -2, 3, -3, 5, -5, 7, -7, 8, 15, 16, 31, 32, 33, 63, 64, -64, 100, -100,
         127, 128, 200, 255, 1000, -1000]


def float_values(dtype: DType) -> list[float]:
    return _FLOATS + (_DOUBLES_EXTRA if dtype is D.FLOAT64 else [])


def int_values(dtype: DType) -> list[int]:
    lo, hi = _INT_RANGE[dtype]
    values = [v for v in _INTS if lo <= v <= hi] + [lo, hi, lo + 1, hi - 1]
    return sorted(set(values), key=values.index)


def values_of(dtype: DType) -> list[bool] | list[int] | list[float]:
    if dtype is D.BOOL:
        return [False, True]
    return float_values(dtype) if dtype.is_float else int_values(dtype)


def pairs(values: Sequence[float], keep: Callable[[float, float], bool] | None = None,
          ) -> tuple[list[float], list[float]]:
    kept = [(a, b) for a, b in itertools.product(values, values) if keep is None or keep(a, b)]
    return [a for a, _ in kept], [b for _, b in kept]


def tensor(values: Sequence[float], dtype: DType) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype.torch)


# -- cases ---------------------------------------------------------------------------------

_FLOAT_BINARY: dict[Prim, TorchFn] = {
    P.ADD: torch.add, P.SUB: torch.sub, P.MUL: torch.mul, P.DIV: torch.div,
    P.MAXIMUM: torch.maximum, P.MINIMUM: torch.minimum, P.FMAX: torch.fmax, P.FMIN: torch.fmin,
    P.REMAINDER: torch.remainder, P.FMOD: torch.fmod, P.COPYSIGN: torch.copysign,
    P.DIV_FLOOR: lambda a, b: torch.div(a, b, rounding_mode="floor"),
    P.DIV_TRUNC: lambda a, b: torch.div(a, b, rounding_mode="trunc"),
    P.EQ: torch.eq, P.NE: torch.ne, P.LT: torch.lt, P.LE: torch.le, P.GT: torch.gt,
    P.GE: torch.ge,
}
_FLOAT_UNARY: dict[Prim, TorchFn] = {
    P.NEG: torch.neg, P.ABS: torch.abs, P.FLOOR: torch.floor, P.CEIL: torch.ceil,
    P.TRUNC: torch.trunc, P.RINT: torch.round, P.SQRT: torch.sqrt,
    P.RECIPROCAL: torch.reciprocal, P.SIGNBIT: torch.signbit, P.ISNAN: torch.isnan,
    P.ISINF: torch.isinf, P.ISFINITE: torch.isfinite,
}
_INT_BINARY: dict[Prim, TorchFn] = {
    P.ADD: torch.add, P.SUB: torch.sub, P.MUL: torch.mul, P.MAXIMUM: torch.maximum,
    P.MINIMUM: torch.minimum, P.BITWISE_AND: torch.bitwise_and, P.BITWISE_OR: torch.bitwise_or,
    P.BITWISE_XOR: torch.bitwise_xor, P.SHL: torch.bitwise_left_shift,
    P.SHR: torch.bitwise_right_shift, P.POW: torch.pow,
    P.EQ: torch.eq, P.NE: torch.ne, P.LT: torch.lt, P.LE: torch.le, P.GT: torch.gt,
    P.GE: torch.ge,
}
_INT_DIVISION: dict[Prim, TorchFn] = {
    P.DIV_FLOOR: lambda a, b: torch.div(a, b, rounding_mode="floor"),
    P.DIV_TRUNC: lambda a, b: torch.div(a, b, rounding_mode="trunc"),
    P.REMAINDER: torch.remainder, P.FMOD: torch.fmod,
}
_INT_UNARY: dict[Prim, TorchFn] = {
    P.NEG: torch.neg, P.ABS: torch.abs, P.BITWISE_NOT: torch.bitwise_not,
    P.SIGNBIT: torch.signbit, P.FLOOR: torch.floor,
}
_BOOL_BINARY: dict[Prim, TorchFn] = {
    P.ADD: torch.add, P.MUL: torch.mul, P.MAXIMUM: torch.maximum, P.MINIMUM: torch.minimum,
    P.BITWISE_AND: torch.bitwise_and, P.BITWISE_OR: torch.bitwise_or,
    P.BITWISE_XOR: torch.bitwise_xor, P.EQ: torch.eq, P.LT: torch.lt, P.GE: torch.ge,
}
_FMOD_LIKE = (P.FMOD, P.REMAINDER)
_ZERO_SIGN_FREE = frozenset({P.MAXIMUM, P.MINIMUM, P.FMAX, P.FMIN})


def _result(prim: Prim, dtype: DType) -> DType:
    return D.BOOL if prim in UNARY_PRED or prim in BINARY_PRED else dtype


# The correctly rounded operations, on float64 numpy scalars (see the module docstring).
_IEEE: dict[Prim, Callable[..., np.float64]] = {
    P.ADD: lambda a, b: a + b, P.SUB: lambda a, b: a - b, P.MUL: lambda a, b: a * b,
    P.DIV: lambda a, b: a / b, P.SQRT: np.sqrt, P.RECIPROCAL: lambda a: np.float64(1.0) / a,
}


def correctly_rounded(prim: Prim, dtype: DType, args: Sequence[torch.Tensor]) -> torch.Tensor:
    """`prim` of float32/float64 `args`, correctly rounded to `dtype`, without torch math."""
    columns = [a.double().tolist() for a in args]  # widening to double is exact
    with np.errstate(all="ignore"):  # IEEE's inf and NaN results are what is wanted
        exact = [_IEEE[prim](*map(np.float64, values)) for values in zip(*columns)]
        rounded = np.array(exact, dtype=np.float64).astype(np.dtype(str(dtype.torch)[6:]))
    return torch.from_numpy(rounded)


def _prim_case(prim: Prim, dtype: DType, fn: TorchFn, *columns: Sequence[float]) -> Case:
    args = tuple(tensor(c, dtype) for c in columns)
    names = [f"a{i}" for i in range(len(args))]
    result = _result(prim, dtype)
    if prim in _IEEE and dtype in (D.FLOAT32, D.FLOAT64):
        expected = correctly_rounded(prim, dtype, args)
    else:
        expected = fn(*args)
    return Case(f"{prim.value}[{dtype}]", prim_expr(prim, names, dtype, result), args,
                (dtype,) * len(args), result, expected, prim not in _ZERO_SIGN_FREE)


def _int_division_ok(dtype: DType) -> Callable[[float, float], bool]:
    lo = _INT_RANGE[dtype][0]
    # b == 0 raises in torch on the CPU; INT_MIN / -1 traps the x86 divide in torch's CPU
    # kernel for 32/64-bit types (narrower types are promoted to int first).
    return lambda a, b: b != 0 and not (a == lo and b == -1 and dtype.itemsize >= 4)


def _sleef_fmod_exact(dtype: DType) -> Callable[[float, float], bool]:
    # torch's CPU fmod (SLEEF) returns NaN for a subnormal divisor or a quotient beyond the
    # dtype's range; CUDA's fmodf / fmod are exact there, as is the host libm this driver
    # uses, so those pairs say nothing about nvfuse.
    info = torch.finfo(dtype.torch)

    def keep(a: float, b: float) -> bool:
        if 0 < abs(b) < info.tiny:
            return False
        return not (math.isfinite(a) and b != 0 and abs(a) / abs(b) > info.max)

    return keep


def float_cases() -> list[Case]:
    cases = []
    for dtype in (D.FLOAT32, D.FLOAT64):
        a, b = pairs(float_values(dtype))
        for p, fn in _FLOAT_BINARY.items():
            if p not in _FMOD_LIKE:
                cases.append(_prim_case(p, dtype, fn, a, b))
        fa, fb = pairs(float_values(dtype), _sleef_fmod_exact(dtype))
        cases += [_prim_case(p, dtype, _FLOAT_BINARY[p], fa, fb) for p in _FMOD_LIKE]
        cases += [_prim_case(p, dtype, fn, float_values(dtype)) for p, fn in _FLOAT_UNARY.items()]
        cond = [i % 3 == 0 for i in range(len(a))]
        args = (tensor(cond, D.BOOL), tensor(a, dtype), tensor(b, dtype))
        cases.append(Case(f"where[{dtype}]", prim_expr(P.WHERE, ["a0", "a1", "a2"], dtype, dtype),
                          args, (D.BOOL, dtype, dtype), dtype, torch.where(*args)))
    return cases


def int_cases() -> list[Case]:
    cases = []
    for dtype in _INT_RANGE:
        values = int_values(dtype)
        a, b = pairs(values)
        cases += [_prim_case(p, dtype, fn, a, b) for p, fn in _INT_BINARY.items()]
        a, b = pairs(values, _int_division_ok(dtype))
        cases += [_prim_case(p, dtype, fn, a, b) for p, fn in _INT_DIVISION.items()]
        cases += [_prim_case(p, dtype, fn, values) for p, fn in _INT_UNARY.items()]
    a, b = pairs([False, True])
    cases += [_prim_case(p, D.BOOL, fn, a, b) for p, fn in _BOOL_BINARY.items()]
    cases.append(_prim_case(P.BITWISE_NOT, D.BOOL, torch.bitwise_not, [False, True]))
    cases.append(_prim_case(P.SIGNBIT, D.BOOL, torch.signbit, [False, True]))
    return cases


_CAST_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 2.5, 3.7, -3.7, 100.25, -100.75, 127.9,
                -128.9, 255.5, 1000.5, -70000.5, 65504.0, 65519.0, 65520.0, 1e-8, 5.96e-8,
                2.9802322387695312e-08, 1e-40, 3e38, 1e30, 2.0**31 - 64, -(2.0**31),
                1.0 + 2.0**-11 + 2.0**-40, 1.0 + 2.0**-8 + 2.0**-40, 0.1, 1.2e-38,
                math.inf, -math.inf, math.nan]


def _cast_sources(src: DType) -> torch.Tensor:
    if src.is_float:
        return torch.tensor(_CAST_FLOATS, dtype=torch.float64).to(src.torch)
    return tensor(values_of(src), src)


def _castable(x: float, dst: DType) -> bool:
    """Float -> integer is undefined out of range (torch too); uint8 goes through int64."""
    if not dst.is_int:
        return True
    if not math.isfinite(x):
        return False
    lo, hi = _INT_RANGE[D.INT64 if dst is D.UINT8 else dst]
    return lo <= math.trunc(x) <= hi


def cast_cases() -> list[Case]:
    cases = []
    for src, dst in itertools.product(DType, DType):
        source = _cast_sources(src)
        if src.is_float:
            source = source[[_castable(float(x), dst) for x in source.double().tolist()]]
        cases.append(Case(f"cast[{src}->{dst}]", cast_expr("a0", src, dst), (source,), (src,),
                          dst, source.to(dst.torch)))
    return cases


def literal_cases() -> list[Case]:
    cases = []
    for dtype in (D.FLOAT32, D.FLOAT64):
        for value in float_values(D.FLOAT64) + [-math.nan, 1e39, 0.3, 2.0 / 3.0]:
            cases.append(Case(f"literal[{dtype}]({value!r})", literal(value, dtype), (), (),
                              dtype, tensor([value], dtype)))
    for dtype in (D.BOOL, *_INT_RANGE):
        for value in values_of(dtype):
            cases.append(Case(f"literal[{dtype}]({value!r})", literal(value, dtype), (), (),
                              dtype, tensor([value], dtype)))
    return cases


# -- the driver ----------------------------------------------------------------------------

_VIEW = {D.FLOAT16: torch.int16, D.BFLOAT16: torch.int16, D.FLOAT32: torch.int32,
         D.FLOAT64: torch.int64}

_PRELUDE = r"""
template <typename T> T from_bits(unsigned long long u);
template <> bool from_bits<bool>(unsigned long long u) { return u != 0; }
template <> unsigned char from_bits<unsigned char>(unsigned long long u) {
  return (unsigned char)u;
}
template <> signed char from_bits<signed char>(unsigned long long u) {
  return (signed char)(unsigned char)u;
}
template <> short from_bits<short>(unsigned long long u) { return (short)(unsigned short)u; }
template <> int from_bits<int>(unsigned long long u) { return (int)(unsigned int)u; }
template <> long long from_bits<long long>(unsigned long long u) { return (long long)u; }
template <> nvf_half from_bits<nvf_half>(unsigned long long u) {
  nvf_half h; h.bits = (unsigned short)u; return h;
}
template <> nvf_bfloat16 from_bits<nvf_bfloat16>(unsigned long long u) {
  nvf_bfloat16 h; h.bits = (unsigned short)u; return h;
}
template <> float from_bits<float>(unsigned long long u) {
  return nvf_bits_as_float((unsigned int)u);
}
template <> double from_bits<double>(unsigned long long u) { return nvf_bits_as_double(u); }

static unsigned long long to_bits(bool x) { return x ? 1ull : 0ull; }
static unsigned long long to_bits(unsigned char x) { return x; }
static unsigned long long to_bits(signed char x) { return (unsigned char)x; }
static unsigned long long to_bits(short x) { return (unsigned short)x; }
static unsigned long long to_bits(int x) { return (unsigned int)x; }
static unsigned long long to_bits(long long x) { return (unsigned long long)x; }
static unsigned long long to_bits(nvf_half x) { return x.bits; }
static unsigned long long to_bits(nvf_bfloat16 x) { return x.bits; }
static unsigned long long to_bits(float x) { return nvf_float_as_bits(x); }
static unsigned long long to_bits(double x) { return nvf_double_as_bits(x); }
"""


def bits_of(t: torch.Tensor, dtype: DType) -> list[int]:
    if dtype is D.BOOL:
        return [int(v) for v in t.tolist()]
    values = (t.view(_VIEW[dtype]) if dtype in _VIEW else t).tolist()
    mask = (1 << (8 * dtype.itemsize)) - 1
    return [int(v) & mask for v in values]


class Driver:
    """Writes one C++ main() that prints `case index bits` for every case."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[int, ...], str] = {}
        self.body: list[str] = []

    def array(self, bits: list[int]) -> str:
        key = tuple(bits)
        if key not in self.arrays:
            self.arrays[key] = f"IN{len(self.arrays)}"
        return self.arrays[key]

    def add(self, index: int, case: Case) -> None:
        n = len(case.args[0]) if case.args else 1
        loads = [f"const {dt.c_type} a{k} = from_bits<{dt.c_type}>("
                 f"{self.array(bits_of(arg, dt))}[i]);"
                 for k, (arg, dt) in enumerate(zip(case.args, case.arg_dtypes))]
        self.body += [
            f"  for (int i = 0; i < {n}; ++i) {{  // {case.name}",
            *(f"    {line}" for line in loads),
            f"    const {case.result.c_type} r = {case.expr};",
            f'    printf("{index} %d %llx\\n", i, to_bits(r));',
            "  }",
        ]

    def source(self) -> str:
        # the headers are pasted into the main file, where gcc warns about #pragma once
        headers = [read_template(h).replace("#pragma once", "") for h in HEADERS]
        parts = ["#include <cstdio>", *headers, _PRELUDE]
        for key, name in self.arrays.items():
            values = ", ".join(f"{v}ull" for v in key)
            parts.append(f"static const unsigned long long {name}[] = {{{values}}};")
        parts += ["int main() {", *self.body, "  return 0;", "}"]
        return "\n".join(parts)


def _is_nan(bits: int, dtype: DType) -> bool:
    if dtype is D.FLOAT16:
        return bits & 0x7FFF > 0x7C00
    if dtype is D.BFLOAT16:
        return bits & 0x7FFF > 0x7F80
    if dtype is D.FLOAT32:
        return bits & 0x7FFFFFFF > 0x7F800000
    return bits & 0x7FFFFFFFFFFFFFFF > 0x7FF0000000000000


def _same(got: int, want: int, case: Case) -> bool:
    if got == want:
        return True
    dtype = case.result
    if not dtype.is_float:
        return False
    if _is_nan(got, dtype) and _is_nan(want, dtype):
        return True
    sign = 1 << (8 * dtype.itemsize - 1)
    return not case.zero_sign and got & ~sign == 0 and want & ~sign == 0


def _describe(case: Case, i: int, got: int, want: int) -> str:
    inputs = ", ".join(repr(a[i].item()) for a in case.args)
    return f"{case.name}({inputs}) = {got:#x}, reference gives {want:#x}   [{case.expr}]"


GROUPS: dict[str, Callable[[], list[Case]]] = {
    "float": float_cases, "int": int_cases, "cast": cast_cases, "literal": literal_cases,
}
Results = dict[str, list[tuple[Case, list[int]]]]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Build and run one driver for every group; the bits each case printed, per group."""
    groups = {name: make() for name, make in GROUPS.items()}
    flat = [case for cases in groups.values() for case in cases]
    driver = Driver()
    for index, case in enumerate(flat):
        driver.add(index, case)
    work: Path = tmp_path_factory.mktemp("device_math_host")
    (work / "driver.cu").write_text(driver.source())
    command = ["nvcc", "-x", "cu", "-std=c++17", "-O1", "-arch=sm_80",
               "-o", str(work / "driver"), str(work / "driver.cu")]
    build = subprocess.run(command, check=False, capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stderr[-5000:]
    binary = str(work / "driver")
    run = subprocess.run([binary], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    printed: dict[int, list[int]] = {index: [] for index in range(len(flat))}
    for line in run.stdout.splitlines():
        index, _, bits = line.split()
        printed[int(index)].append(int(bits, 16))
    out: Results = {}
    index = 0
    for name, cases in groups.items():
        out[name] = [(case, printed[index + k]) for k, case in enumerate(cases)]
        index += len(cases)
    return out


@pytest.mark.parametrize("group", list(GROUPS))
def test_matches_reference(group: str, results: Results) -> None:
    mismatches = []
    checked = 0
    for case, got in results[group]:
        want = bits_of(case.expected, case.result)
        assert len(got) == len(want), case.name
        for i, (g, w) in enumerate(zip(got, want)):
            checked += 1
            if not _same(g, w, case):
                mismatches.append(_describe(case, i, g, w))
    assert checked > 0
    report = "\n".join(mismatches[:40])
    assert not mismatches, f"{len(mismatches)} of {checked} values differ:\n{report}"


def test_reference_is_correctly_rounded() -> None:
    """The reference against exact rational arithmetic (fractions) and an exact square-root
    check, on the values where torch's CPU sqrt was seen one ulp off (sqrt(0.5) in float64)."""
    from fractions import Fraction

    half = torch.tensor([0.5, 2.0, 3.0, 1e-310], dtype=torch.float64)
    for x, r in zip(half.tolist(), correctly_rounded(P.SQRT, D.FLOAT64, [half]).tolist()):
        # r is the nearest double to sqrt(x): its neighbours' squares bracket x from further out
        below, above = math.nextafter(r, 0.0), math.nextafter(r, math.inf)
        mid_lo = (Fraction(below) + Fraction(r)) / 2
        mid_hi = (Fraction(r) + Fraction(above)) / 2
        assert mid_lo * mid_lo < Fraction(x) < mid_hi * mid_hi, x
    a = torch.tensor([1.0, 0.1, 1e-40, 3.0], dtype=torch.float32)
    b = torch.tensor([3.0, 0.3, 7.0, 1e-45], dtype=torch.float32)
    for prim, exact in ((P.DIV, lambda x, y: Fraction(x) / Fraction(y)),
                        (P.MUL, lambda x, y: Fraction(x) * Fraction(y)),
                        (P.ADD, lambda x, y: Fraction(x) + Fraction(y))):
        got = correctly_rounded(prim, D.FLOAT32, [a, b])
        for x, y, r in zip(a.tolist(), b.tolist(), got.tolist()):
            q = exact(x, y)
            if math.isinf(r):
                assert q > Fraction(torch.finfo(torch.float32).max)
                continue
            nb = [np.nextafter(np.float32(r), np.float32(s)) for s in (-np.inf, np.inf)]
            assert all(abs(Fraction(float(n)) - q) >= abs(Fraction(r) - q) for n in nb)
