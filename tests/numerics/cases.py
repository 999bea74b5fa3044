"""The shared table of numerics cases: one `OpCase` per op / overload variant.

Used by three tiers (fusion-IR interpreter via the op table, the whole pipeline through the
kernel-IR interpreter and NVRTC, and the GPU).  A case is a function of tensors only (scalars
are baked in), an input maker `make_inputs(dtype, generator) -> tuple[Tensor, ...]` and the
dtypes it runs under.  Inputs are random and never zero, small (3x5 with a broadcast operand),
with special values (±0, ±inf, NaN, denormals, integer extremes) mixed in where the op is
meaningful on them.  `compare(actual, expected, dtype)` is the one comparison: exact for
integers and bools, equal NaN positions, then allclose with dtype-appropriate tolerances
(float16/bfloat16 kernels compute in float32 and round once, so they differ from eager's
per-op rounding by about one ulp of the dtype per op).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch._inductor.inductor_prims  # registers prims.fma
import torch.nn.functional as F

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
i8, u8, i16 = torch.int8, torch.uint8, torch.int16
i32, i64, b8 = torch.int32, torch.int64, torch.bool
FLOATS = (f32, f16, bf16, f64)
INTS = (i32, i64)
ALL_INTS = (u8, i8, i16, i32, i64)

Tol = tuple[float, float]  # (atol, rtol)


def _fma(a: torch.Tensor, b: torch.Tensor | float, c: torch.Tensor) -> torch.Tensor:
    return torch.ops.prims.fma(a, b, c)


DEFAULT_TOL: dict[torch.dtype, Tol] = {
    f32: (1e-5, 1e-5), f64: (1e-12, 1e-12), f16: (1e-3, 2e-3), bf16: (8e-3, 1.6e-2),
}
NAN, INF = math.nan, math.inf


@dataclass(frozen=True)
class OpCase:
    name: str
    fn: Callable[..., torch.Tensor]
    make_inputs: Callable[[torch.dtype, torch.Generator], tuple]
    dtypes: tuple[torch.dtype, ...]
    # per-dtype (atol, rtol) overrides, or a function of the dtype; None -> DEFAULT_TOL
    tol: dict[torch.dtype, Tol] | Callable[[torch.dtype], Tol] | None = field(default=None)
    # eager's answer where it differs from `fn` on this machine's eager kernels (None: `fn`)
    reference: Callable[..., torch.Tensor] | None = None

    def expected(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Eager's result on `inputs` (the reference when the case has one)."""
        return (self.reference or self.fn)(*inputs)

    def tolerance(self, dtype: torch.dtype) -> Tol | None:
        """This case's (atol, rtol) override for `dtype`; None: compare's defaults."""
        if callable(self.tol):
            return self.tol(dtype)
        return self.tol.get(dtype) if self.tol else None


def sum_tolerance(x: torch.Tensor, dtype: torch.dtype) -> Tol:
    """(atol, rtol) for a sum over x's last dim that adds in another order than eager's (a
    GPU's eager sum): the dtype's default plus twice the accumulator's epsilon times the
    largest row's sum of |x| over finite elements -- the reordering error bound that
    random-sign rows stay well under; float16/bfloat16 rows accumulate in float32."""
    atol, rtol = DEFAULT_TOL.get(dtype, DEFAULT_TOL[f32])
    acc = f64 if dtype is f64 else f32
    finite = x.double().abs().nan_to_num(0.0, 0.0, 0.0)
    return atol + 2 * torch.finfo(acc).eps * float(finite.sum(-1).max()), rtol


