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

In training, torch.compile's graphs call nvfuse's own ops instead of the pair where the
logits are large (nvfuse/frontend/cross_entropy.py, nvfuse/graph/cross_entropy_ops.py), and
this pass rewrites them:

    nvfuse::cross_entropy(x, target, ignore_index, reduction) -> (loss, total, m, ls)
        m and ls as above (saved for the backward), the loss and total weight from them
    nvfuse::cross_entropy_backward(grad, x, target, total, m, ls, ignore_index, reduction)
        the backward below, with y = round((x - m) - ls) recomputed from x, and its N target
        elements gathered from x

so the forward reads x once and writes 2N statistics, and the backward reads x once and writes
the gradient: bit for bit the gradient of the path that saves y.  Where training keeps the
pair (small logits, other front ends), the forward stays (the backward reads the saved
log-probabilities y), and in the backward every

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
from typing import Any, TypeGuard

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


class Ops:
    """A formula builder: `e(target, args, kwargs)` applies an aten op, `e.dtype(v)` is a
    value's dtype.  The formulas below are written once over it, for the graph passes
    (`GraphOps`) and for the ops' eager implementation (`EagerOps`)."""

    def __call__(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
                 ) -> Any:
        raise NotImplementedError

    def dtype(self, value: Any) -> torch.dtype:
        raise NotImplementedError

    def cast(self, value: Any, to: torch.dtype) -> Any:
        """`value` converted to `to`, unless it is."""
        if self.dtype(value) == to:
            return value
        return self(aten._to_copy.default, (value,), {"dtype": to})


class GraphOps(Ops):
    """Adds annotated nodes to a graph, before `before`."""

    def __init__(self, graph: torch.fx.Graph, meta: FakeMeta, before: torch.fx.Node) -> None:
        self.emit = functools.partial(emit, graph, meta, before)

    def __call__(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
                 ) -> Any:
        return self.emit(target, args, kwargs)

    def dtype(self, value: Any) -> torch.dtype:
        return meta_val(value).dtype  # type: ignore[no-any-return]


class EagerOps(Ops):
    """Calls the ops on tensors."""

    def __call__(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
                 ) -> Any:
        return target(*args, **(kwargs or {}))

    def dtype(self, value: Any) -> torch.dtype:
        return value.dtype  # type: ignore[no-any-return]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where log_softmax and nll_loss compute for logits of `dtype`."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def row_statistics(e: Ops, x: Any) -> tuple[Any, Any]:
    """(m, ls) of 2-D logits x: m = amax(x, 1), ls = log(sum(exp(x - m), 1)), both [N, 1] in
    the compute dtype; log_softmax(x) = round((x - m) - ls)."""
    xf = e.cast(x, compute_dtype(e.dtype(x)))
    m = e(aten.amax.default, (xf, [1], True))
    ls = e(aten.log.default, (e(aten.sum.dim_IntList, (
        e(aten.exp.default, (e(aten.sub.Tensor, (xf, m)),)), [1], True)),))
    return m, ls


def log_probs(e: Ops, x: Any, m: Any, ls: Any) -> Any:
    """log_softmax(x) from the row statistics: eager's formula round((x - m) - ls), in x's
    dtype."""
    xf = e.cast(x, compute_dtype(e.dtype(x)))
    return e.cast(e(aten.sub.Tensor, (e(aten.sub.Tensor, (xf, m)), ls)), e.dtype(x))


def log_probs_at(e: Ops, x: Any, m: Any, ls: Any, index: Any) -> Any:
    """log_softmax(x) at column `index` [N, 1] of each row, in the compute dtype, from the
    row statistics."""
    at = log_probs(e, e(aten.gather.default, (x, 1, index)), m, ls)
    return e.cast(at, compute_dtype(e.dtype(x)))


def nll_loss(e: Ops, x: Any, target: Any, weight: Any, reduction: int, ignore: int,
             m: Any, ls: Any) -> dict[int, Any]:
    """nll_loss_forward(log_softmax(x, 1), ...)'s results by output index (0: the loss, 1:
    total_weight, not for reduction none), from the row statistics (module docstring)."""
    dtype = e.dtype(x)
    compute = compute_dtype(dtype)
    valid = e(aten.ne.Scalar, (target, ignore))
    safe = e(aten.mul.Tensor, (target, valid))
    picked = e(aten.squeeze.dim, (
        log_probs_at(e, x, m, ls, e(aten.unsqueeze.default, (safe, 1))), 1))
    if weight is None:
        w = e.cast(valid, compute)
    else:
        w_t = e.cast(e(aten.gather.default, (weight, 0, safe)), compute)
        w = e(aten.where.ScalarOther, (valid, w_t, 0.0))
    loss = e(aten.where.ScalarOther, (valid, e(aten.neg.default, (
        e(aten.mul.Tensor, (picked, w)),)), 0.0))
    if reduction == _NONE:
        return {0: e.cast(loss, dtype)}
    total = e(aten.sum.default, (w,))
    output = e(aten.sum.default, (loss,))
    if reduction == _MEAN:
        output = e(aten.div.Tensor, (output, total))
    return {0: e.cast(output, dtype), 1: e.cast(total, dtype)}


