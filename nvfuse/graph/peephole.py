"""The peephole pass: `torch.fx.GraphModule` -> new GraphModule with local rewrites that are
exact in eager semantics.

Contract: `simplify_peephole(gm) -> gm` never mutates its input.  Value rules replace a node by
one of its operands (x*1, x/1, x-0, x+(-0.0) on floats, t(t(x)), transpose twice, a cast to the
own dtype, eval-mode dropout, an expand its users broadcast anyway) only where
`nvfuse.graph.aliasing.can_forward` allows; `cast(cast(x, b), c)` becomes `cast(x, c)` when
x -> b is lossless; `x.new_full((), v)` (new_zeros, new_ones) becomes `full((), v)`.  Rules
needing dtype/shape facts read meta["val"] and skip unannotated nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx

from nvfuse.graph.aliasing import (
    DROPOUTS,
    can_forward,
    copy_graph,
    finish_graph,
    has_side_effects,
    is_constant_attr,
    is_mutated,
    meta_val,
    module_attr,
    same_tensor_meta,
    structural_key,
)

_aten = torch.ops.aten


_LOSSLESS: dict[torch.dtype, frozenset[torch.dtype]] = {
    torch.uint8: frozenset({torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
                            torch.float32, torch.float64}),
    torch.int8: frozenset({torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
                           torch.float32, torch.float64}),
    torch.int16: frozenset({torch.int32, torch.int64, torch.float32, torch.float64}),
    torch.int32: frozenset({torch.int64, torch.float64}),
    torch.float16: frozenset({torch.float32, torch.float64}),
    torch.bfloat16: frozenset({torch.float32, torch.float64}),
    torch.float32: frozenset({torch.float64}),
    torch.bool: frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                           torch.float16, torch.bfloat16, torch.float32, torch.float64}),
}


def _lossless(src: torch.dtype, dst: torch.dtype) -> bool:
    """Every src value is exactly representable in dst, so src -> dst -> x equals src -> x."""
    return src == dst or dst in _LOSSLESS.get(src, frozenset())


def _cast_dtype(node: torch.fx.Node) -> tuple[torch.fx.Node, torch.dtype | None] | None:
    """(input, target dtype) when node is a plain dtype conversion (no device/layout/format).

    A target of None means a dtype-preserving copy (`_to_copy(x)`).
    """
    if node.op != "call_function" or not node.args or not isinstance(node.args[0], torch.fx.Node):
        return None
    x = node.args[0]
    if node.target is _aten._to_copy.default and len(node.args) == 1:
        dtype = node.kwargs.get("dtype")
        if set(node.kwargs) - {"dtype", "non_blocking"}:
            return None
        return (x, dtype) if dtype is None or isinstance(dtype, torch.dtype) else None
    if node.target in (_aten.to.dtype, torch.ops.prims.convert_element_type.default):
        dtype = node.args[1] if len(node.args) > 1 else node.kwargs.get("dtype")
        if node.target is _aten.to.dtype:
            # Trailing non_blocking / copy flags don't change values; a memory_format does.
            if len(node.args) > 4 or node.kwargs.get("memory_format") is not None:
                return None
        elif len(node.args) > 2 or set(node.kwargs) - {"dtype"}:
            return None
        return (x, dtype) if isinstance(dtype, torch.dtype) else None
    return None


def _scalar(gm: torch.nn.Module, value: Any) -> float | int | bool | None:
    """A Python scalar literal, or the value of a 0-dim constant tensor."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, torch.fx.Node) and value.op == "get_attr" \
            and isinstance(value.target, str) and is_constant_attr(gm, value.target):
        tensor = module_attr(gm, value.target)
        if tensor.dim() == 0 and not tensor.is_complex():
            return tensor.item()
    return None


def _is_pos_zero(s: Any) -> bool:
    return s == 0 and math.copysign(1.0, float(s)) > 0


def _is_neg_zero(s: Any) -> bool:
    return isinstance(s, float) and s == 0 and math.copysign(1.0, s) < 0


def _exact_add_zero(s: Any, x: torch.Tensor) -> bool:
    """x + s == x bit for bit: +0 on integer/bool x; -0.0 on float x (-0.0 + 0.0 is +0.0)."""
    if x.dtype.is_floating_point:
        return _is_neg_zero(s)
    return not x.dtype.is_complex and _is_pos_zero(s)


