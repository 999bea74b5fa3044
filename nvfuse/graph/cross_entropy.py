"""Cross-entropy without its log-probabilities: graph IR -> graph IR.

Contract: `fuse_cross_entropy(gm) -> gm` (one of `nvfuse.graph.passes.PASSES`) returns a copy in
which every

    nll_loss_forward(_log_softmax(x, 1, False), target, weight, reduction, ignore_index)

over a 2-D floating-point `x` [N, C], whose log-probabilities nothing else reads (inference:
training saves them for the backward and is left alone), reads `x` once instead of writing and
re-reading [N, C] log-probabilities.  `F.cross_entropy` traces to exactly this pair, and
without the rewrite the log_softmax kernel writes them all for an eager nll_loss that reads N
of them ([4096, 50304] bf16: 412 MB written for 8 KB used).  In float32 (float64 for float64):

    m = amax(x, 1), ls = log(sum(exp(x - m), 1))            one row kernel over x
    safe = target * (target != ignore_index)                a valid class for ignored rows
    x_t = gather(x, 1, safe)                                N elements (eager: no fused gather)
    picked = round(x_t - m - ls)                            log_softmax's formula and rounding
    w = weight[safe] (1 without a weight), 0 where ignored
    loss = -(picked * w), 0 where ignored
    none: loss; sum: (sum loss, sum w); mean: (sum loss / sum w, sum w)

which is eager's log_softmax for the picked element (x - max - log(sum exp), rounded to x's
dtype) followed by eager nll_loss's arithmetic (float32 accumulation for half inputs, a mean of
no counted row is 0/0 = nan).  A target outside [0, C) makes the gather raise, as eager's
nll_loss does.  The rewrite is skipped (the ops stay as they are) where a result would not
have eager's dtype, shape and layout, or for reduction 'none' when total_weight is read.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch
import torch.fx

from nvfuse.graph.aliasing import meta_val
from nvfuse.graph.rewrite import FakeMeta, Replacements, emit, rewrite_nodes

aten = torch.ops.aten

_NONE, _MEAN, _SUM = 0, 1, 2  # at::Reduction


def _match(nll: torch.fx.Node) -> tuple[Any, ...] | None:
    """(x, target, weight, reduction, ignore_index) of a rewritable pair, else None."""
    if nll.op != "call_function" or nll.target is not aten.nll_loss_forward.default:
        return None
    logp, target, weight, reduction, ignore = (*nll.args, *[None] * 5)[:5]
    if (not isinstance(logp, torch.fx.Node) or logp.target is not aten._log_softmax.default
            or len(logp.users) != 1 or not isinstance(reduction, int)
            or not isinstance(ignore, int) or not isinstance(target, torch.fx.Node)):
        return None
    x, dim, half_to_float = logp.args
    x_val = meta_val(x)
    if (not isinstance(x_val, torch.Tensor) or x_val.dim() != 2 or dim not in (1, -1)
            or half_to_float or not x_val.is_floating_point()):
        return None
    if weight is not None and not isinstance(weight, torch.fx.Node):
        return None
    used = set()
    for user in nll.users:
        if user.target is not operator.getitem:
            return None
        used.add(user.args[1])
    if reduction == _NONE and 1 in used:
        return None  # eager's total_weight of an unreduced 2-D loss: not worth a rewrite
    if reduction not in (_NONE, _MEAN, _SUM):
        return None
    return x, target, weight, reduction, ignore


def _rewrite(graph: torch.fx.Graph, meta: FakeMeta, nll: torch.fx.Node) -> Replacements | None:
    """nll's getitem users -> their new nodes, or None."""
    parts = _match(nll)
    if parts is None:
        return None
    x, target, weight, reduction, ignore = parts
    dtype = meta_val(x).dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    e = functools.partial(emit, graph, meta, nll)

    def cast(node: torch.fx.Node, to: torch.dtype) -> torch.fx.Node:
        if meta_val(node).dtype == to:
            return node
        return e(aten._to_copy.default, (node,), {"dtype": to})

    xf = cast(x, compute)
    m = e(aten.amax.default, (xf, [1], True))
    ls = e(aten.log.default, (e(aten.sum.dim_IntList, (
        e(aten.exp.default, (e(aten.sub.Tensor, (xf, m)),)), [1], True)),))
    valid = e(aten.ne.Scalar, (target, ignore))
    safe = e(aten.mul.Tensor, (target, valid))
    x_t = e(aten.gather.default, (x, 1, e(aten.unsqueeze.default, (safe, 1))))
    picked = e(aten.sub.Tensor, (e(aten.sub.Tensor, (cast(x_t, compute), m)), ls))
    picked = cast(cast(picked, dtype), compute)  # log_softmax's result is in x's dtype
    picked = e(aten.squeeze.dim, (picked, 1))
    if weight is None:
        w = cast(valid, compute)
    else:
        w_t = cast(e(aten.gather.default, (weight, 0, safe)), compute)
        w = e(aten.where.ScalarOther, (valid, w_t, 0.0))
    loss = e(aten.where.ScalarOther, (valid, e(aten.neg.default, (
        e(aten.mul.Tensor, (picked, w)),)), 0.0))
    if reduction == _NONE:
        outputs = {0: cast(loss, dtype)}
    else:
        total = e(aten.sum.default, (w,))
        output = e(aten.sum.default, (loss,))
        if reduction == _MEAN:
            output = e(aten.div.Tensor, (output, total))
        outputs = {0: cast(output, dtype), 1: cast(total, dtype)}
    return {user: outputs[user.args[1]] for user in nll.users}  # type: ignore[index]


def fuse_cross_entropy(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring.  The input is left unchanged."""
    if not any(n.target is aten.nll_loss_forward.default for n in gm.graph.nodes):
        return gm
    return rewrite_nodes(gm, _rewrite)