def compare(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
            tol: Tol | None = None) -> None:
    """Assert `actual` matches eager's `expected` (dtype and shape too); see module docstring.
    `dtype` is the case's dtype, which picks the default tolerance."""
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != eager {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != eager {expected.shape}"
    if not expected.dtype.is_floating_point:
        assert torch.equal(actual, expected), f"mismatch:\n{actual}\neager:\n{expected}"
        return
    a, e = actual.double(), expected.double()
    nan_a, nan_e = a.isnan(), e.isnan()
    assert torch.equal(nan_a, nan_e), f"NaN positions differ:\n{actual}\neager:\n{expected}"
    if tol is None:
        out_dt = expected.dtype if expected.dtype in DEFAULT_TOL else dtype
        tol = DEFAULT_TOL.get(out_dt, DEFAULT_TOL[f32])
        if dtype in DEFAULT_TOL:  # the coarser of the case dtype and the result dtype
            tol = (max(tol[0], DEFAULT_TOL[dtype][0]), max(tol[1], DEFAULT_TOL[dtype][1]))
    atol, rtol = tol
    inf_e = e.isinf()
    assert torch.equal(a[inf_e], e[inf_e]), f"infinities differ:\n{actual}\neager:\n{expected}"
    fin = ~(nan_e | inf_e)
    ok = (a[fin] - e[fin]).abs() <= atol + rtol * e[fin].abs()
    assert bool(ok.all()), (f"values differ (atol={atol}, rtol={rtol}):\n{actual}\n"
                            f"eager:\n{expected}\nmax abs err "
                            f"{(a[fin] - e[fin]).abs().max().item():.3g}")


def check_fused(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...],
                dtype: torch.dtype, tol: Tol | None = None, *, launches: int | None = None,
                generated: dict[str, str] | None = None) -> Any:
    """nvfuse.fuse `fn` on `inputs`, call it once and compare every output with eager's
    (`compare`); no group may fall back, `launches` (when given) is the kernel launch count
    of the call, and `generated` collects the kernels' sources by name.  Returns the
    FusedModule."""
    import nvfuse

    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    stats = nvfuse.stats()
    if launches is not None:
        assert stats["launches"] == launches, [g.ops for g in fm.fusion_groups]
    assert stats["fallbacks"] == 0
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    if generated is not None:
        generated.update((k.name, k.source) for k in fm.kernels)
    return fm


# -- input makers -------------------------------------------------------------------------------
def special_rows(x: torch.Tensor) -> torch.Tensor:
    """A copy of the [rows >= 6, width] float `x` with the rows every row schedule is checked
    on: row 0 all -inf, row 1 one +inf (a third of the way), row 2 a NaN in its last column,
    row 3 +inf first and -inf last, row 4 as it was, row 5 its first half -inf (threads,
    lanes or blocks holding only -inf)."""
    inf, width = float("inf"), x.shape[-1]
    x = x.clone()
    x[0] = -inf
    x[1, width // 3] = inf
    x[2, width - 1] = float("nan")
    x[3, 0], x[3, width - 1] = inf, -inf
    x[5, :width // 2] = -inf
    return x


def float_specials(dtype: torch.dtype) -> list[float]:
    tiny = torch.finfo(dtype).smallest_normal / 4  # a denormal of the dtype
    return [NAN, INF, -INF, 0.0, -0.0, tiny, -tiny]


def int_specials(dtype: torch.dtype) -> list[int]:
    info = torch.iinfo(dtype)
    return [info.max, 1] if info.min == 0 else [info.min, info.max, -1, 1]


def tensor(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator,
           lo: float = -3.0, hi: float = 3.0, specials: list | bool = False,
           exclude: tuple[int, ...] = (0,)) -> torch.Tensor:
    """Random values in [lo, hi] (never zero; integers avoid `exclude`), with `specials`
    (True: the dtype's standard set) written over the first elements."""
    if dtype is b8:
        return torch.rand(shape, generator=gen) < 0.5
    if dtype.is_floating_point:
        x = torch.empty(shape, dtype=f64).uniform_(lo, hi, generator=gen)
        x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.5), x)
        spec = float_specials(dtype) if specials is True else list(specials or [])
    else:
        info = torch.iinfo(dtype)
        lo_i, hi_i = max(int(lo), info.min), min(int(hi), info.max)
        x = torch.randint(lo_i, hi_i + 1, shape, generator=gen, dtype=i64)
        for bad in exclude:
            x = torch.where(x == bad, torch.full_like(x, 2 if bad != 2 else 3), x)
        spec = int_specials(dtype) if specials is True else [
            v for v in (specials or []) if math.isfinite(v) and v == int(v)]
    flat = x.reshape(-1)
    for i, v in enumerate(spec[: flat.numel()]):
        flat[i] = v
    return flat.reshape(shape).to(dtype)


