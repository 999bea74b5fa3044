"""Decompositions of the normalization and softmax backwards into single-output reductions and
elementwise ops the op table lowers: aten op -> Python function of tensors returning eager's
result, traced by make_fx (nvfuse/frontend/fx.py adds them to its table).  AOTAutograd's
backward graphs keep these ops whole (the backend passes no AOT-level decompositions), so
without them every layer norm and log_softmax backward runs eagerly.

- native_layer_norm_backward(g, x, normalized_shape, mean, rstd, weight, bias, output_mask)
  -> (grad_input, grad_weight, grad_bias), None where output_mask (or a missing weight / bias)
  says so.  Uses the forward's saved mean and rstd (never recomputes the statistics), in float32
  for float16/bfloat16 (float64 for float64):
      xhat = (x - mean) * rstd,  gw = g * weight (g without a weight)
      grad_input  = rstd * (gw - mean(gw) - xhat * mean(gw * xhat))   row means over the
                    normalized (trailing) dims, keepdim: one row-reduction kernel
      grad_weight = sum(g * xhat) over the leading dims, grad_bias = sum(g) over them
  grad_input has x's dtype (and, as every result here, is contiguous as eager's), grad_weight /
  grad_bias the weight's / bias's dtype.  The leading-dim
  sums are column reductions (kind COLUMN), fused with the g * xhat product; a partition round
  of their own, since they reduce other dims than grad_input's row means.  With no leading dims
  there is nothing to sum: the gradients are the products themselves.
- _softmax_backward_data(g, y, dim, input_dtype) = y * (g - sum(g * y, dim, keepdim)) (computed
  as g * y - y * sum(g * y), which reuses the product) and
  _log_softmax_backward_data(g, y, dim, input_dtype) = g - exp(y) * sum(g, dim, keepdim), in
  float32 for halves, result in input_dtype (eager's rule: the forward may have upcast with
  softmax(x, dtype=...)).  Over the last dim each is one row-reduction kernel; over another dim
  the sum is a reduction over that dim (the column schedule when the strides say so), fused
  with the elementwise work around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any operand is float64, else float32 (halves are computed in float32)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    # eager's kernels return grad_input contiguous whatever the operands' layouts (they make
    # their operands contiguous first); elementwise results would follow an operand's layout.
    # Traced on real tensors, so the copy appears only where the layouts differ, and it fuses.
    if t.is_contiguous():
        return t
    return aten.clone.default(t, memory_format=torch.contiguous_format)


def native_layer_norm_backward(
        g: torch.Tensor, x: torch.Tensor, normalized_shape: list[int], mean: torch.Tensor,
        rstd: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
        output_mask: list[bool]) -> tuple[torch.Tensor | None, ...]:
    """See the module docstring."""
    axis = x.dim() - len(normalized_shape)
    inner = list(range(axis, x.dim()))
    outer = list(range(axis))
    compute = _compute_dtype(x.dtype, g.dtype)
    gf, xf = g.to(compute), x.to(compute)
    # mean / rstd are saved with the normalized dims kept as size 1 (eager's layout), so they
    # broadcast along each row
    xhat = (xf - mean.to(compute)) * rstd.to(compute)
    grad_input = grad_weight = grad_bias = None
    if output_mask[0]:
        gw = gf * weight.to(compute) if weight is not None else gf
        # both row means keep the reduced dims (keepdim=True): a dropped-dim result could not
        # broadcast back inside the group, and the epilogue needs them per element
        row_gw = aten.mean.dim(gw, inner, True)
        row_gwx = aten.mean.dim(gw * xhat, inner, True)
        grad_input = _contiguous((rstd.to(compute) * (gw - row_gw - xhat * row_gwx)).to(x.dtype))
    if output_mask[1] and weight is not None:
        grad_weight = _sum_leading(gf * xhat, outer).to(weight.dtype)
    if output_mask[2] and bias is not None:
        grad_bias = _sum_leading(gf, outer).to(bias.dtype)
    return grad_input, grad_weight, grad_bias


def _sum_leading(t: torch.Tensor, outer: list[int]) -> torch.Tensor:
    # sum over an empty dim list would reduce every dim: with no leading dims the per-element
    # product is already the gradient (copied, so it never aliases an input as eager's doesn't)
    if not outer:
        return aten.clone.default(t)
    return aten.sum.dim_IntList(t, outer, False)


def _softmax_operands(g: torch.Tensor, y: torch.Tensor, dim: int
                      ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    compute = _compute_dtype(g.dtype, y.dtype)
    # a 0-dim tensor takes dim 0 or -1, and its sum over that dim is itself (eager's result
    # is then g - g: 0, or NaN for a non-finite g, as the formulas give)
    return g.to(compute), y.to(compute), [dim % max(y.dim(), 1)]


def softmax_backward_data(g: torch.Tensor, y: torch.Tensor, dim: int,
                          input_dtype: torch.dtype) -> torch.Tensor:
    """See the module docstring."""
    gf, yf, dims = _softmax_operands(g, y, dim)
    gy = gf * yf
    return _contiguous((gy - yf * aten.sum.dim_IntList(gy, dims, True)).to(input_dtype))


def log_softmax_backward_data(g: torch.Tensor, y: torch.Tensor, dim: int,
                              input_dtype: torch.dtype) -> torch.Tensor:
    """See the module docstring."""
    gf, yf, dims = _softmax_operands(g, y, dim)
    grad = gf - aten.exp.default(yf) * aten.sum.dim_IntList(gf, dims, True)
    return _contiguous(grad.to(input_dtype))


def backward_decompositions() -> dict[Any, Callable[..., Any]]:
    """aten overload -> decomposition."""
    return {
        aten.native_layer_norm_backward.default: native_layer_norm_backward,
        aten._softmax_backward_data.default: softmax_backward_data,
        aten._log_softmax_backward_data.default: log_softmax_backward_data,
    }