def _rewrite(graph: torch.fx.Graph, meta: FakeMeta, nll: torch.fx.Node) -> Replacements | None:
    """nll's getitem users -> their new nodes, or None."""
    parts = _match(nll)
    if parts is None:
        return None
    x, target, weight, reduction, ignore = parts
    e = GraphOps(graph, meta, nll)
    m, ls = row_statistics(e, x)
    outputs = nll_loss(e, x, target, weight, reduction, ignore, m, ls)
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
    e = GraphOps(graph, meta, out)
    at_target = functools.partial(_gathered, e, logp)
    return {out: log_softmax_nll_grad(e, go, target, reduction, ignore, total, expo, at_target,
                                      meta_val(logp).dtype)}


def _gathered(e: Ops, logp: Any, index: Any) -> Any:
    return e.cast(e(aten.gather.default, (logp, 1, index)), compute_dtype(e.dtype(logp)))


def log_softmax_nll_grad(e: Ops, go: Any, target: Any, reduction: int, ignore: int,
                         total: Any, expo: Any, at_target: Any, dtype: torch.dtype) -> Any:
    """The logits' gradient of nll_loss(log_softmax(x)) (module docstring): `expo` is
    exp(log-probabilities) [N, C] in the compute dtype, `at_target(index)` the log-probabilities
    at the [N, 1] columns `index` in the compute dtype, `dtype` the logits' dtype."""
    compute = e.dtype(expo)
    valid = e(aten.ne.Scalar, (target, ignore))
    index = e(aten.unsqueeze.default, (e(aten.mul.Tensor, (target, valid)), 1))
    share = e(aten.div.Tensor, (go, total)) if reduction == _MEAN else go
    picked = e.cast(e(aten.where.ScalarOther, (valid, e(aten.neg.default, (share,)), 0.0)),
                    compute)  # the gradient at the target, eager's rounding
    # the row sum of a row that is zero but at the target: that value, -0 as +0
    row_sum = e(aten.unsqueeze.default, (e(aten.where.ScalarSelf, (
        e(aten.eq.Scalar, (picked, 0)), 0.0, picked)), 1))
    rest = e.cast(e(aten.rsub.Scalar, (e(aten.mul.Tensor, (expo, row_sum)), 0.0)), dtype)
    exp_at = e(aten.exp.default, (at_target(index),))
    fixed = e.cast(e(aten.sub.Tensor, (e(aten.unsqueeze.default, (picked, 1)),
                                       e(aten.mul.Tensor, (exp_at, row_sum)))), dtype)
    return e(aten.scatter_.src, (rest, 1, index, fixed))


def _op_name(node: torch.fx.Node) -> str | None:
    return getattr(node.target, "_name", None) if node.op == "call_function" else None


def _training_logits(x: Any) -> bool:
    value = meta_val(x)
    return isinstance(value, torch.Tensor) and value.dim() == 2 and value.is_floating_point()


def _reduced(reduction: Any) -> TypeGuard[int]:
    return reduction in (_MEAN, _SUM)


def _rewrite_op(graph: torch.fx.Graph, meta: FakeMeta, op: torch.fx.Node) -> Replacements | None:
    """nvfuse::cross_entropy's getitem users -> their new nodes: the row statistics and the
    loss from them (nvfuse/graph/cross_entropy_ops.py)."""
    if _op_name(op) != FORWARD_OP or any(u.target is not operator.getitem for u in op.users):
        return None
    x, target, ignore, reduction = op.args
    if not _training_logits(x) or not _reduced(reduction) or not isinstance(ignore, int):
        return None
    e = GraphOps(graph, meta, op)
    m, ls = row_statistics(e, x)
    outputs = {**nll_loss(e, x, target, None, reduction, ignore, m, ls), 2: m, 3: ls}
    return {user: outputs[user.args[1]] for user in op.users}  # type: ignore[index]


def _rewrite_op_backward(graph: torch.fx.Graph, meta: FakeMeta,
                         op: torch.fx.Node) -> Replacements | None:
    """nvfuse::cross_entropy_backward -> one pass over x writing the gradient, log_softmax(x)
    recomputed from the row statistics, and the N target elements scattered."""
    if _op_name(op) != BACKWARD_OP:
        return None
    go, x, target, total, m, ls, ignore, reduction = op.args
    if not _training_logits(x) or not _reduced(reduction) or not isinstance(ignore, int):
        return None
    e = GraphOps(graph, meta, op)
    dtype = e.dtype(x)
    expo = e(aten.exp.default, (e.cast(log_probs(e, x, m, ls), compute_dtype(dtype)),))
    at_target = functools.partial(log_probs_at, e, x, m, ls)
    return {op: log_softmax_nll_grad(e, go, target, reduction, ignore, total, expo, at_target,
                                     dtype)}


FORWARD_OP, BACKWARD_OP = "nvfuse::cross_entropy", "nvfuse::cross_entropy_backward"


def fuse_cross_entropy(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring.  The input is left unchanged."""
    targets = {n.target for n in gm.graph.nodes}
    names = {_op_name(n) for n in gm.graph.nodes}
    if aten.nll_loss_forward.default in targets:
        gm = rewrite_nodes(gm, _rewrite)
    if aten.nll_loss_backward.default in targets:
        gm = rewrite_nodes(gm, _rewrite_backward)
    if FORWARD_OP in names:
        gm = rewrite_nodes(gm, _rewrite_op)
    if BACKWARD_OP in names:
        gm = rewrite_nodes(gm, _rewrite_op_backward)
    return gm
