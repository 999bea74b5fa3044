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

The lowerings live in `nvfuse.graph.ops` (arithmetic, math_ops, activations, compare,
conversions, random, reductions, variance, argminmax, vector_norm), which register into
`nvfuse.graph.ops.registry.TABLE`; importing this module imports them all, so the table is
complete once `nvfuse.graph.optable` is imported.

Numerics follow eager PyTorch's CUDA kernels (aten/src/ATen/native/cuda/*.cu), cited per op:
- Operands are brought to the op's common dtype as TensorIterator does: a tensor of another
  dtype is converted (a float16/bfloat16 operand promoted from a narrower value is rounded
  first), a Python scalar is narrowed to the common dtype (TensorIterator converts the wrapped
  number), except where the kernel reads the original scalar in opmath: mul and div (true,
  trunc, floor) of a half tensor keep the scalar in float32 (`original_scalar_value<opmath_t>`),
  so `x_f16 * 1e5` does not overflow.  Arithmetic then runs in the compute dtype (float32 for
  halves).
- Scalar *parameters* of an op (alpha, negative_slope, beta, threshold of softplus...) are
  read as `Scalar::to<opmath_t>()`, i.e. not narrowed to the half dtype.
"""

from __future__ import annotations

from typing import Any

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder, Unsupported, Val

# Importing the lowering modules registers their lowerings in TABLE.
from nvfuse.graph.ops import (  # noqa: F401
    activations,
    argminmax,
    arithmetic,
    compare,
    conversions,
    math_ops,
    random,
    reductions,
    variance,
    vector_norm,
)
from nvfuse.graph.ops.registry import TABLE, Call, Lowering, register

__all__ = ["Call", "Lowering", "has_lowering", "lower_op", "register", "supported_ops"]


# -- public API ------------------------------------------------------------------------------
def lower_op(b: Builder, target: Any, args: tuple, kwargs: dict, out: DType) -> Val:
    """Lower one aten op application to prims; see the module docstring."""
    fn = TABLE.get(target)
    if fn is None:
        raise Unsupported(f"no lowering for {target}")
    return fn(Call(b, target, _bind(target, args, kwargs), out))


def has_lowering(target: Any) -> bool:
    return target in TABLE


def supported_ops() -> list[str]:
    return sorted(str(t) for t in TABLE)


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
