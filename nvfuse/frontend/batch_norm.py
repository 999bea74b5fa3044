"""Decompositions of training-mode batch norm (forward and backward) and of group norm into
single-output reductions and elementwise ops the op table lowers: aten op -> Python function of
tensors returning eager's tuple, traced by make_fx (nvfuse/frontend/norms.py adds them to its
table).

- native_batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum, eps)
  -> (y, save_mean, save_invstd).  Statistics per channel (dim 1) over every other dim, kept as
  size-1 dims so that every value of the computation lives in x's iteration space: mean and
  var(correction=0) of x in float32 for float16/bfloat16 (float64 for float64), one Welford
  pass; invstd = rsqrt(var + eps); y = (x - mean) * invstd [* weight] [+ bias] rounded once to
  x's dtype.  The per-channel operands (weight, bias, running stats) enter as [1, C, 1, ...]
  views, and the saved statistics leave as [C] views (views run eagerly and cost nothing), so
  statistics, normalization and running-stat updates are one reduction kernel over (N, *)
  reduced dims -- a row reduction for NCHW (each channel's elements are runs of H*W), a column
  reduction for [N, C] and channels-last inputs.
  Running stats, when given, are updated as eager does: running = (1 - momentum) * running +
  momentum * stat, with the unbiased variance (m2 / (n - 1)), through an in-place
  `copy_` that functionalization turns into a functional value plus a copy back into the
  buffer (`_native_batch_norm_legit` alike; AOTAutograd's functional variant returns the new
  running stats instead).
  Saved statistics have eager's dtype: float32 for half inputs on CUDA or with float32
  parameters (CPU mixed precision), x's dtype otherwise.  Eval mode (training=False) is not
  decomposed here (returns NotImplemented: the op runs as it is).
- `cudnn_batch_norm` / `miopen_batch_norm` (what `aten.batch_norm` becomes on a CUDA or ROCm
  device in training mode): the same decomposition (cuDNN's extra output: an empty reserve).
- native_batch_norm_backward(g, x, weight, running_mean, running_var, save_mean, save_invstd,
  train=True, eps, output_mask) (and cudnn_/miopen_batch_norm_backward, x first, all three
  gradients) -> (grad_input, grad_weight, grad_bias), eager's formulas in the compute dtype,
  per channel over every other dim (M elements each), from the saved mean and inverse std:
      sum_g = sum(g),  dot = sum(g * (x - mean))
      grad_input = (g - sum_g / M - (x - mean) * (dot * invstd * invstd / M)) * invstd
                   [* weight], rounded to x's dtype
      grad_weight = dot * invstd,  grad_bias = sum_g    (the weight's dtype, x's without one)
  One reduction kernel (both sums, then grad_input per element), as the forward; eval mode
  (train=False) keeps the op.
- native_group_norm(x, weight, bias, N, C, HxW, group, eps) -> (y, mean, rstd): x viewed as
  [N, group, C / group, HxW] (a view), statistics over the trailing two dims -- a row
  reduction -- with weight and bias viewed as [1, group, C / group, 1]; mean and rstd [N, group]
  of x's dtype, as eager.  One kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten
_HALVES = (torch.float16, torch.bfloat16)


def _compute(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _training(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any, running_var: Any,
              momentum: float, eps: float) -> tuple[Any, ...]:
    """(y, save_mean, save_invstd, new running mean or None, new running var or None)."""
    channels = x.shape[1]
    dims = [d for d in range(x.dim()) if d != 1]
    per_channel = [1, channels] + [1] * (x.dim() - 2)
    compute = _compute(x)
    xf = x.to(compute)
    var = aten.var.correction(xf, dims, correction=0, keepdim=True)
    mean = aten.mean.dim(xf, dims, True)
    invstd = aten.rsqrt.default(var + eps)
    y = (xf - mean) * invstd
    if weight is not None:
        y = y * weight.view(per_channel)
    if bias is not None:
        y = y + bias.view(per_channel)
    new_mean = new_var = None
    if running_mean is not None:
        rm = running_mean.view(per_channel)
        new_mean = (rm * (1 - momentum) + mean * momentum).to(running_mean.dtype).view(channels)
    if running_var is not None:
        # the same REDUCE_M2 as `var` once the partitioner merges the sibling groups
        unbiased = aten.var.correction(xf, dims, correction=1, keepdim=True)
        rv = running_var.view(per_channel)
        new_var = (rv * (1 - momentum) + unbiased * momentum).to(running_var.dtype).view(
            channels)
    param = next((t for t in (weight, running_mean) if t is not None), None)
    mixed = param is not None and param.dtype != x.dtype
    stats = compute if x.dtype in _HALVES and (x.device.type == "cuda" or mixed) else x.dtype
    # convert, then view: the conversion stays in the kernel, the view is free
    return (y.to(x.dtype), mean.to(stats).view(channels), invstd.to(stats).view(channels),
            new_mean, new_var)


def native_batch_norm(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any,
                      running_var: Any, training: bool, momentum: float, eps: float) -> Any:
    """See the module docstring (also `_native_batch_norm_legit`, which mutates alike)."""
    if not training or x.dim() < 2:
        return NotImplemented
    y, mean, invstd, new_mean, new_var = _training(x, weight, bias, running_mean, running_var,
                                                   momentum, eps)
    if new_mean is not None:
        running_mean.copy_(new_mean)
    if new_var is not None:
        running_var.copy_(new_var)
    return y, mean, invstd


def native_batch_norm_functional(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any,
                                 running_var: Any, training: bool, momentum: float,
                                 eps: float) -> Any:
    """AOTAutograd's `_native_batch_norm_legit_functional`: the new running stats are
    returned (y, save_mean, save_invstd, running_mean, running_var) instead of written."""
    if not training or x.dim() < 2 or running_mean is None or running_var is None:
        return NotImplemented
    return _training(x, weight, bias, running_mean, running_var, momentum, eps)


def native_batch_norm_no_stats(x: torch.Tensor, weight: Any, bias: Any, training: bool,
                               momentum: float, eps: float) -> Any:
    """`_native_batch_norm_legit.no_stats`: training-mode batch norm without running stats."""
    return native_batch_norm(x, weight, bias, None, None, training, momentum, eps)


def cudnn_batch_norm(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any,
                     running_var: Any, training: bool, momentum: float, eps: float) -> Any:
    """`cudnn_batch_norm`, what `aten.batch_norm` becomes for a float32/half CUDA input in
    training mode (its `_batch_norm_impl_index` is decomposed before make_fx's table sees
    it): the native decomposition with an empty reserve; cuDNN's saved statistics are the
    mean and the inverse std, as native's."""
    out = native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps)
    if out is NotImplemented:
        return out
    return (*out, x.new_empty((0,), dtype=torch.uint8))


