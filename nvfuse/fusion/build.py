"""Build: one fusion group's aten subgraph -> FusionIR.

Input: a `torch.fx.GraphModule` holding exactly the group's nodes (placeholders = the group's
inputs, one output node returning a tuple of the group's outputs), every node annotated with
`meta["val"]` (a FakeTensor).  Output: a verified `FusionIR` whose inputs are the tensor
placeholders in order and whose outputs are the returned values in order.

Each aten node is lowered by the op table (`nvfuse.fusion.optable.lower_op`); its result is typed
as eager's dtype with `Builder.finish`.  Each output records the inputs its shape depends on:
directly (`shape_from`) or through a reduction (`reduced_from`: the result of an op whose value
is a row value and that is not elementwise -- a reduction -- takes its operands' shapes with
the reduced dims set to 1; an elementwise op broadcasts its operands' shapes as they are, so a
shape-only constant such as `zeros_like(x)` keeps its full shape), and, in a reduction group,
whether it is a row value with the reduced dims kept or dropped (read off eager's rank of the
output), or a full output (a row value with a direct shape is stored broadcast along the
reduced dims).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import fx

from nvfuse import dtypes
from nvfuse.errors import LoweringError
from nvfuse.fusion import concat
from nvfuse.fusion.builder import Builder, Unsupported, Val
from nvfuse.fusion.ir import FusionIR, OutputShape, row_values
from nvfuse.fusion import optable


def op_name(target: Any) -> str:
    """'aten::add' for torch.ops.aten.add.Tensor; str(target) for anything else."""
    schema = getattr(target, "_schema", None)
    return schema.name if schema is not None else str(target)


def meta_tensor(node: fx.Node) -> torch.Tensor:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise LoweringError(f"build: node {node.name} has no tensor metadata (meta['val'])")
    return val


def dim_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The order of t's dims in memory, outermost first (None when contiguous): larger strides
    outside; size-1 dims, whose stride says nothing, keep their logical place."""
    if t.is_contiguous() or t.dim() < 2:
        return None
    strides = t.stride()
    placed = sorted((d for d in range(t.dim()) if t.shape[d] != 1),
                    key=lambda d: -strides[d])  # stable: ties keep logical order
    order = iter(placed)
    return tuple(d if t.shape[d] == 1 else next(order) for d in range(t.dim()))


def _substitute(value: Any, env: dict[fx.Node, Val]) -> Any:
    """`value` (an FX argument) with every Node replaced by its Val."""
    if isinstance(value, fx.Node):
        return env[value]
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(v, env) for v in value)
    if isinstance(value, dict):
        return {k: _substitute(v, env) for k, v in value.items()}
    return value


def lower_node(b: Builder, node: fx.Node, env: dict[fx.Node, Val]) -> Val:
    """Lower one aten node through the op table, its tensor operands taken from `env`, and type
    the result as eager's dtype.  Raises Unsupported.  (The partitioner's dry run uses it too.)

    A `device=` argument equal to the node's own device is dropped: make_fx writes one into
    every conversion, and a group never changes devices."""
    meta = meta_tensor(node)
    out = dtypes.from_torch(meta.dtype)
    if node.target is torch.ops.aten.copy.default and len(node.args) > 1 and isinstance(
            node.args[1], fx.Node) and tuple(meta_tensor(node.args[1]).shape) != tuple(meta.shape):
        # src broadcast to self's shape: inside a reduction group a broadcast row value would
        # become a full tensor the fusion IR cannot tell from the row value (a reduction of it
        # reads the wrong extent); rare enough to leave to eager everywhere
        raise Unsupported("a broadcasting copy (src's shape is not self's)")
    args = _substitute(node.args, env)
    kwargs = _substitute(dict(node.kwargs), env)
    if "device" in kwargs and kwargs["device"] is not None and (
            torch.device(kwargs["device"]) == meta.device):
        del kwargs["device"]
    return b.finish(optable.lower_op(b, node.target, tuple(args), kwargs, out), out)


def _rows(b: Builder) -> frozenset[int]:
    """The row values among the nodes built so far."""
    return row_values(FusionIR(b.name, tuple(b.inputs), tuple(b.nodes), (), (),
                               reduce_ndim=b.reduce_ndim, reduce_dims=b.reduce_dims))


