"""Scatters into a filled tensor as pads: `torch.fx.GraphModule` -> new GraphModule.

`slice_scatter(full(shape, v), src, dim, start, end, 1)` -- how decomposed slice backwards
look -- is `constant_pad_nd(src, pad, v)` with `pad` putting src at [start, end) of `dim`.  The
pad fuses with src's producers as a concatenation (nvfuse.fusion.concat) and the `full` tensor
is never written; the eager form costs a memset kernel and a scatter kernel.  Exact: same
values, dtype, shape and (contiguous) layout.  Only rewritten when `full` makes a plain strided
tensor of the result's dtype, shape and device and `src` already has that dtype (slice_scatter
would convert it, a pad would not).  The input module is not changed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from nvfuse.graph.aliasing import copy_graph, finish_graph, meta_val

aten = torch.ops.aten


def _pad_for(node: torch.fx.Node) -> tuple[torch.fx.Node, list[int], object] | None:
    """(src, pad, fill value) when `node` is a slice_scatter into a full() tensor."""
    if node.op != "call_function" or node.target is not aten.slice_scatter.default:
        return None
    names = ("self", "src", "dim", "start", "end", "step")
    args: dict[str, Any] = dict(zip(names, node.args)) | dict(node.kwargs)
    base, src, out = args["self"], args["src"], meta_val(node)
    if not isinstance(base, torch.fx.Node) or base.target is not aten.full.default:
        return None
    fill: dict[str, Any] = dict(zip(("size", "fill_value"), base.args)) | dict(base.kwargs)
    src_val = meta_val(src)
    if not (isinstance(out, torch.Tensor) and isinstance(src_val, torch.Tensor)
            and isinstance(meta_val(base), torch.Tensor)):
        return None
    if (src_val.dtype != out.dtype or meta_val(base).shape != out.shape
            or meta_val(base).dtype != out.dtype or src_val.device != out.device
            or fill.get("layout") not in (None, torch.strided)
            or not isinstance(fill.get("fill_value"), (bool, int, float))):
        return None
    dim, start, end = args.get("dim", 0), args.get("start"), args.get("end")
    if args.get("step", 1) != 1 or not isinstance(dim, int) or any(
            v is not None and type(v) is not int for v in (start, end)):
        return None
    rank = out.dim()
    dim %= rank
    n = out.shape[dim]
    lo = _clamp(start, 0, n)
    hi = max(lo, _clamp(end, n, n))
    if src_val.shape[dim] != hi - lo:
        return None
    pad = [0] * (2 * (rank - dim))
    pad[-2:] = [lo, n - hi]
    return src, pad, fill["fill_value"]


def _clamp(index: int | None, default: int, n: int) -> int:
    if index is None:
        return default
    return min(max(index + n if index < 0 else index, 0), n)


def pad_filled_scatters(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite every slice_scatter into a full() tensor as a constant pad (module docstring);
    the full() nodes left without users are dropped."""
    work = copy_graph(gm)
    changed = False
    for node in list(work.graph.nodes):
        found = _pad_for(node)
        if found is None:
            continue
        src, pad, value = found
        with work.graph.inserting_before(node):
            padded = work.graph.call_function(aten.constant_pad_nd.default,
                                              (src, pad, value))  # type: ignore[arg-type]
        padded.meta = dict(node.meta)
        base = node.args[0]
        node.replace_all_uses_with(padded)
        work.graph.erase_node(node)
        if isinstance(base, torch.fx.Node) and not base.users:
            work.graph.erase_node(base)
        changed = True
    return finish_graph(work) if changed else gm