def _backward(g: torch.Tensor, x: torch.Tensor, weight: Any, mean: torch.Tensor,
              invstd: torch.Tensor, output_mask: list[bool]) -> tuple[Any, ...]:
    """(grad_input, grad_weight, grad_bias) of training batch norm (module docstring)."""
    channels = x.shape[1]
    dims = [d for d in range(x.dim()) if d != 1]
    per_channel = [1, channels] + [1] * (x.dim() - 2)
    compute = _compute(x)
    gf = g.to(compute)
    xmu = x.to(compute) - mean.to(compute).view(per_channel)
    inv = invstd.to(compute).view(per_channel)
    sum_g = aten.sum.dim_IntList(gf, dims, True)
    dot = aten.sum.dim_IntList(gf * xmu, dims, True)
    grad_input = grad_weight = grad_bias = None
    if output_mask[0]:
        count = x.numel() // max(channels, 1)
        proj = xmu * (dot * inv * inv / count)
        grad_input = (gf - sum_g / count - proj) * inv
        if weight is not None:
            grad_input = grad_input * weight.to(compute).view(per_channel)
        grad_input = grad_input.to(x.dtype)
    param = weight.dtype if weight is not None else x.dtype
    if output_mask[1]:
        grad_weight = (dot * inv).to(param).view(channels)
    if output_mask[2]:
        grad_bias = sum_g.to(param).view(channels)
    return grad_input, grad_weight, grad_bias


def native_batch_norm_backward(g: torch.Tensor, x: torch.Tensor, weight: Any,
                               running_mean: Any, running_var: Any, save_mean: Any,
                               save_invstd: Any, train: bool, eps: float,
                               output_mask: list[bool]) -> Any:
    """See the module docstring."""
    if not train or x.dim() < 2 or save_mean is None or save_invstd is None:
        return NotImplemented
    return _backward(g, x, weight, save_mean, save_invstd, output_mask)


def cudnn_batch_norm_backward(x: torch.Tensor, g: torch.Tensor, weight: Any,
                              running_mean: Any, running_var: Any, save_mean: Any,
                              save_var: Any, eps: float, *reserve: Any) -> Any:
    """`cudnn_batch_norm_backward` / `miopen_batch_norm_backward` (x first; the saved "var" is
    the inverse std, as cudnn_batch_norm saves it): all three gradients."""
    if x.dim() < 2 or save_mean is None or save_var is None:
        return NotImplemented
    return _backward(g, x, weight, save_mean, save_var, [True, True, True])


def native_group_norm(x: torch.Tensor, weight: Any, bias: Any, n: int, channels: int,
                      hxw: int, group: int, eps: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See the module docstring."""
    grouped = [n, group, channels // group, hxw]
    xf = x.reshape(grouped).to(_compute(x))
    var = aten.var.correction(xf, [2, 3], correction=0, keepdim=True)
    mean = aten.mean.dim(xf, [2, 3], True)
    rstd = aten.rsqrt.default(var + eps)
    y = (xf - mean) * rstd
    per_channel = [1, group, channels // group, 1]
    if weight is not None:
        y = y * weight.view(per_channel)
    if bias is not None:
        y = y + bias.view(per_channel)
    return (y.to(x.dtype).reshape(x.shape), mean.to(x.dtype).view(n, group),
            rstd.to(x.dtype).view(n, group))


def batch_norm_decompositions() -> dict[Any, Callable[..., Any]]:
    """aten overload -> decomposition (training batch norm, group norm)."""
    table: dict[Any, Callable[..., Any]] = {
        aten.native_batch_norm.default: native_batch_norm,
        aten.native_group_norm.default: native_group_norm}
    legit = getattr(aten, "_native_batch_norm_legit", None)
    if legit is not None:
        table[legit.default] = native_batch_norm
        table[legit.no_stats] = native_batch_norm_no_stats
    # the device-specific paths of aten.batch_norm (cuDNN on CUDA, MIOpen on ROCm)
    table[aten.cudnn_batch_norm.default] = cudnn_batch_norm
    table[aten.miopen_batch_norm.default] = native_batch_norm
    table[aten.native_batch_norm_backward.default] = native_batch_norm_backward
    table[aten.cudnn_batch_norm_backward.default] = cudnn_batch_norm_backward
    table[aten.miopen_batch_norm_backward.default] = cudnn_batch_norm_backward
    functional = getattr(aten, "_native_batch_norm_legit_functional", None)
    if functional is not None:
        table[functional.default] = native_batch_norm_functional
    return table