def unary(lo: float = -3.0, hi: float = 3.0, specials: list | bool = True,
          shape: tuple[int, ...] = (3, 5)) -> Callable:
    def make(dtype: torch.dtype, gen: torch.Generator) -> tuple:
        return (tensor(shape, dtype, gen, lo, hi, specials),)

    return make


def binary(lo: float = -3.0, hi: float = 3.0, specials: list | bool = True,
           other_shape: tuple[int, ...] = (5,), other_lo: float | None = None,
           other_hi: float | None = None, other_specials: list | bool = False,
           other_dtype: torch.dtype | None = None, exclude: tuple[int, ...] = (0,)) -> Callable:
    """(x: 3x5, y: `other_shape`, broadcasting); y avoids `exclude` (zero, and -1 for the
    integer divisions where INT_MIN / -1 traps on the CPU)."""

    def make(dtype: torch.dtype, gen: torch.Generator) -> tuple:
        x = tensor((3, 5), dtype, gen, lo, hi, specials)
        y = tensor(other_shape, other_dtype or dtype, gen,
                   lo if other_lo is None else other_lo, hi if other_hi is None else other_hi,
                   other_specials, exclude)
        return x, y

    return make


def with_mask(make: Callable) -> Callable:
    def wrapped(dtype: torch.dtype, gen: torch.Generator) -> tuple:
        return (*make(dtype, gen), torch.rand((3, 5), generator=gen) < 0.5)

    return wrapped


# -- the cases ----------------------------------------------------------------------------------
CASES: list[OpCase] = []


def case(name: str, fn: Callable, make: Callable, dtypes: tuple[torch.dtype, ...],
         tol: dict | Callable | None = None, reference: Callable | None = None) -> None:
    CASES.append(OpCase(name, fn, make, dtypes, tol, reference))


NUM = FLOATS + INTS
DIV_Y: dict = {"other_specials": False, "exclude": (0, -1)}

# arithmetic
case("add", torch.add, binary(), NUM + (u8, i8, i16, b8))
case("add_alpha", lambda x, y: torch.add(x, y, alpha=2), binary(), NUM)
case("add_scalar", lambda x: x + 2.5, unary(), FLOATS)
case("add_int_scalar", lambda x: x + 3, unary(), NUM + (u8, i8, i16))
case("add_int_tensor_float_scalar", lambda x: x + 1.5, unary(), INTS + (u8, b8))
case("add_f16_f32", lambda x, y: x + y, binary(other_dtype=f32), (f16, bf16))
case("add_zero_dim", lambda x, y: x + y, binary(other_shape=(), other_dtype=f32), (f16, bf16, i32))
case("add_zero_dim_same_kind", lambda x, y: x * y, binary(other_shape=(), other_dtype=i64),
     (i32, i16, u8))
case("sub", torch.sub, binary(), NUM + (i8,))
case("sub_alpha", lambda x, y: torch.sub(x, y, alpha=0.5), binary(), FLOATS)
case("rsub_scalar", lambda x: 2 - x, unary(), NUM)
case("mul", torch.mul, binary(), NUM + (u8, i16, b8))
case("mul_scalar", lambda x: x * 0.1, unary(), NUM)
case("div", torch.div, binary(other_specials=[0.0, -0.0, INF]), FLOATS)
case("div_int_true", torch.div, binary(lo=-20, hi=20, **DIV_Y), INTS + (u8,))
case("div_scalar", lambda x: x / 3.0, unary(), NUM)
# CUDA (and nvfuse) truncate / floor the float32 quotient of half operands, then round once;
# CPU eager rounds the quotient to the half dtype first, so a quotient just under an integer
# (50.99 -> bf16 51.0) can land one integer apart.  Allow that one step for the half dtypes.
_HALF_QUOTIENT_STEP = {torch.float16: (1.0, 0.0), torch.bfloat16: (1.0, 0.0)}
case("div_trunc", lambda x, y: torch.div(x, y, rounding_mode="trunc"),
     binary(lo=-20, hi=20, **DIV_Y), NUM + (i8,), tol=_HALF_QUOTIENT_STEP)
case("div_floor", lambda x, y: torch.div(x, y, rounding_mode="floor"),
     binary(lo=-20, hi=20, **DIV_Y), NUM + (i8,), tol=_HALF_QUOTIENT_STEP)
