"""Cross-entropy without [N, C] intermediates it does not need: graph IR -> graph IR.

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

Training keeps the forward (the backward reads the saved log-probabilities y), and in the
backward every

    g = nll_loss_backward(grad, y, target, None, mean | sum, ignore_index, total_weight)
    _log_softmax_backward_data(g, y, 1)       (as decomposed: g - exp(y) * sum(g, 1))

over a 2-D y [N, C] (C > 1) no longer writes and re-reads the [N, C] one-hot g.  g is zero but
at (n, target_n), where eager writes c_n = -(grad / total_weight) (mean) or -grad (sum),
rounded to y's dtype, 0 for an ignored row.  So the row sum is c_n (-0 as +0, as a sum of
zeros and c_n gives), and in g's float dtype:

    s = where(c == 0, 0, c)                                 per row
    rest = round(0 - exp(y) * s)                            one pass over y, writes the gradient
    at = round(c - exp(gather(y, 1, safe)) * s)             N elements
    rest.scatter_(1, safe, at)                              the N target elements, in place

the same arithmetic eager does per element (bit for bit what the unrewritten fused path gives).
A class weight, reduction 'none' and other shapes keep the ops as they are.
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


def _cast(emit_node: Any, node: torch.fx.Node, to: torch.dtype) -> torch.fx.Node:
    """`node` converted to `to` by `emit_node` (an `emit` bound to its graph), unless it is."""
    if meta_val(node).dtype == to:
        return node
    return emit_node(aten._to_copy.default, (node,), {"dtype": to})


def _rewrite(graph: torch.fx.Graph, meta: FakeMeta, nll: torch.fx.Node) -> Replacements | None:
    """nll's getitem users -> their new nodes, or None."""
    parts = _match(nll)
    if parts is None:
        return None
    x, target, weight, reduction, ignore = parts
    dtype = meta_val(x).dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    e = functools.partial(emit, graph, meta, nll)
    cast = functools.partial(_cast, e)

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


def _widened(g: torch.fx.Node) -> torch.fx.Node:
    """`g`'s one float widening (a half loss gradient), else `g`."""
    if len(g.users) == 1:
        (user,) = g.users
        if (user.target is aten._to_copy.default and len(user.args) == 1
                and set(user.kwargs) == {"dtype"} and user.kwargs["dtype"] in _WIDE):
            return user
    return g


_WIDE = (torch.float32, torch.float64)
_PASS_THROUGH = (aten.detach.default, aten.alias.default, aten._to_copy.default)


def _reads(node: Any, source: torch.fx.Node) -> bool:
    """Whether `node` is `source` through detaches and conversions only."""
    while isinstance(node, torch.fx.Node) and node is not source \
            and node.target in _PASS_THROUGH and node.args:
        node = node.args[0]
    return node is source


def _match_backward(g: torch.fx.Node) -> tuple[Any, ...] | None:
    """(go, logp, target, reduction, ignore, total, exp node, out node) of a rewritable
    log_softmax backward of an nll_loss backward, else None (module docstring)."""
    if g.op != "call_function" or g.target is not aten.nll_loss_backward.default:
        return None
    go, logp, target, weight, reduction, ignore, total = g.args
    if not isinstance(logp, torch.fx.Node):
        return None
    lp_val = meta_val(logp)
    if (weight is not None or reduction not in (_MEAN, _SUM) or not isinstance(ignore, int)
            or not isinstance(lp_val, torch.Tensor) or lp_val.dim() != 2
            or not lp_val.is_floating_point() or lp_val.shape[1] < 2):
        return None
    wide = _widened(g)
    users = list(wide.users)
    sums = [u for u in users if u.target is aten.sum.dim_IntList]
    subs = [u for u in users if u.target is aten.sub.Tensor]
    if len(users) != 2 or len(sums) != 1 or len(subs) != 1:
        return None
    (total_g,), (diff,) = sums, subs
    dims = total_g.args[1]
    if (total_g.args[0] is not wide or not isinstance(dims, (list, tuple))
            or list(dims) not in ([1], [-1])
            or total_g.args[2:] != (True,) or total_g.kwargs or len(total_g.users) != 1):
        return None
    if diff.args[0] is not wide or diff.kwargs:
        return None
    prod = diff.args[1]
    if (not isinstance(prod, torch.fx.Node) or prod.target is not aten.mul.Tensor
            or total_g not in prod.args or len(prod.users) != 1):
        return None
    expo = prod.args[1] if prod.args[0] is total_g else prod.args[0]
    if (not isinstance(expo, torch.fx.Node) or expo.target is not aten.exp.default
            or not _reads(expo.args[0], logp)):
        return None
    out = diff
    if wide is not g:  # the half gradient: back to the log-probabilities' dtype
        if len(diff.users) != 1:
            return None
        (out,) = diff.users
        if (out.target is not aten._to_copy.default or len(out.args) != 1
                or out.kwargs != {"dtype": lp_val.dtype}):
            return None
    return go, logp, target, reduction, ignore, total, expo, out


def _rewrite_backward(graph: torch.fx.Graph, meta: FakeMeta,
                      g: torch.fx.Node) -> Replacements | None:
    """The log_softmax backward's output -> its rewrite (module docstring), or None."""
    parts = _match_backward(g)
    if parts is None:
        return None
    go, logp, target, reduction, ignore, total, expo, out = parts
    dtype = meta_val(logp).dtype
    compute = meta_val(expo).dtype
    e = functools.partial(emit, graph, meta, out)
    cast = functools.partial(_cast, e)

    valid = e(aten.ne.Scalar, (target, ignore))
    index = e(aten.unsqueeze.default, (e(aten.mul.Tensor, (target, valid)), 1))
    share = e(aten.div.Tensor, (go, total)) if reduction == _MEAN else go
    picked = cast(e(aten.where.ScalarOther, (valid, e(aten.neg.default, (share,)), 0.0)),
                  compute)  # the gradient at the target, eager's rounding
    # the row sum of a row that is zero but at the target: that value, -0 as +0
    row_sum = e(aten.unsqueeze.default, (e(aten.where.ScalarSelf, (
        e(aten.eq.Scalar, (picked, 0)), 0.0, picked)), 1))
    rest = cast(e(aten.rsub.Scalar, (e(aten.mul.Tensor, (expo, row_sum)), 0.0)), dtype)
    at_target = e(aten.exp.default, (cast(e(aten.gather.default, (logp, 1, index)), compute),))
    fixed = cast(e(aten.sub.Tensor, (e(aten.unsqueeze.default, (picked, 1)),
                                     e(aten.mul.Tensor, (at_target, row_sum)))), dtype)
    return {out: e(aten.scatter_.src, (rest, 1, index, fixed))}


def fuse_cross_entropy(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring.  The input is left unchanged."""
    targets = {n.target for n in gm.graph.nodes}
    if aten.nll_loss_forward.default in targets:
        gm = rewrite_nodes(gm, _rewrite)
    if aten.nll_loss_backward.default in targets:
        gm = rewrite_nodes(gm, _rewrite_backward)
    return gm
