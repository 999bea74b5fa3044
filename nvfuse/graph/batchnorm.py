"""Eval-mode batch norm as elementwise ops: graph IR -> graph IR.

Contract: `decompose_batch_norm(gm) -> gm` (one of `nvfuse.graph.passes.PASSES`, so both the
FX and the TorchScript frontends get it) returns a copy in which every batch norm with a
literal `training=False` -- `aten::batch_norm` (TorchScript's form), `native_batch_norm` and
`_native_batch_norm_legit_no_training` (make_fx's forms; only when nothing but item 0 of their
tuple is used) -- is

    y = (x - mean.view(C, 1, ...)) * rsqrt(var.view(C, 1, ...) + eps) [* w.view(C, 1, ...)]
        [+ b.view(C, 1, ...)]

computed in float32 for float16/bfloat16 inputs (float64 stays float64) and rounded once to
x's dtype, as eager's kernels do.  Every op is elementwise with the channel statistics
broadcast along dim 1, so the normalization fuses with what surrounds it (ReLU, a residual
add).  A rewrite whose result would not have eager's dtype, shape and layout is skipped.
Training-mode batch norm (which computes and updates statistics) is left alone.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx

from nvfuse.graph.aliasing import is_mutated, meta_val
from nvfuse.graph.rewrite import FakeMeta, Replacements, emit, rewrite_nodes

aten = torch.ops.aten

# op -> (index of `training` or None when the op is eval-only, index of eps)
_BATCH_NORMS: dict[Any, tuple[int | None, int]] = {
    aten.batch_norm.default: (5, 7),
    aten.native_batch_norm.default: (5, 7),
    aten._native_batch_norm_legit_no_training.default: (None, 6),
}


def _eval_args(node: torch.fx.Node) -> tuple[Any, ...] | None:
    """(x, weight, bias, mean, var, eps) of an eval-mode batch norm we can rewrite, else None."""
    spec = _BATCH_NORMS.get(node.target) if node.op == "call_function" else None
    if spec is None:
        return None
    training, eps_at = spec
    args = node.args
    if len(args) <= eps_at or (training is not None and args[training] is not False):
        return None
    x, weight, bias, mean, var = args[:5]
    eps = args[eps_at]
    x_val = meta_val(x)
    if (not isinstance(x_val, torch.Tensor) or x_val.dim() < 2 or not x_val.is_floating_point()
            or not isinstance(mean, torch.fx.Node) or not isinstance(var, torch.fx.Node)
            or not isinstance(eps, (int, float)) or is_mutated(node)):
        return None
    if node.target is not aten.batch_norm.default and any(
            u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
        return None  # the saved statistics are used: keep the op
    return x, weight, bias, mean, var, float(eps)


def _rewrite(graph: torch.fx.Graph, meta: FakeMeta, node: torch.fx.Node) -> Replacements | None:
    parts = _eval_args(node)
    if parts is None:
        return None
    x, weight, bias, mean, var, eps = parts
    x_val = meta_val(x)
    compute = torch.float64 if x_val.dtype == torch.float64 else torch.float32
    shape = [x_val.shape[1]] + [1] * (x_val.dim() - 2)  # channels along dim 1

    def channel(t: torch.fx.Node) -> torch.fx.Node:
        if meta_val(t).dtype != compute:
            t = emit(graph, meta, node, aten._to_copy.default, (t,), {"dtype": compute})
        return emit(graph, meta, node, aten.view.default, (t, shape))

    xf = x if x_val.dtype == compute else emit(graph, meta, node, aten._to_copy.default, (x,),
                                               {"dtype": compute})
    inv = emit(graph, meta, node, aten.rsqrt.default,
               (emit(graph, meta, node, aten.add.Tensor, (channel(var), eps)),))
    y = emit(graph, meta, node, aten.mul.Tensor,
             (emit(graph, meta, node, aten.sub.Tensor, (xf, channel(mean))), inv))
    if isinstance(weight, torch.fx.Node):
        y = emit(graph, meta, node, aten.mul.Tensor, (y, channel(weight)))
    if isinstance(bias, torch.fx.Node):
        y = emit(graph, meta, node, aten.add.Tensor, (y, channel(bias)))
    if compute != x_val.dtype:
        y = emit(graph, meta, node, aten._to_copy.default, (y,), {"dtype": x_val.dtype})
    if node.target is aten.batch_norm.default:
        return {node: y}
    return {user: y for user in node.users}  # getitem(node, 0)


def decompose_batch_norm(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring.  The input is left unchanged."""
    if not any(n.target in _BATCH_NORMS for n in gm.graph.nodes):
        return gm
    return rewrite_nodes(gm, _rewrite)
