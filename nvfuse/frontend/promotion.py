"""Common-dtype conversion in front of torch's pointwise decompositions.

Input: an elementwise op's decomposition.  Output: the same decomposition, called with every
tensor operand that eager would convert to a float16 / bfloat16 common dtype already converted
(and addcmul's float `value=` over integer tensors read as eager reads it: truncated).

Why: eager's pointwise kernels (TensorIterator, CPU and CUDA alike) first convert each operand to
the op's common dtype and only then widen it to opmath; torch's reference decompositions widen
each operand straight to the computation dtype.  The two differ where the common dtype is
float16 / bfloat16 and an operand has another dtype: an int64 -2**62 is -inf as a half (eager's
`addcmul` gives NaN from it) but finite as a float32, an int 2049 is 2048 as a half, a 0-dim
float32 0.1 rounds to 0.0999755859375.  Converting those operands first gives the decomposition
eager's operand values; operands already of the common dtype, bool operands (masks and
conditions, exact in any float dtype) and Python scalars (eager reads those in opmath) are
left as they are.
"""

from __future__ import annotations

import functools
from typing import Any
from collections.abc import Callable

import torch
from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

_HALVES = (torch.float16, torch.bfloat16)


def converted_first(decomposition: Callable[..., Any]) -> Callable[..., Any]:
    """`decomposition` whose non-bool tensor operands are first converted to the common dtype
    where that dtype is float16 / bfloat16 (module docstring)."""

    @functools.wraps(decomposition)
    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs = _integral_value(args, kwargs)
        tensors = [a for a in (*args, *kwargs.values())
                   if isinstance(a, torch.Tensor) and a.dtype != torch.bool]
        if len(tensors) < 2 or not any(t.dtype in _HALVES for t in tensors):
            return decomposition(*args, **kwargs)
        try:
            _, common = elementwise_dtypes(
                *tensors, type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT)
        except Exception:  # no common dtype: the decomposition raises as eager does
            return decomposition(*args, **kwargs)
        if common not in _HALVES:
            return decomposition(*args, **kwargs)

        def convert(a: Any) -> Any:
            if isinstance(a, torch.Tensor) and a.dtype not in (torch.bool, common):
                return a.to(common)
            return a

        return decomposition(*(convert(a) for a in args),
                             **{k: convert(v) for k, v in kwargs.items()})

    return run


def _integral_value(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """kwargs with a float `value=` (addcmul's) truncated to an int where every tensor operand
    is an integer: eager reads it as `value.to<scalar_t>()` of the integer dtype (0.5 -> 0,
    2.7 -> 2), torch's reference refuses a float value for an integer `self`."""
    value = kwargs.get("value")
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not isinstance(value, float) or not tensors or not value == value or \
            abs(value) == float("inf") or any(t.dtype.is_floating_point or t.is_complex() or
                                               t.dtype == torch.bool for t in tensors):
        return kwargs
    return {**kwargs, "value": int(value)}