def _unit_alpha(node: torch.fx.Node) -> bool:
    alpha = node.kwargs.get("alpha", 1)
    units = (structural_key(1), structural_key(1.0), structural_key(True))
    return len(node.args) == 2 and structural_key(alpha) in units


def _identity_operand(gm: torch.nn.Module, node: torch.fx.Node) -> torch.fx.Node | None:
    """x for x*1, 1*x, x/1, x-0, x+0 (integer/bool x) and x+(-0.0) (float x); else None.

    The caller still checks node's dtype/shape/strides equal x's (no promotion, broadcast).
    """
    target = node.target
    pairs: tuple[tuple[int, int], ...]
    if target in (_aten.mul.Tensor, _aten.mul.Scalar):
        pairs, test = ((0, 1), (1, 0)), (lambda s, x: s == 1)
    elif target in (_aten.div.Tensor, _aten.div.Scalar):
        pairs, test = ((0, 1),), (lambda s, x: s == 1)
    elif target in (_aten.sub.Tensor, _aten.sub.Scalar) and _unit_alpha(node):
        # x - (+0) is exact for every x: -0.0 - 0.0 == -0.0.
        pairs, test = ((0, 1),), (lambda s, x: _is_pos_zero(s))
    elif target in (_aten.add.Tensor, _aten.add.Scalar) and _unit_alpha(node):
        pairs, test = ((0, 1), (1, 0)), _exact_add_zero
    else:
        return None
    if len(node.args) != 2:
        return None
    for xi, si in pairs:
        x, s = node.args[xi], _scalar(gm, node.args[si])
        if isinstance(x, torch.fx.Node) and s is not None \
                and isinstance(meta_val(x), torch.Tensor) and test(s, meta_val(x)) \
                and same_tensor_meta(node, x):
            return x
    return None


def _double_view(node: torch.fx.Node) -> torch.fx.Node | None:
    """x for t(t(x)) and transpose(transpose(x, a, b), a, b)."""
    inner = node.args[0] if node.args else None
    if not isinstance(inner, torch.fx.Node) or inner.target is not node.target:
        return None
    x = inner.args[0]
    if not isinstance(x, torch.fx.Node):
        return None
    if node.target is _aten.t.default:
        return x
    if node.target is _aten.transpose.int and len(node.args) == 3 and len(inner.args) == 3:
        val = meta_val(x)
        rank = val.dim() if isinstance(val, torch.Tensor) else None

        def dims(args: Sequence[Any]) -> frozenset[int] | None:
            if not all(isinstance(d, int) for d in args):
                return None
            if rank is None:
                return frozenset(args) if all(d >= 0 for d in args) else None
            return frozenset(d % max(rank, 1) for d in args)

        outer_dims, inner_dims = dims(node.args[1:]), dims(inner.args[1:])
        if outer_dims is not None and outer_dims == inner_dims:
            return x
    return None


def _same_dtype_cast(node: torch.fx.Node) -> torch.fx.Node | None:
    """x for a conversion of x to x's own dtype."""
    cast = _cast_dtype(node)
    if cast is None:
        return None
    x, dtype = cast
    val = meta_val(x)
    if isinstance(val, torch.Tensor) and dtype in (None, val.dtype) and same_tensor_meta(node, x):
        return x
    return None


def _collapse_cast_chain(node: torch.fx.Node) -> bool:
    """cast(cast(x, b), c) -> cast(x, c) when x's dtype -> b is lossless.  True if rewritten."""
    outer = _cast_dtype(node)
    if outer is None:
        return False
    mid, dtype_c = outer
    inner = _cast_dtype(mid)
    if inner is None:
        return False
    x, dtype_b = inner
    val_x = meta_val(x)
    if not isinstance(val_x, torch.Tensor) or dtype_b is None or dtype_c is None:
        return False
    if not _lossless(val_x.dtype, dtype_b) or is_mutated(mid) or is_mutated(x):
        return False
    if node.target is _aten.to.dtype and dtype_c == val_x.dtype:
        return False  # to.dtype(x, x.dtype) returns x itself: eager's result here is fresh
    node.replace_input_with(mid, x)
    return True