# Reductions whose result has their operand's shape (not the reduced one): by definition, not
# by a size that happens to be 1 (a plan may be reused for other sizes).
_SHAPE_PRESERVING = frozenset(
    getattr(getattr(torch.ops.aten, name), overload)
    for name, overload in (("_softmax", "default"), ("_log_softmax", "default"),
                           ("softmax", "int"), ("log_softmax", "int"), ("layer_norm", "default"))
    if hasattr(getattr(torch.ops.aten, name), overload))


def _keeps_shape(node: fx.Node) -> bool:
    """Whether `node` is a reduction whose result has its operand's shape (a softmax, a layer
    norm)."""
    return node.target in _SHAPE_PRESERVING


def build_fusion(name: str, gm: fx.GraphModule) -> FusionIR:
    """Lower the group subgraph `gm` to a FusionIR named `name` (raises LoweringError)."""
    b = Builder(name)
    env: dict[fx.Node, Val] = {}
    # which inputs each value's shape comes from: directly, and through a reduction
    deps: dict[fx.Node, frozenset[int]] = {}
    reduced: dict[fx.Node, frozenset[int]] = {}
    after_cat: dict[fx.Node, frozenset[int]] = {}  # the concatenations a value is computed from
    ops: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            val = meta_tensor(node)
            deps[node] = frozenset({len(b.inputs)})
            reduced[node] = frozenset()
            after_cat[node] = frozenset()
            env[node] = b.load(dtypes.from_torch(val.dtype), val.dim())
        elif node.op == "call_function":
            meta = meta_tensor(node)
            is_cat = concat.is_concat(node.target)
            reduce_calls = b.reduce_calls
            try:
                if is_cat:
                    out = dtypes.from_torch(meta.dtype)
                    result = b.finish(concat.lower_concat(b, node, env, deps), out)
                else:
                    result = lower_node(b, node, env)
            except Unsupported as e:
                raise LoweringError(
                    f"build {name}: {op_name(node.target)} ({node.name}): {e}") from e
            env[node] = replace(result, zero_dim=meta.dim() == 0, ndim=meta.dim())
            direct = frozenset().union(*(deps[a] for a in node.all_input_nodes))
            through = frozenset().union(*(reduced[a] for a in node.all_input_nodes))
            reduces = b.reduce_calls > reduce_calls
            if reduces and result.index in _rows(b) and not _keeps_shape(node):
                # a reduction's result has the reduced shape of what it reduces.  Any other
                # op's result is the broadcast of its operands -- elementwise ops, casts, fills,
                # copies -- even where every operand is a row value or a literal in the IR, so
                # a shape-only constant among them keeps its shape (`zeros_like(x) + x.sum(0)`,
                # `isnan(int_x)` folded to False, a `fill_` of x), and so does a reduction whose
                # result has its operand's shape (a softmax or layer norm of such a value)
                direct, through = frozenset(), direct | through
            if is_cat:  # its shape is the concatenation's, not its pieces' broadcast
                direct = frozenset()
            deps[node], reduced[node] = direct, through
            after_cat[node] = frozenset().union(*(after_cat[a] for a in node.all_input_nodes))
            if is_cat:
                after_cat[node] = frozenset({len(b.concats) - 1})
            ops.append(op_name(node.target))
        elif node.op == "output":
            results = node.args[0]
            results = results if isinstance(results, (tuple, list)) else (results,)
            rows = _rows(b)
            for r in results:
                if not isinstance(r, fx.Node) or r not in env:
                    raise LoweringError(f"build {name}: output {r!r} is not a group value")
                meta = meta_tensor(r)
                shape = OutputShape.FULL
                rank = max((b.inputs[i].ndim for i in deps[r] | reduced[r]), default=0)
                if env[r].index in rows and not deps[r]:
                    shape = (OutputShape.ROW_KEEPDIM if meta.dim() == rank
                             else OutputShape.ROW_DROPPED)
                elif meta.dim() < rank:  # a leading-dim keepdim=False reduction fed it
                    shape = OutputShape.FULL_DROPPED
                b.store(env[r], dtypes.from_torch(meta.dtype), tuple(sorted(deps[r])),
                        dim_order(meta), shape, tuple(sorted(reduced[r])),
                        tuple(sorted(after_cat[r])))
        else:
            raise LoweringError(f"build {name}: unexpected {node.op} node {node.name}")
    return b.finalize(tuple(ops))
