"""Activation lowerings: the clamp family (clamp / clip, clamp_min, clamp_max, hardtanh, relu6,
relu), sigmoid, logit, leaky_relu, elu / selu / celu, gelu, silu, mish, softplus, hardsigmoid,
hardswish, threshold, hardshrink and softshrink -> prims.

Contract: importing this module registers each lowering in the op table
(`nvfuse.graph.ops.registry.TABLE`); each takes a `Call` and returns the result `Val`, raising
`Unsupported` where eager raises or where it cannot be exact.  Coefficients are held as eager's
kernels hold them (opmath, or float where the kernel says float), cited per op.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.graph.ops.registry import (
    BOOL,
    F64,
    Call,
    Operand,
    P,
    aten,
    const_of,
    float_input,
    literal,
    op,
    ops,
    register,
)


# -- clamp ------------------------------------------------------------------------------------
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


def _one_nan_bound_keeps_input() -> bool:
    """Whether the installed torch's clamp with a single bound, a NaN scalar, returns its input
    (torch 2.11, CPU and CUDA kernels alike) rather than NaN (torch 2.13).  With two bounds, or
    through clamp_min / clamp_max / hardtanh, a NaN bound gives NaN in both.  Asked once, of a
    one-element CPU tensor, so nvfuse follows whichever torch it runs with."""
    return not bool(torch.clamp(torch.ones(1), min=float("nan")).isnan().item())


ONE_NAN_BOUND_KEEPS_INPUT = _one_nan_bound_keeps_input()


@register(*ops("clamp", "default", "Tensor"), *ops("clip", "default", "Tensor"))
def _clamp(c: Call) -> Val:
    lo, hi = c.args.get("min"), c.args.get("max")
    bounds = [b for b in (lo, hi) if b is not None]
    if (ONE_NAN_BOUND_KEEPS_INPUT and len(bounds) == 1 and isinstance(bounds[0], float)
            and math.isnan(bounds[0])):
        if c.out is BOOL:
            raise Unsupported("clamp of bool")
        return c.value(c.tensor("self"), c.out)
    return _clamp_between(c, _bound(c, "min"), _bound(c, "max"))


@register(*ops("clamp_min", "default", "Tensor"))
def _clamp_min(c: Call) -> Val:
    return _clamp_between(c, c.operand("min"), None)


@register(*ops("clamp_max", "default", "Tensor"))
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
@register(aten.sigmoid.default, op("special_expit"))
def _sigmoid(c: Call) -> Val:
    x, dt = float_input(c)
    one = c.b.const(1, dt.compute)
    return c.p(P.DIV, one, c.p(P.ADD, one, c.p(P.EXP, c.p(P.NEG, x))))  # 1 / (1 + exp(-x))


@register(aten.logit.default)
def _logit(c: Call) -> Val:
    x, dt = float_input(c)
    one = c.b.const(1, dt.compute)
    eps = c.args.get("eps")
    if eps is not None:
        eps = literal(eps, "eps")
    if eps is not None and eps >= 0:
        # torch (logit_kernel_cuda): z = x < lo ? lo : (x > hi ? hi : x), hi = 1 - eps in
        # the accumulate type; NaN stays NaN.
        lo_v = const_of(eps, dt)
        hi_v = const_of(1.0 - lo_v, dt) if dt.compute is F64 else float(
            np.float32(1.0) - np.float32(lo_v))
        lo, hi = c.b.const(lo_v, dt.compute), c.b.const(hi_v, dt.compute)
        x = c.where(c.p(P.LT, x, lo), lo, c.where(c.p(P.GT, x, hi), hi, x))
    return c.p(P.LOG, c.p(P.DIV, x, c.p(P.SUB, one, x)))


@register(aten.leaky_relu.default)
def _leaky_relu(c: Call) -> Val:
    x, dt = float_input(c)
    slope = c.opmath(c.scalar("negative_slope"), dt)
    # torch: x > 0 ? x : x * negval (NaN -> NaN * negval)
    return c.where(c.p(P.GT, x, c.b.const(0, dt.compute)), x, c.p(P.MUL, x, slope))


def _elu_of(c: Call, alpha: float, scale: float, input_scale: float) -> Val:
    """torch (elu_kernel): x > 0 ? x * scale : expm1(x * input_scale) * (alpha * scale),
    the coefficients read as opmath and multiplied there."""
    x, dt = float_input(c)
    f = np.float64 if dt.compute is F64 else np.float32
    negcoef = float(f(alpha) * f(scale))
    pos = c.p(P.MUL, x, c.b.const(const_of(scale, dt), dt.compute))
    inner = c.p(P.MUL, x, c.b.const(const_of(input_scale, dt), dt.compute))
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
    x, dt = float_input(c)
    k = dt.compute

    def const(v: float) -> Val:
        return c.b.const(const_of(v, dt), k)

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
    x, dt = float_input(c)
    one = c.b.const(1, dt.compute)
    return c.p(P.DIV, x, c.p(P.ADD, one, c.p(P.EXP, c.p(P.NEG, x))))  # x / (1 + exp(-x))


@register(aten.mish.default)
def _mish(c: Call) -> Val:
    x, _ = float_input(c)
    return c.p(P.MUL, x, c.p(P.TANH, c.p(P.LOG1P, c.p(P.EXP, x))))  # x * tanh(log1p(exp(x)))


@register(aten.softplus.default)
def _softplus(c: Call) -> Val:
    x, dt = float_input(c)
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
    x, dt = float_input(c)
    return c.p(P.MUL, _hard_gate(c, x, dt), _one_sixth(c, dt))


@register(aten.hardswish.default)
def _hardswish(c: Call) -> Val:
    x, dt = float_input(c)
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
    x, dt = float_input(c)
    lambd = c.b.const(c.scalar("lambd"), dt)
    # torch: (x >= -lambd && x <= lambd) ? 0 : x, i.e. |x| <= lambd; NaN stays
    return c.where(c.p(P.LE, c.p(P.ABS, x), lambd), c.b.const(0, dt), x)


@register(aten.softshrink.default)
def _softshrink(c: Call) -> Val:
    x, dt = float_input(c)
    lambd = c.b.const(c.scalar("lambd"), dt)
    zero = c.b.const(0, dt)
    # torch: x > l ? x - l : (x < -l ? x + l : x * 0)  (x * 0 keeps NaN and -0)
    inner = c.where(c.p(P.LT, x, c.p(P.NEG, lambd)), c.p(P.ADD, x, lambd), c.p(P.MUL, x, zero))
    return c.where(c.p(P.GT, x, lambd), c.p(P.SUB, x, lambd), inner)