# x.new_full(size, v) and kin: a constant whose shape is the `size` argument; x only gives the
# default dtype and the device
_NEW_CONSTANTS = {_aten.new_full.default: None, _aten.new_zeros.default: 0,
                  _aten.new_ones.default: 1}


def _operandless_constant(node: torch.fx.Node) -> bool:
    """x.new_full((), v) (new_zeros, new_ones) -> full((), v) of the result's dtype and device.
    lerp's decomposition builds its scalar weight so; as `full` the 0-dim constant no longer
    reads x, so it fuses (its shape is not x's broadcast).  True if rewritten."""
    if node.target not in _NEW_CONSTANTS or not node.args:
        return False
    val = meta_val(node)
    size: Any = node.args[1] if len(node.args) > 1 else node.kwargs.get("size")
    if not isinstance(val, torch.Tensor) or val.dim() != 0 or not isinstance(size, (list, tuple)) \
            or size or node.kwargs.get("layout") not in (None, torch.strided):
        return False
    value: Any = _NEW_CONSTANTS[node.target]
    if value is None:
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("fill_value")
    if not isinstance(value, (bool, int, float)):
        return False
    node.target = _aten.full.default
    node.args = ([], value)
    node.kwargs = {"dtype": val.dtype, "layout": torch.strided, "device": val.device,
                   "pin_memory": False}
    return True


def _eval_dropout(node: torch.fx.Node) -> torch.fx.Node | None:
    """x for dropout(x, p, train=False): the identity (traced eval-mode models carry these)."""
    if node.target in DROPOUTS and len(node.args) == 3 and node.args[2] is False:
        x = node.args[0]
        if isinstance(x, torch.fx.Node) and same_tensor_meta(node, x):
            return x
    return None


def _broadcast_expand(node: torch.fx.Node) -> torch.fx.Node | None:
    """x for expand(x, sizes) when every user is an elementwise op (torch's pointwise tag: its
    result is the broadcast of its operands) that broadcasts x to the same shape without it
    (decompositions of lerp and logaddexp emit these).  Keeps the consumers fusible: a
    pointwise kernel broadcasts for free.  Any other user (a reduction, a view) needs the
    expanded shape itself, even where its result happens to match the broadcast."""
    x = node.args[0] if node.target is _aten.expand.default else None
    val_x = meta_val(x)
    if not isinstance(x, torch.fx.Node) or not isinstance(val_x, torch.Tensor):
        return None
    for user in node.users:
        out = meta_val(user)
        if user.op != "call_function" or not _pointwise(user.target) or not isinstance(
                out, torch.Tensor):
            return None
        vals = [val_x if a is node else meta_val(a) for a in user.all_input_nodes]
        if not all(isinstance(v, torch.Tensor) for v in vals):
            return None
        try:
            shape = torch.broadcast_shapes(*(v.shape for v in vals))
        except RuntimeError:
            return None
        if tuple(shape) != tuple(out.shape):
            return None
    return x


def _pointwise(target: object) -> bool:
    return isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags


_VALUE_RULES: tuple[Callable[[torch.nn.Module, torch.fx.Node], torch.fx.Node | None], ...] = (
    lambda gm, n: _double_view(n),
    _identity_operand,
    lambda gm, n: _same_dtype_cast(n),
    lambda gm, n: _eval_dropout(n),
    lambda gm, n: _broadcast_expand(n),
)


def _simplify_once(work: torch.fx.GraphModule) -> bool:
    changed = False
    for node in list(work.graph.nodes):
        if node.op != "call_function":
            continue
        if _collapse_cast_chain(node) or _operandless_constant(node):
            changed = True
        for rule in _VALUE_RULES:
            replacement = rule(work, node)
            if replacement is not None and can_forward(node, replacement):
                node.replace_all_uses_with(replacement)
                if not node.users and not has_side_effects(node):
                    work.graph.erase_node(node)
                changed = True
                break
    return changed


def simplify_peephole(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Local algebraic rewrites that are exact in eager semantics (see the rule helpers).

    Rules needing dtype/shape facts use meta["val"] and are skipped on unannotated nodes.
    """
    work = copy_graph(gm)
    for _ in range(8):  # each sweep is topological; repeat for rewrites that enable others
        if not _simplify_once(work):
            break
    return finish_graph(work)