case("div_floor_scalar", lambda x: torch.div(x, -2.5, rounding_mode="floor"), unary(-20, 20),
     FLOATS)


def _near_multiples(dtype: torch.dtype, gen: torch.Generator) -> tuple:
    """Dividends near multiples of 0.3."""
    near = [0.6, -0.6, 0.9, 3.0, -3.0]
    return (tensor((3, 5), dtype, gen, -20, 20, [NAN, INF, -INF, 0.0, -0.0, *near]),)


# Rounding division by a non-representable scalar runs in float32/float64 only: CUDA narrows
# the divisor to float16/bfloat16 (0.3 -> 0.30005) and multiplies by its reciprocal, CPU eager
# divides by the un-narrowed 0.3, so near-multiples round to different integers (nvfuse
# matches CUDA; the GPU tier can add the half dtypes).
WIDE = (f32, f64)


case("div_floor_scalars", lambda x: torch.div(x, 0.3, rounding_mode="floor"), _near_multiples,
     WIDE)
case("div_floor_neg_scalar", lambda x: torch.div(x, -0.3, rounding_mode="floor"),
     _near_multiples, WIDE)
case("div_floor_zero", lambda x: torch.div(x, 0.0, rounding_mode="floor"), unary(), (f32,))
case("div_trunc_scalar", lambda x: torch.div(x, 0.3, rounding_mode="trunc"),
     unary(-20, 20, [NAN, INF, -INF, 0.0, -0.0, 0.6, -0.6, 0.9]), WIDE)
case("div_trunc_exact_scalar", lambda x: torch.div(x, 0.25, rounding_mode="trunc"),
     unary(-20, 20), FLOATS)
case("div_trunc_int_scalar", lambda x: torch.div(x, -3, rounding_mode="trunc"),
     unary(-20, 20), INTS)
