"""Training cross-entropy in a dynamo graph -> nvfuse's cross-entropy ops, before AOTAutograd.

Contract: `training_cross_entropy(gm) -> gm` rewrites, in place, every

    F.cross_entropy(x, target, ignore_index=i, reduction=r)
    F.nll_loss(F.log_softmax(x, 1), target, ignore_index=i, reduction=r)   (log_softmax read
                                                                          nowhere else)

whose logits x need a gradient into `nvfuse::cross_entropy(x, target, i, r)[0]`
(nvfuse/graph/cross_entropy_ops.py), so that autograd saves 2N row statistics instead of the
[N, C] log-probabilities.  Only where the ops compute exactly what the call does: x a
contiguous 2-D floating-point tensor [N, C] with C > 1, target a 1-D int64 tensor, reduction
'mean' or 'sum', no class weight, no label smoothing, no legacy size_average / reduce
arguments, the softmax over dim 1 with no dtype, and logits of at least MIN_LOGITS_BYTES:
below that, the [N, C] traffic saved costs less than the two small kernels the forward gains
(the loss from the statistics).  Everything else is left as it is (and a graph whose logits
need no gradient is left to the inference rewrite, which writes no statistics at all).
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F

from nvfuse.graph import cross_entropy_ops  # noqa: F401  (defines torch.ops.nvfuse.*)

_REDUCTIONS = {"mean": 1, "sum": 2}  # at::Reduction
_LOG_SOFTMAX = (F.log_softmax, torch.log_softmax)
# Saving 2 x 4 MiB of traffic is worth about 3 us at an H100's 3 TB/s: two launches.
MIN_LOGITS_BYTES = 4 << 20


def _bound(fn: Any, node: torch.fx.Node) -> dict[str, Any] | None:
    """`node`'s arguments by parameter name of `fn`, defaults filled in; None if they do not
    bind."""
    try:
        bound = inspect.signature(fn).bind(*node.args, **node.kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def _log_softmax_input(node: Any) -> torch.fx.Node | None:
    """x of `node` = log_softmax(x, 1) read by one node, else None."""
    if not isinstance(node, torch.fx.Node) or len(node.users) != 1:
        return None
    if node.op == "call_function" and node.target in _LOG_SOFTMAX:
        args = _bound(F.log_softmax, node)
    elif node.op == "call_method" and node.target == "log_softmax":  # x.log_softmax(dim, dtype)
        names = ("input", "dim", "dtype")
        args = {**dict(zip(names, node.args)), **node.kwargs}
        if len(node.args) > len(names) or not set(args) <= set(names):
            return None
    else:
        return None
    if args is None or args.get("dtype") is not None or args.get("dim") not in (1, -1):
        return None
    x = args["input"]
    return x if isinstance(x, torch.fx.Node) else None


def _match(node: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node, int, int] | None:
    """(x, target, ignore_index, reduction) of a call to rewrite, else None."""
    if node.op != "call_function":
        return None
    if node.target is F.cross_entropy:
        args = _bound(F.cross_entropy, node)
        if args is None or args["label_smoothing"] != 0.0:
            return None
        x = args["input"]
    elif node.target is F.nll_loss:
        args = _bound(F.nll_loss, node)
        if args is None:
            return None
        x = _log_softmax_input(args["input"])
    else:
        return None
    target, ignore, reduction = args["target"], args["ignore_index"], args["reduction"]
    if (args["weight"] is not None or args["size_average"] is not None
            or args["reduce"] is not None or not isinstance(ignore, int)
            or isinstance(ignore, bool) or reduction not in _REDUCTIONS
            or not isinstance(x, torch.fx.Node) or not isinstance(target, torch.fx.Node)):
        return None
    xv, tv = x.meta.get("example_value"), target.meta.get("example_value")
    if (not isinstance(xv, torch.Tensor) or not isinstance(tv, torch.Tensor)
            or xv.dim() != 2 or not xv.is_floating_point() or not xv.requires_grad
            or not xv.is_contiguous() or _one_class(xv)
            or tv.dim() != 1 or tv.dtype != torch.int64 or _small(xv)):
        return None
    return x, target, ignore, _REDUCTIONS[reduction]


def _one_class(x: torch.Tensor) -> bool:
    """Whether x has one class (a symbolic class count counts as more, unguarded)."""
    classes = x.shape[1]
    return isinstance(classes, int) and classes < 2


def _small(x: torch.Tensor) -> bool:
    """Whether x has fewer than MIN_LOGITS_BYTES (a symbolic size counts as large)."""
    size = x.numel() * x.element_size()
    return isinstance(size, int) and size < MIN_LOGITS_BYTES


def training_cross_entropy(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring."""
    graph = gm.graph
    changed = False
    for node in list(graph.nodes):
        parts = _match(node)
        if parts is None:
            continue
        inner = node.args[0] if node.target is F.nll_loss else None
        with graph.inserting_before(node):
            op = graph.call_function(torch.ops.nvfuse.cross_entropy.default, parts)
            loss = graph.call_function(operator.getitem, (op, 0))
        loss.meta = dict(node.meta)
        node.replace_all_uses_with(loss)
        graph.erase_node(node)
        if isinstance(inner, torch.fx.Node) and not inner.users:
            graph.erase_node(inner)
        changed = True
    if changed:
        graph.lint()
        gm.recompile()
    return gm
