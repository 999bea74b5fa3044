"""Views inside fusion groups: graph IR -> graph IR in which layout ops no longer cut groups.

Contract: `sink_views(gm) -> gm` (one of `nvfuse.graph.passes.PASSES`) takes an annotated aten
graph and returns a copy computing the same values, where a view op (view, reshape, permute,
transpose, t, unsqueeze, squeeze, expand, slice, select, split/chunk/unbind items, flatten)
between two fusible ops has moved toward the leaves.  Kernels read every input through
arbitrary strides, so a view of a graph input, weight or unfusible result (a matmul's output)
costs nothing: the group simply receives the strided view, run eagerly as metadata only.  Only
views of values a group computes cut groups; this pass removes them where it can:

1. split / split_with_sizes / unbind whose every user takes one item -> one slice / select per
   item (the same views of the same storage, so they sink like any other view).
2. A keepdim=False reduction r over dims D -> squeeze(r_k, D), r_k its keepdim=True form (for
   `x.sum()` / `x.mean()`, which take no keepdim, their dim overload over every dim; not when
   D are some leading dims: those broadcast alike either way, and the partitioner takes such a
   result as it is).  An order-preserving view of that squeeze back to r_k's shape
   (`x.mean(-1).unsqueeze(-1)`) becomes r_k itself, and an elementwise op on such squeezes
   whose result has the squeezed shape (`x.sum(-1) * 2`) runs on the keepdim shapes and is
   squeezed after: the epilogue then joins the reduction's group instead of needing the
   dropped dims back.
3. view(p(a1..an)) with p elementwise (torch's pointwise meaning: output = broadcast of the
   operands) -> p(view(expand(a1, S)), ..., view(expand(an, S))), S = p's shape; no-op
   expands are dropped and 0-dim operands stay as they are.  Only where every new view is a
   legal strided view (checked on the FakeTensors: `view` refuses what would need a copy).
   p stays for its other users (recomputing elementwise work is cheap).

Never through reductions, random ops (a mask must not be drawn twice), in-place or mutated
values, or multi-output ops.  Graph outputs keep eager's dtype, shape, strides and aliasing:
after rewriting, the metadata of everything downstream is recomputed and every output compared
with the original; on a mismatch the pass retries without moving views whose layout anything
but elementwise work sees, and gives up (returns the input) if that fails too.  Decisions use
the example's sizes: a changed graph is marked `meta["nvfuse_sized"]`, and the TorchScript
frontend (whose plans are otherwise size-generic) then keys its plans on sizes.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_arg

from nvfuse.fusion import optable
from nvfuse.graph.rewrite import (
    FakeMeta, emit, output_vals, repropagate, same_layout, same_outputs,
)
from nvfuse.graph.aliasing import (
    alias_source, copy_graph, finish_graph, has_side_effects, is_mutated, is_pure, meta_val,
)

aten = torch.ops.aten
SIZED = "nvfuse_sized"      # gm.meta key: the graph's rewrites assumed the example's sizes
# Reductions over every dim without a keepdim argument -> the overload that takes dims and one
_OVER_ALL_DIMS = {aten.sum.default: aten.sum.dim_IntList, aten.mean.default: aten.mean.dim}
_DROPPED = "nvfuse_dropped"  # node.meta key on squeeze(r_k, D): (r_k, D, rank of r_k)
_MAX_ROUNDS = 64

# View ops that pick elements by logical index (never by storage offset, as as_strided does).
_RESHAPES = frozenset({aten.view.default, aten._unsafe_view.default, aten.reshape.default,
                       aten.flatten.using_ints, aten.unflatten.int})
_SQUEEZES = frozenset({aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim,
                       aten.squeeze.dims})
_VIEWS = _RESHAPES | _SQUEEZES | {
    aten.expand.default, aten.permute.default, aten.transpose.int, aten.t.default,
    aten.slice.Tensor, aten.select.int, aten.narrow.default, aten.diagonal.default}
_ORDER_PRESERVING = _RESHAPES | _SQUEEZES  # row-major element order unchanged


def _schema_arg(node: torch.fx.Node, name: str) -> tuple[int, Any]:
    """(position, value) of a schema argument (defaults filled in); (-1, None) if absent."""
    for i, arg in enumerate(node.target._schema.arguments):  # type: ignore[union-attr]
        if arg.name == name:
            if i < len(node.args) and not arg.kwarg_only:
                return i, node.args[i]
            return i, node.kwargs.get(name, arg.default_value if arg.has_default_value() else None)
    return -1, None


def _trailing_reduction(node: torch.fx.Node) -> bool:
    """A reduction (or softmax) the op table lowers over its operand's trailing dims: the
    only reductions that join fusion groups."""
    if not optable.has_lowering(node.target) or not node.args:
        return False
    x = meta_val(node.args[0])
    dims = _schema_arg(node, "dim")[1]
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return False
    dims = [dims] if isinstance(dims, int) else list(dims or range(x.dim()))
    return sorted(d % x.dim() for d in dims) == list(range(x.dim() - len(dims), x.dim()))


class _Rewriter:
    """Applies the rules of the module docstring to a working copy, node by node."""

    def __init__(self, work: torch.fx.GraphModule, mode: FakeMeta, cautious: bool) -> None:
        self.work = work
        self.graph = work.graph
        self.mode = mode
        self.cautious = cautious  # every moved view must keep its exact layout
        self.changed = False

    # -- helpers -------------------------------------------------------------------------------
    def emit(self, before: torch.fx.Node, target: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any] | None = None) -> torch.fx.Node:
        """A new node before `before`, annotated; raises (creating nothing) if torch refuses."""
        return emit(self.graph, self.mode, before, target, args, kwargs)

    @staticmethod
    def elementwise(node: torch.fx.Node) -> bool:
        """A pure op the op table fuses whose result has the broadcast shape of its operands
        and that takes no dim (reductions, softmax) -- elementwise in torch's sense."""
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            return False
        if not optable.has_lowering(target) or not is_pure(node) or is_mutated(node):
            return False
        if any(a.name in ("dim", "normalized_shape") for a in target._schema.arguments):
            return False
        out = meta_val(node)
        tensors = [meta_val(a) for a in node.all_input_nodes]
        if not isinstance(out, torch.Tensor) or not tensors \
                or not all(isinstance(t, torch.Tensor) for t in tensors):
            return False
        try:
            return tuple(torch.broadcast_shapes(*(t.shape for t in tensors))) == tuple(out.shape)
        except RuntimeError:
            return False

    def feeds_fusible_work(self, node: torch.fx.Node) -> bool:
        """Whether an elementwise op or a trailing-dims reduction reads node, directly or
        through further views; otherwise node ends a group anyway (a matmul operand, a bias
        gradient's leading-dims sum) and moving it would only split its producer's group."""
        return any(u.op == "call_function" and (
            self.feeds_fusible_work(u) if u.target in _VIEWS
            else self.elementwise(u) or _trailing_reduction(u)) for u in node.users)

    def stuck(self, node: torch.fx.Node) -> bool:
        """Whether a view of node would stay a group boundary: node is (a view of) a value a
        group computes but views cannot move through (a reduction, a random draw)."""
        while node.target in _VIEWS and node.args and isinstance(node.args[0], torch.fx.Node):
            node = node.args[0]
        return (node.op == "call_function" and optable.has_lowering(node.target)
                and not self.elementwise(node))

    def layout_seen(self, node: torch.fx.Node) -> bool:
        """Whether anything but elementwise/fusible work or another view reads node's layout."""
        return self.cautious or any(
            u.op != "call_function" or not (u.target in _VIEWS or optable.has_lowering(u.target))
            for u in node.users)

    # -- rule 1: split items -> slices ----------------------------------------------------------
    def split_items(self, node: torch.fx.Node) -> bool:
        target = node.target
        if target not in (aten.split.Tensor, aten.split_with_sizes.default, aten.unbind.int):
            return False
        if not node.users or is_mutated(node) or any(
                u.target is not operator.getitem or not isinstance(u.args[1], int)
                or u.args[1] < 0 for u in node.users):
            return False
        x = node.args[0]
        dim = _schema_arg(node, "dim")[1] or 0
        for item in list(node.users):
            i: Any = item.args[1]
            if target is aten.unbind.int:
                new = self.emit(item, aten.select.int, (x, dim, i))
            else:
                sizes: Any = node.args[1]
                if isinstance(sizes, int):
                    start, end = i * sizes, (i + 1) * sizes
                elif all(isinstance(s, int) for s in sizes):
                    start, end = sum(sizes[:i]), sum(sizes[:i + 1])
                else:
                    return False
                new = self.emit(item, aten.slice.Tensor, (x, dim, start, end))
            if not same_layout(meta_val(new), meta_val(item)):
                return False
            item.replace_all_uses_with(new)
        return True

    # -- rule 2: keepdim=False reductions ------------------------------------------------------
    def keep_dims(self, r: torch.fx.Node) -> bool:
        """r (keepdim=False over D) -> squeeze(r_k, D)."""
        if r.op != "call_function" or not isinstance(r.target, torch._ops.OpOverload) \
                or not optable.has_lowering(r.target) or not is_pure(r) or not r.users \
                or is_mutated(r):
            return False
        if not r.args:
            return False
        x, out = meta_val(r.args[0]), meta_val(r)
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor) or x.dim() == 0:
            return False
        pos, keepdim = _schema_arg(r, "keepdim")
        if r.target in _OVER_ALL_DIMS:  # x.sum(): no keepdim argument, its dim overload has one
            if out.dim() != 0:
                return False
            dropped = list(range(x.dim()))
            target, args, kwargs = _OVER_ALL_DIMS[r.target], [r.args[0], dropped, True], r.kwargs
        else:
            if pos < 0 or keepdim is not False:
                return False
            dims = _schema_arg(r, "dim")[1]
            dims = [dims] if isinstance(dims, int) else list(dims or range(x.dim()))
            if not all(isinstance(d, int) for d in dims):
                return False
            dropped = sorted({d % x.dim() for d in dims})
            if out.dim() != x.dim() - len(dropped):
                return False
            if dropped == list(range(len(dropped))) and len(dropped) < x.dim():
                # leading dims: dropping them broadcasts like keeping them, and the partitioner
                # lets such a result feed its group as it is (nvfuse/fusion/partition.py)
                return False
            target, args, kwargs = r.target, list(r.args), dict(r.kwargs)
            if pos < len(args) and not r.target._schema.arguments[pos].kwarg_only:
                args[pos] = True
            else:
                kwargs["keepdim"] = True
        kept = self.emit(r, target, tuple(args), kwargs)
        squeezed = self.emit(r, aten.squeeze.dims, (kept, dropped))
        if not same_layout(meta_val(squeezed), out):
            return False
        squeezed.meta[_DROPPED] = (kept, tuple(dropped), x.dim())
        r.replace_all_uses_with(squeezed)
        return True

    def unsqueeze_back(self, v: torch.fx.Node) -> bool:
        """An order-preserving view of squeeze(r_k, D) with r_k's shape -> r_k."""
        source = v.args[0] if v.args else None
        if v.target not in _ORDER_PRESERVING or not isinstance(source, torch.fx.Node) \
                or _DROPPED not in source.meta or is_mutated(v):
            return False
        kept = source.meta[_DROPPED][0]
        if meta_val(kept).shape != meta_val(v).shape or (
                self.layout_seen(v) and not same_layout(meta_val(kept), meta_val(v))):
            return False
        v.replace_all_uses_with(kept)
        return True

    def epilogue_on_rows(self, p: torch.fx.Node) -> bool:
        """p(squeeze(r_k, D), b...) -> squeeze(p(r_k, unsqueeze(b, D)...), D)."""
        if not p.users or not self.elementwise(p):
            return False
        inputs = p.all_input_nodes
        drops = {n.meta[_DROPPED][1:] for n in inputs if _DROPPED in n.meta}
        if len(drops) != 1:
            return False
        dropped, rank = drops.pop()
        if meta_val(p).shape != meta_val(next(n for n in inputs if _DROPPED in n.meta)).shape:
            return False
        new: dict[torch.fx.Node, torch.fx.Node] = {}
        for a in inputs:
            if _DROPPED in a.meta:
                new[a] = a.meta[_DROPPED][0]
                continue
            b = a
            for k in sorted(rank - 1 - d for d in dropped):  # insert the 1s from the right
                at = meta_val(b).dim() - k
                if at >= 0 and meta_val(b).dim() > 0:
                    b = self.emit(p, aten.unsqueeze.default, (b, at))
            new[a] = b
        kept = self.emit(p, p.target, map_arg(p.args, lambda n: new.get(n, n)),
                         map_arg(p.kwargs, lambda n: new.get(n, n)))
        squeezed = self.emit(p, aten.squeeze.dims, (kept, list(dropped)))
        if not same_layout(meta_val(squeezed), meta_val(p)) or meta_val(kept).dim() != rank:
            return False
        squeezed.meta[_DROPPED] = (kept, dropped, rank)
        p.replace_all_uses_with(squeezed)
        return True

    # -- rule 3: views through elementwise ops -------------------------------------------------
    def sink(self, v: torch.fx.Node) -> bool:
        if v.target not in _VIEWS or not v.users or not v.args or _DROPPED in v.meta:
            return False  # (rule 2 put those squeezes after the epilogue on purpose)
        p = v.args[0]
        if not self.feeds_fusible_work(v):
            return False  # it ends a group anyway: moving it would only split the producer's
        if not isinstance(p, torch.fx.Node) or not self.elementwise(p) or is_mutated(v) \
                or self._outputs_alias(p, v):
            return False
        tensors = list(p.all_input_nodes)
        if len(p.users) > 1 and any(self.stuck(a) for a in tensors):
            return False  # p stays for its other users and the view would still cut a group
        shape = list(meta_val(p).shape)
        keep_scalars = any(meta_val(a).dim() > 0 for a in tensors)
        rest: tuple[Any, ...]
        if v.target in _RESHAPES:  # view or nothing: never a copy
            target, rest = aten.view.default, (list(meta_val(v).shape),)
        else:
            target, rest = v.target, tuple(v.args[1:])
        new: dict[torch.fx.Node, torch.fx.Node] = {}
        for a in tensors:
            if meta_val(a).dim() == 0 and keep_scalars:
                continue  # broadcasts to any shape as it is
            source = a
            if list(meta_val(a).shape) != shape:
                source = self.emit(v, aten.expand.default, (a, shape))
            new[a] = self.emit(v, target, (source, *rest),
                               {} if v.target in _RESHAPES else dict(v.kwargs))
        moved = self.emit(v, p.target, map_arg(p.args, lambda n: new.get(n, n)),
                          map_arg(p.kwargs, lambda n: new.get(n, n)))
        out, was = meta_val(moved), meta_val(v)
        if out.shape != was.shape or out.dtype != was.dtype or (
                self.layout_seen(v) and not same_layout(out, was)):
            return False
        v.replace_all_uses_with(moved)
        return True

    def _outputs_alias(self, p: torch.fx.Node, v: torch.fx.Node) -> bool:
        """Eager returns v and another view of p's storage (or p): they alias each other,
        which the rewrite (v becomes a fresh tensor) would change."""
        def members(root: torch.fx.Node) -> set[torch.fx.Node]:
            found, stack = {root}, [root]
            while stack:
                for u in stack.pop().users:
                    if u not in found and alias_source(u) in found:
                        found.add(u)
                        stack.append(u)
            return found

        returned = {n for n in members(p) if any(u.op == "output" for u in n.users)}
        of_v = members(v)
        return bool(returned & of_v) and bool(returned - of_v)

    # -- driver --------------------------------------------------------------------------------
    def run(self) -> None:
        rules = (self.split_items, self.keep_dims, self.unsqueeze_back, self.epilogue_on_rows,
                 self.sink)
        for _ in range(_MAX_ROUNDS):
            progress = False
            for node in list(self.graph.nodes):
                if node.op != "call_function" or not node.users:
                    continue
                for rule in rules:
                    try:
                        done = rule(node)
                    except Exception:  # torch refused a new view: this rewrite does not apply
                        done = False
                    if done:
                        progress = self.changed = True
                        break
            self._drop_dead()
            if not progress:
                return

    def _drop_dead(self) -> None:
        for node in reversed(list(self.graph.nodes)):
            if node.op == "call_function" and not node.users and not has_side_effects(node):
                self.graph.erase_node(node)


def _attempt(gm: torch.fx.GraphModule, mode: FakeMeta, cautious: bool
             ) -> torch.fx.GraphModule | None:
    """The rewritten graph, `gm` itself when no rule applies, None when validation fails."""
    work = copy_graph(gm)
    before = {n: meta_val(n) for n in work.graph.nodes}
    old_outputs = output_vals(work)
    rewriter = _Rewriter(work, mode, cautious)
    rewriter.run()
    if not rewriter.changed:
        return gm
    for node in work.graph.nodes:
        node.meta.pop(_DROPPED, None)  # holds nodes: must not outlive this working copy
    try:
        repropagate(work, mode, before)
    except Exception:
        return None
    if not same_outputs(old_outputs, output_vals(work)):
        return None
    work.meta[SIZED] = True
    return finish_graph(work)


def sink_views(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring.  The input is left unchanged."""
    mode = FakeMeta()
    for cautious in (False, True):
        result = _attempt(gm, mode, cautious)
        if result is not None:
            return result
    return gm