case("floordiv_op", lambda x, y: x // y, binary(lo=-20, hi=20, **DIV_Y), NUM)
case("remainder", torch.remainder, binary(lo=-20, hi=20, specials=False, **DIV_Y), NUM)
case("remainder_scalar", lambda x: x % -3, unary(-20, 20, specials=False), NUM)
case("remainder_scalar_tensor", lambda y: torch.remainder(7.5, y), unary(-20, 20, False), FLOATS)
case("fmod", torch.fmod, binary(lo=-20, hi=20, specials=False, **DIV_Y), NUM)
case("fmod_scalar", lambda x: torch.fmod(x, 2.5), unary(-20, 20), FLOATS)
case("pow", torch.pow, binary(lo=0.1, hi=3, specials=[0.0, INF, NAN], other_lo=-2, other_hi=2),
     FLOATS)
case("pow_int", torch.pow, binary(lo=-5, hi=5, specials=False, other_lo=0, other_hi=4,
                                  exclude=()), INTS)
case("pow_scalar_exp", lambda x: x ** 2.5, unary(0.1, 3), FLOATS + INTS)


def _pow_by(e: float) -> Callable:
    return lambda x: torch.pow(x, e)


def _to(dtype: torch.dtype) -> Callable:
    return lambda x: x.to(dtype)


for _e in (2, 3, 0.5, -0.5, -1, -2, 0, 1):
    case(f"pow_exp_{_e}", _pow_by(_e), unary(0.1, 3, [0.0, INF, NAN]),
         FLOATS)
case("pow_int_exp_3", lambda x: x ** 3, unary(-9, 9, False), NUM)
case("pow_scalar_base", lambda x: torch.pow(2.0, x), unary(-3, 3), FLOATS + INTS)
case("pow_scalar_base_one", lambda x: torch.pow(1, x), unary(-3, 3), FLOATS)
case("square", torch.square, unary(), NUM + (b8,))
case("abs", torch.abs, unary(), NUM + (u8, i8, i16))
case("neg", torch.neg, unary(), NUM + (i8, u8))
case("sign", torch.sign, unary(), NUM + (u8, b8))
case("sgn", torch.sgn, unary(), FLOATS + INTS)
case("reciprocal", torch.reciprocal, unary(), FLOATS + INTS)

# float unary math
_UNARY_FLOAT = {
    "sqrt": (torch.sqrt, 0.1, 9), "rsqrt": (torch.rsqrt, 0.1, 9), "exp": (torch.exp, -5, 5),
    "exp2": (torch.exp2, -5, 5), "expm1": (torch.expm1, -2, 2), "log": (torch.log, 0.1, 9),
    "log2": (torch.log2, 0.1, 9), "log10": (torch.log10, 0.1, 9),
    "log1p": (torch.log1p, -0.9, 5), "sin": (torch.sin, -3, 3), "cos": (torch.cos, -3, 3),
    "tan": (torch.tan, -1.2, 1.2), "sinh": (torch.sinh, -3, 3), "cosh": (torch.cosh, -3, 3),
    "tanh": (torch.tanh, -3, 3), "asin": (torch.asin, -0.99, 0.99),
    "acos": (torch.acos, -0.99, 0.99), "atan": (torch.atan, -3, 3),
    "asinh": (torch.asinh, -3, 3), "acosh": (torch.acosh, 1.1, 5),
    "atanh": (torch.atanh, -0.9, 0.9), "erf": (torch.erf, -3, 3), "erfc": (torch.erfc, -3, 3),
}
for _name, (_fn, _lo, _hi) in _UNARY_FLOAT.items():
    case(_name, _fn, unary(_lo, _hi), FLOATS)
case("exp_int", torch.exp, unary(-5, 5, False), INTS + (b8,))
case("sqrt_int", torch.sqrt, unary(1, 50, False), INTS)
case("atan2", torch.atan2, binary(other_specials=[0.0, -0.0, INF, -INF, NAN]), FLOATS)
case("hypot", torch.hypot, binary(other_specials=[INF, NAN, 0.0]), (f32, f16, f64))

# activations
_ACT = {
    "sigmoid": torch.sigmoid, "relu": lambda x: F.relu(x), "relu6": lambda x: F.relu6(x),
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "elu": lambda x: F.elu(x, 0.5),
    "elu_scales": lambda x: torch.ops.aten.elu(x, 1.5, 2.0, 0.5), "selu": lambda x: F.selu(x),
    "celu": lambda x: F.celu(x, 0.7), "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": lambda x: F.silu(x),
    "mish": lambda x: F.mish(x),
    "softplus": F.softplus, "softplus_beta": lambda x: F.softplus(x, 2.0, 3.0),
    "softsign": F.softsign, "hardtanh": lambda x: F.hardtanh(x, -0.5, 1.5),
    "hardsigmoid": lambda x: F.hardsigmoid(x), "hardswish": lambda x: F.hardswish(x),
    "threshold": lambda x: F.threshold(x, 0.1, 20.0), "hardshrink": lambda x: F.hardshrink(x, 1.1),
    "softshrink": lambda x: F.softshrink(x, 0.6), "tanhshrink": F.tanhshrink,
    "logit": torch.logit, "logit_eps": lambda x: torch.logit(x, eps=0.2),
}
# torch's CUDA hardsigmoid/hardswish multiply by `opmath_t(1.0f / 6.0f)`, a float constant even
# in double; CPU eager divides by 6.  nvfuse matches CUDA, so float64 differs from CPU by ~3e-8.
_ONE_SIXTH_TOL = {f64: (1e-7, 1e-7)}


def _elementwise_reference(fn: Callable) -> Callable:
    """`fn` applied one element at a time: eager's vectorized CPU gelu (AVX-512, torch 2.13)
    returns NaN for +-inf where its scalar path and CUDA give inf / -0; nvfuse follows CUDA."""
    def reference(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1)
        return torch.cat([fn(flat[i:i + 1]) for i in range(flat.numel())]).reshape(x.shape)
    return reference


for _name, _fn in _ACT.items():
    _lo, _hi = (0.02, 0.98) if _name.startswith("logit") else (-6, 6)
    case(_name, _fn, unary(_lo, _hi), FLOATS,
         _ONE_SIXTH_TOL if _name in ("hardsigmoid", "hardswish") else None,
         _elementwise_reference(_fn) if _name == "gelu" else None)
case("relu_int", lambda x: F.relu(x), unary(-9, 9), INTS + (i8,))
case("threshold_int", lambda x: F.threshold(x, 2, -7), unary(-9, 9), INTS)
case("sigmoid_int", torch.sigmoid, unary(-9, 9, False), INTS)

# clamp family
case("clamp", lambda x: x.clamp(-1, 1.5), unary(), FLOATS)
case("clamp_int", lambda x: x.clamp(-3, 4), unary(-9, 9), ALL_INTS)
case("clamp_int_float_bounds", lambda x: x.clamp(-2.5, 3.5), unary(-9, 9), INTS)
case("clamp_min", lambda x: x.clamp(min=-1), unary(), NUM)
case("clamp_max", lambda x: x.clamp(max=1), unary(), NUM)
case("clamp_nan_bound", lambda x: x.clamp(min=NAN), unary(), (f32,))
case("clamp_nan_max_bound", lambda x: x.clamp(max=NAN), unary(), FLOATS)
case("clamp_nan_and_finite_bounds", lambda x: x.clamp(NAN, 1.0), unary(), (f32,))
case("clamp_int_nan_bound", lambda x: x.clamp(min=NAN), unary(-9, 9), INTS)
case("clamp_min_gt_max", lambda x: x.clamp(2, 1), unary(), (f32,))
case("clamp_tensor", lambda x, lo: x.clamp(lo, lo + 1), binary(other_specials=[NAN]), FLOATS)
case("clamp_tensor_min", lambda x, lo: torch.clamp_min(x, lo), binary(other_specials=[NAN]),
     NUM)
case("clamp_tensor_max", lambda x, hi: torch.clamp_max(x, hi), binary(), NUM)
case("minimum", torch.minimum, binary(other_specials=[NAN, 0.0]), NUM + (b8,))
case("maximum", torch.maximum, binary(other_specials=[NAN, -0.0]), NUM + (b8,))
case("fmin", torch.fmin, binary(other_specials=[NAN, NAN]), NUM)
case("fmax", torch.fmax, binary(other_specials=[NAN, INF]), NUM)

# rounding
case("floor", torch.floor, unary(-9, 9), NUM)
case("ceil", torch.ceil, unary(-9, 9), NUM)
case("trunc", torch.trunc, unary(-9, 9), NUM)
case("round", torch.round, lambda d, g: (tensor((3, 5), d, g, -9, 9, [0.5, 1.5, 2.5, -0.5,
                                                                     -2.5, NAN, INF]),), NUM)
def _round_decimals_cuda(decimals: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Eager CUDA's round(x, decimals=): in the tensor's own type, so for float16 / bfloat16
    10^|d| and the quotient / product round to the dtype before nearbyint (CPU eager keeps
    float32; the first GPU run found a bfloat16 tie, -346 / 10, landing apart)."""
    def ref(x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (f16, bf16):
            return torch.round(x, decimals=decimals)
        ten = torch.tensor(10.0 ** abs(decimals), dtype=x.dtype, device=x.device).float()
        q = (x.float() / ten if decimals < 0 else x.float() * ten).to(x.dtype).float()
        return (torch.round(q) * ten if decimals < 0 else torch.round(q) / ten).to(x.dtype)

    return ref


case("round_decimals", lambda x: torch.round(x, decimals=2), unary(-9, 9), FLOATS,
     reference=_round_decimals_cuda(2))
case("round_decimals_neg", lambda x: torch.round(x, decimals=-1), unary(-900, 900), FLOATS,
     reference=_round_decimals_cuda(-1))
# bfloat16 ties of x / 10 (-346 / 10 = -34.6 rounds to -34.5, then to -34): CUDA's answer
case("round_decimals_ties", lambda x: torch.round(x, decimals=-1),
     lambda d, g: (torch.tensor([[-346.0, 346.0, 250.0, -250.0, 1004.0, 44.0]], dtype=d),),
     (f16, bf16), reference=_round_decimals_cuda(-1))
case("frac", torch.frac, unary(-9, 9), FLOATS)

# comparisons and logic


def _some_equal(dtype: torch.dtype, gen: torch.Generator) -> tuple:
    """Comparison inputs where some elements of y equal x's first row."""
    x, y = binary(-3, 3)(dtype, gen)
    return x, torch.where(torch.rand((5,), generator=gen) < 0.3, x[0], y)


for _name, _fn in (("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le),
                   ("gt", torch.gt), ("ge", torch.ge)):
    case(_name, _fn, _some_equal, NUM + (b8,))
case("eq_scalar", lambda x: x == 2, unary(-3, 3), NUM)
case("lt_scalar_float", lambda x: x < 0.5, unary(), NUM)
case("ge_f16_f32", lambda x, y: x >= y, binary(other_dtype=f32), (f16, bf16))
case("gt_int_float", lambda x, y: x > y, binary(other_dtype=f32), INTS)
for _name, _fn in (("logical_and", torch.logical_and), ("logical_or", torch.logical_or),
                   ("logical_xor", torch.logical_xor)):
    case(_name, _fn, binary(other_specials=[0, 0, 1]), NUM + (b8,))
case("logical_not", torch.logical_not, unary(), NUM + (b8,))
for _name, _fn in (("bitwise_and", torch.bitwise_and), ("bitwise_or", torch.bitwise_or),
                   ("bitwise_xor", torch.bitwise_xor)):
    case(_name, _fn, binary(-100, 100), ALL_INTS + (b8,))
case("bitwise_and_scalar", lambda x: x & 6, unary(-100, 100), ALL_INTS)
case("bitwise_not", torch.bitwise_not, unary(-100, 100), ALL_INTS + (b8,))
case("shift_left", lambda x, y: x << y, binary(-100, 100, other_lo=0, other_hi=70,
                                               exclude=()), ALL_INTS)
case("shift_right", lambda x, y: x >> y, binary(-100, 100, other_lo=0, other_hi=70,
                                                exclude=()), ALL_INTS)
case("shift_left_scalar", lambda x: x << 3, unary(-100, 100), ALL_INTS)
case("bitwise_right_shift", torch.bitwise_right_shift,
     binary(-100, 100, other_lo=0, other_hi=9, exclude=()), INTS)

# where / masked_fill
case("where", lambda x, y, m: torch.where(m, x, y), with_mask(binary()), NUM + (b8,))
case("where_scalar_other", lambda x, y, m: torch.where(m, x, 0.5) + y, with_mask(binary()),
     FLOATS)
case("where_scalar_self", lambda x, y, m: torch.where(m, 2, x) * y, with_mask(binary()), NUM)
case("where_scalars", lambda x, m: torch.where(m, 1.0, -1.0) + x,
     with_mask(unary()), FLOATS)
case("where_int_float_scalar", lambda x, m: torch.where(m, x, 2.5), with_mask(unary(-9, 9)),
     INTS)
case("masked_fill", lambda x, m: x.masked_fill(m, -7.0), with_mask(unary()), NUM + (b8,))
case("masked_fill_tensor", lambda x, m: x.masked_fill(m, torch.tensor(3.0)),
     with_mask(unary()), FLOATS)

# predicates
for _name, _fn in (("isnan", torch.isnan), ("isinf", torch.isinf), ("isfinite", torch.isfinite),
                   ("isposinf", torch.isposinf), ("isneginf", torch.isneginf),
                   ("signbit", torch.signbit)):
    case(_name, _fn, unary(), NUM + (u8, b8))
case("nan_to_num", torch.nan_to_num, unary(), NUM + (b8,))
case("nan_to_num_values", lambda x: torch.nan_to_num(x, 1.0, 2.0, -3.0), unary(), FLOATS)

# composite
case("lerp", lambda x, y: torch.lerp(x, y, 0.3), binary(specials=False), FLOATS)
case("lerp_large_weight", lambda x, y: torch.lerp(x, y, 0.8), binary(specials=False), FLOATS)
case("lerp_tensor", lambda x, y, w: torch.lerp(x, y, w),
     lambda d, g: (*binary(specials=False)(d, g), tensor((3, 5), d, g, -1.5, 1.5)), FLOATS)
case("addcmul", lambda x, y: torch.addcmul(x, x, y, value=0.5), binary(), FLOATS)
case("addcmul_int", lambda x, y: torch.addcmul(x, x, y, value=3), binary(-99, 99), INTS)
case("addcdiv", lambda x, y: torch.addcdiv(x, x, y, value=0.5), binary(), FLOATS)
# prims.fma (dynamo writes addcmul_ / add_ with a factor as it): a * b + c, product unrounded;
# torch releases without the prim have no case
if hasattr(torch.ops.prims, "fma"):
    case("fma_scalar", lambda x, y: _fma(x, 0.125, y), binary(), FLOATS + INTS)
    case("fma_tensor", lambda x, y: _fma(x, y, x), binary(specials=False), FLOATS)
case("copysign", torch.copysign, binary(other_specials=[-0.0, 0.0, NAN, -INF]), FLOATS + INTS)
case("copysign_scalar", lambda x: torch.copysign(x, -1.0), unary(), FLOATS)
case("logaddexp", torch.logaddexp,
     lambda d, g: (tensor((3, 5), d, g, -9, 9, [INF, -INF, INF, -INF, NAN, 2.0]),
                   tensor((5,), d, g, -9, 9, [INF, -INF, -INF, INF, 1.0])), (f32, f16, bf16, f64))
case("logaddexp2", torch.logaddexp2,
     lambda d, g: (tensor((3, 5), d, g, -9, 9, [INF, -INF, INF, -INF, NAN, 2.0]),
                   tensor((5,), d, g, -9, 9, [INF, -INF, -INF, INF, 1.0])), (f32, f16, bf16, f64))
case("xlogy", torch.xlogy,
     lambda d, g: (tensor((3, 5), d, g, -3, 3, [0.0, 0.0, 0.0, 2.0, NAN]),
                   tensor((5,), d, g, 0.1, 5, [NAN, 0.0, 1.0, NAN, 1.0])), FLOATS)
case("xlogy_scalar_other", lambda x: torch.xlogy(x, 2.0), unary(), FLOATS)
case("xlogy_scalar_self", lambda y: torch.xlogy(2.0, y), unary(0.1, 5), FLOATS)
case("deg2rad", torch.deg2rad, unary(-360, 360), FLOATS)
case("rad2deg", torch.rad2deg, unary(), FLOATS)
case("sinc", torch.sinc, unary(-3, 3, [0.0, -0.0, 1.0, INF, NAN]), FLOATS)

# conversions and constants
_TARGETS = (b8, u8, i8, i16, i32, i64, f16, bf16, f32, f64)


def _convert_inputs(target: torch.dtype) -> Callable:
    def make(dtype: torch.dtype, gen: torch.Generator) -> tuple:
        # finite values inside every target's range (float -> int of NaN/inf or of an
        # out-of-range value is undefined in C and differs between devices)
        lo = 0 if u8 in (dtype, target) else -100
        specials = [0.5, -0.5, 1.5, 2.5, 1e-3] if dtype.is_floating_point else True
        if target is u8 and not dtype.is_floating_point:
            specials = [1, 100]
        return (tensor((3, 5), dtype, gen, lo, 100, specials),)

    return make


for _target in _TARGETS:
    _from = tuple(d for d in _TARGETS if d is not _target)
    case(f"to_{str(_target).split('.')[-1]}", _to(_target), _convert_inputs(_target), _from)
case("to_f16_rounds", lambda x: (x * 1.001).to(f16).to(f32), unary(), (f32,))
case("type_as", lambda x, y: x.type_as(y) + y, binary(-9, 9, False, other_dtype=i64), FLOATS)
case("double", lambda x: x.double(), unary(), (f32, f16, bf16))
case("clone", lambda x: x.clone(), unary(), NUM + (b8,))
case("zeros_like", lambda x: torch.zeros_like(x), unary(), NUM + (b8,))
case("ones_like", lambda x: torch.ones_like(x), unary(), NUM + (b8,))
case("full_like", lambda x: torch.full_like(x, 3.0), unary(), NUM)
case("full_like_dtype", lambda x: torch.full_like(x, 7, dtype=i32) + x, unary(), FLOATS)
case("zero_dim_input", lambda x, s: torch.exp(x) * s, binary(other_shape=()), FLOATS)
# x.new_full((), v): lerp's scalar weight (a 0-dim constant, not x's shape)
case("new_full_zero_dim", lambda x: x * x.new_full((), 0.3) + x.new_ones(()), unary(), FLOATS)
case("new_zeros_zero_dim", lambda x: x - x.new_zeros((), dtype=f64), unary(), (f32, f64))
