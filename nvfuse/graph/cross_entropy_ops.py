"""Training cross-entropy as two custom ops, so that autograd saves per-row statistics of the
logits instead of their [N, C] log-probabilities.

`F.cross_entropy(x, target)` traces to log_softmax + nll_loss, and autograd saves the
log-probabilities y for the backward: the forward writes all of y ([4096, 50304] bf16: 412 MB)
and the backward reads it again.  A training graph (nvfuse/frontend/cross_entropy.py) calls
these ops instead, before AOTAutograd sees it:

- `nvfuse::cross_entropy(x, target, ignore_index, reduction) -> (loss, total_weight, m, ls)`:
  nll_loss_forward(log_softmax(x, 1), target, None, reduction, ignore_index) and the row
  statistics of x, m = amax(x, 1) and ls = log(sum(exp(x - m), 1)), both [N, 1] in the compute
  dtype (float32, float64 for float64), so that log_softmax(x) = round((x - m) - ls).
- `nvfuse::cross_entropy_backward(grad, x, target, total_weight, m, ls, ignore_index,
  reduction) -> grad_x`: the logits' gradient, from x and the statistics.

x is [N, C] floating point, target [N] int64, reduction 1 (mean) or 2 (sum) (at::Reduction), no
class weight, no label smoothing.  Autograd saves x (an input, kept anyway), target, the total
weight and the 2N statistics.  Run eagerly, each op computes exactly what the eager pair
does, with log_softmax(x) recomputed from the statistics in the backward.  In a fused graph,
`fuse_cross_entropy` (nvfuse/graph/cross_entropy.py) rewrites them into a row kernel over x
that writes N losses and the statistics, and one pass over x that writes the gradient.
"""

from __future__ import annotations

from typing import Any

import torch

from nvfuse.graph.cross_entropy import (BACKWARD_OP, FORWARD_OP, EagerOps, compute_dtype,
                                        log_probs, row_statistics)

aten = torch.ops.aten
Tensor = torch.Tensor


# Explicit schemas: no inference from annotations, whatever the torch version.
@torch.library.custom_op(FORWARD_OP, mutates_args=(), schema=(
    "(Tensor x, Tensor target, int ignore_index, int reduction) -> (Tensor, Tensor, Tensor, "
    "Tensor)"))
def cross_entropy(x: Tensor, target: Tensor, ignore_index: int, reduction: int
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    loss, total = aten.nll_loss_forward(aten._log_softmax(x, 1, False), target, None,
                                        reduction, ignore_index)
    m, ls = row_statistics(EagerOps(), x)
    return loss, total, m, ls


@cross_entropy.register_fake
def _(x: Tensor, target: Tensor, ignore_index: int, reduction: int
      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    stat = x.new_empty((x.shape[0], 1), dtype=compute_dtype(x.dtype))
    return x.new_empty(()), x.new_empty(()), stat, torch.empty_like(stat)


@torch.library.custom_op(BACKWARD_OP, mutates_args=(), schema=(
    "(Tensor grad, Tensor x, Tensor target, Tensor total, Tensor m, Tensor ls, "
    "int ignore_index, int reduction) -> Tensor"))
def cross_entropy_backward(grad: Tensor, x: Tensor, target: Tensor, total: Tensor, m: Tensor,
                           ls: Tensor, ignore_index: int, reduction: int) -> Tensor:
    y = log_probs(EagerOps(), x, m, ls)
    g = aten.nll_loss_backward(grad, y, target, None, reduction, ignore_index, total)
    return aten._log_softmax_backward_data(g, y, 1, x.dtype)


@cross_entropy_backward.register_fake
def _(grad: Tensor, x: Tensor, target: Tensor, total: Tensor, m: Tensor, ls: Tensor,
      ignore_index: int, reduction: int) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, target, ignore_index, reduction = inputs
    _, total, m, ls = output
    ctx.save_for_backward(x, target, total, m, ls)
    ctx.ignore_index, ctx.reduction = ignore_index, reduction


def _backward(ctx: Any, grad: Tensor, *unused: Tensor) -> tuple[Tensor | None, ...]:
    x, target, total, m, ls = ctx.saved_tensors
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = cross_entropy_backward(grad, x, target, total, m, ls, ctx.ignore_index,
                                        ctx.reduction)
    return grad_x, None, None, None


cross_entropy.register_autograd(_backward, setup_context=_setup)
