"""Graph IR passes: `torch.fx.GraphModule` (aten OpOverload call_functions) -> new GraphModule.

Every transform is `verb_noun(gm) -> gm` and never mutates its input: it works on a copy of the
graph (node meta preserved) whose owning module shares the input's parameters and buffers (no
tensor is copied).  `PASSES` is the ordered pipeline and `run_passes` applies it.

`annotate(gm, example_inputs)` is the analysis the transforms lean on: it returns a copy whose
every node has `meta["val"]` (a FakeTensor, a tuple of them, or a Python scalar) computed under a
FakeTensorMode, so dtypes, shapes and strides are known without running anything.

Safety rules shared by the transforms (eager semantics first, see design.md):
- side effects (in-place / out= ops, RNG, asserts, calls into modules) are never removed, merged
  or moved;
- a value the graph returns (directly or through views) is never replaced by one that aliases a
  graph input, a weight, a constant or another returned value, because eager returns a fresh
  tensor there;
- only get_attr tensors named `_tensor_constant*` that are not Parameters count as constants:
  weights and user buffers can be updated in place between calls, so they are never folded.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_arg

from nvfuse.errors import NvfuseError

__all__ = [
    "CONSTANT_PREFIX", "PASSES", "annotate", "eliminate_common_subexpressions",
    "eliminate_dead_code", "fold_constants", "is_constant_attr", "run_passes", "simplify_peephole",
]

# Attribute prefix of lifted tensor constants (make_fx uses the same): foldable, never weights.
CONSTANT_PREFIX = "_tensor_constant"
# Folding materializes a tensor in the module; past this size it costs more memory than it saves.
MAX_FOLD_NUMEL = 1 << 20

_aten = torch.ops.aten


# ---------------------------------------------------------------------------------------------
# copying
# ---------------------------------------------------------------------------------------------
def _copy(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A working copy: new Graph and nodes (meta shallow-copied), same attribute tensors."""
    graph = torch.fx.Graph()
    graph._codegen = copy.deepcopy(gm.graph._codegen)  # keeps pytree in/out specs, if any
    value_map: dict[torch.fx.Node, torch.fx.Node] = {}
    out = graph.graph_copy(gm.graph, value_map, return_output_node=True)
    assert isinstance(out, tuple)
    result, old_output = out
    new_output = graph.output(result, type_expr=old_output.type)
    new_output.meta = copy.copy(old_output.meta)
    work = torch.fx.GraphModule(gm, graph, class_name=type(gm).__name__)
    work.meta = dict(getattr(gm, "meta", {}))
    return work


def _finish(work: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Lint, and rebuild the owner so it holds exactly the attributes the graph references."""
    work.graph.lint()
    result = torch.fx.GraphModule(work, work.graph, class_name=type(work).__name__)
    result.meta = work.meta
    return result


# ---------------------------------------------------------------------------------------------
# node facts
# ---------------------------------------------------------------------------------------------
def _overload(node: torch.fx.Node) -> torch._ops.OpOverload | None:
    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return node.target
    return None


# Composite norms that update running statistics in training mode although their schema has no
# write annotation: (flag argument, written arguments).
_HIDDEN_WRITES = {
    "aten::batch_norm": ("training", ("running_mean", "running_var")),
    "aten::native_batch_norm": ("training", ("running_mean", "running_var")),
    "aten::_batch_norm_impl_index": ("training", ("running_mean", "running_var")),
    "aten::instance_norm": ("use_input_stats", ("running_mean", "running_var")),
    "aten::cudnn_batch_norm": ("training", ("running_mean", "running_var")),
    "aten::miopen_batch_norm": ("training", ("running_mean", "running_var")),
}


def _arg(node: torch.fx.Node, op: torch._ops.OpOverload, name: str) -> Any:
    for i, arg in enumerate(op._schema.arguments):
        if arg.name == name:
            if i < len(node.args) and not arg.kwarg_only:
                return node.args[i]
            return node.kwargs.get(name, arg.default_value)
    return None


def _hidden_writes(node: torch.fx.Node) -> list[torch.fx.Node]:
    """Running-stat buffers a training-mode norm updates (empty in eval mode)."""
    op = _overload(node)
    spec = _HIDDEN_WRITES.get(op._schema.name) if op is not None else None
    if op is None or spec is None:
        return []
    flag, written = spec
    if _arg(node, op, flag) is False:
        return []
    return [v for name in written if isinstance(v := _arg(node, op, name), torch.fx.Node)]


def _is_mutating(node: torch.fx.Node) -> bool:
    """In-place and out= ops (their schema marks a written alias), and training-mode norms."""
    op = _overload(node)
    return op is not None and (op._schema.is_mutable or bool(_hidden_writes(node)))


_DROPOUTS = (_aten.dropout.default, _aten.feature_dropout.default, _aten.alpha_dropout.default,
             _aten.feature_alpha_dropout.default)


def _is_random(node: torch.fx.Node) -> bool:
    op = _overload(node)
    if op in _DROPOUTS and len(node.args) == 3 and node.args[2] is False:
        return False  # eval-mode dropout draws nothing
    return op is not None and torch.Tag.nondeterministic_seeded in op.tags


def _has_side_effects(node: torch.fx.Node) -> bool:
    """Must stay even when unused: graph I/O, mutation, RNG, asserts, modules, unknown callables."""
    if node.op in ("placeholder", "output", "call_module", "call_method"):
        return True
    if node.op == "get_attr":
        return False
    if _is_mutating(node) or _is_random(node):
        return True
    if _overload(node) is None:
        # Plain Python callables: only the operator module's functions are known to be pure.
        return getattr(node.target, "__module__", None) not in ("_operator", "operator", "math")
    try:
        return node.is_impure(impure_random=False)  # RNG is judged by _is_random above
    except (AssertionError, RuntimeError):
        return True


def _is_pure(node: torch.fx.Node) -> bool:
    """Deterministic and side-effect free: safe to merge, fold or drop."""
    if node.op != "call_function" or _has_side_effects(node):
        return False
    op = _overload(node)
    return op is None or torch.Tag.nondeterministic_bitwise not in op.tags


def _alias_source(node: torch.fx.Node) -> torch.fx.Node | None:
    """The input whose storage node's result shares (views, in-place results), else None."""
    if node.op != "call_function":
        return None
    if node.target is operator.getitem:
        source = node.args[0]
        if isinstance(source, torch.fx.Node) and _alias_source(source) is not None:
            return _alias_source(source)  # an element of split()/unbind() views the input
        return None
    op = _overload(node)
    if op is None:
        return None
    sets = [r.alias_info.before_set for r in op._schema.returns if r.alias_info is not None]
    if not sets:
        return None
    for i, arg in enumerate(op._schema.arguments):
        if arg.alias_info is None or not (arg.alias_info.before_set & sets[0]):
            continue
        value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
        if isinstance(value, torch.fx.Node):
            return value
    return None


def _alias_root(node: torch.fx.Node) -> torch.fx.Node:
    while (source := _alias_source(node)) is not None:
        node = source
    return node


def _alias_class(node: torch.fx.Node) -> Iterator[torch.fx.Node]:
    """node's root and every value viewing the same storage through it."""
    root = _alias_root(node)
    seen = {root}
    stack = [root]
    while stack:
        current = stack.pop()
        yield current
        for user in current.users:
            if user not in seen and _alias_source(user) is current:
                seen.add(user)
                stack.append(user)


def _written_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    op = _overload(node)
    if op is None:
        return []
    written = _hidden_writes(node)
    for i, arg in enumerate(op._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
            written.extend(v for v in _flat(value) if isinstance(v, torch.fx.Node))
    return written


def _is_mutated(node: torch.fx.Node) -> bool:
    """Whether any op writes node's storage (through any view of it)."""
    members = set(_alias_class(node))
    return any(
        member in _written_inputs(user) for member in members for user in member.users
    )


def _reaches_output(node: torch.fx.Node) -> bool:
    """Whether the graph returns node's storage (node itself or a view of it)."""
    return any(user.op == "output" for member in _alias_class(node) for user in member.users)


def _is_fresh(node: torch.fx.Node) -> bool:
    """node's storage is made by the graph each call (not an input, weight or constant)."""
    return _alias_root(node).op == "call_function"


def _can_forward(node: torch.fx.Node, replacement: torch.fx.Node) -> bool:
    """May every use of node become a use of replacement without changing eager's aliasing?"""
    if _is_mutated(node) or _is_mutated(replacement):
        return False
    if _reaches_output(node):
        # Eager returns a fresh tensor here; the replacement must be just as private.
        return _is_fresh(replacement) and not _reaches_output(replacement)
    return True


def _flat(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flat(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flat(item)
    else:
        yield value


def _val(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _same_tensor_meta(a: torch.fx.Node, b: torch.fx.Node) -> bool:
    """Both annotated with tensors of equal dtype, shape, strides and device."""
    va, vb = _val(a), _val(b)
    if not isinstance(va, torch.Tensor) or not isinstance(vb, torch.Tensor):
        return False
    return (va.dtype == vb.dtype and va.shape == vb.shape and va.device == vb.device
            and va.stride() == vb.stride())


def _attr(gm: torch.nn.Module, target: str) -> Any:
    owner: Any = gm
    for item in target.split("."):
        owner = getattr(owner, item)
    return owner


def is_constant_attr(gm: torch.nn.Module, target: str) -> bool:
    """A lifted tensor constant (never a parameter or a user buffer, which may change)."""
    if not target.rsplit(".", 1)[-1].startswith(CONSTANT_PREFIX):
        return False
    value = _attr(gm, target)
    return isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)


# ---------------------------------------------------------------------------------------------
# dead code
# ---------------------------------------------------------------------------------------------
def eliminate_dead_code(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop nodes nothing uses, keeping every node with side effects (mutation, RNG, asserts)."""
    work = _copy(gm)
    for node in reversed(list(work.graph.nodes)):
        if not node.users and not _has_side_effects(node):
            work.graph.erase_node(node)
    return _finish(work)


# ---------------------------------------------------------------------------------------------
# common subexpressions
# ---------------------------------------------------------------------------------------------
class _Unmatchable:
    """Key part for an argument that has no structural identity (never equal to another)."""


def _key(value: Any) -> Any:
    """Hashable structural key. Scalars keep their type (1, 1.0, True differ) and repr (-0.0)."""
    if isinstance(value, torch.fx.Node):
        return ("node", value)
    if isinstance(value, (bool, int, float, complex)):
        return (type(value).__name__, repr(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value))
    try:
        hash(value)
    except TypeError:
        return ("unhashable", _Unmatchable())
    return (type(value).__name__, value)


def _can_merge(node: torch.fx.Node, earlier: torch.fx.Node) -> bool:
    """Eager gives two distinct tensors: merging is only invisible when neither is written
    later (a write would now reach both) and not both are returned (the caller gets two)."""
    if _is_mutated(node) or _is_mutated(earlier):
        return node.op == "get_attr"  # the same attribute is the same tensor either way
    return not (_reaches_output(node) and _reaches_output(earlier))


def eliminate_common_subexpressions(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Merge pure, deterministic nodes with the same target and structurally equal args."""
    work = _copy(gm)
    seen: dict[Any, torch.fx.Node] = {}
    for node in list(work.graph.nodes):
        if _is_mutating(node):
            seen.clear()  # a write may change what an identical later expression computes
            continue
        if node.op == "get_attr":
            key: Any = ("get_attr", node.target)
        elif _is_pure(node):
            key = (node.target, _key(node.args), _key(node.kwargs))
        else:
            continue
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = node
        elif _can_merge(node, earlier):
            node.replace_all_uses_with(earlier)
            work.graph.erase_node(node)
    return _finish(work)


# ---------------------------------------------------------------------------------------------
# constant folding
# ---------------------------------------------------------------------------------------------
def _free_constant_name(module: torch.nn.Module) -> str:
    index = 0
    while hasattr(module, f"{CONSTANT_PREFIX}{index}"):
        index += 1
    return f"{CONSTANT_PREFIX}{index}"


def _too_big(node: torch.fx.Node) -> bool:
    val = _val(node)
    return isinstance(val, torch.Tensor) and val.numel() > MAX_FOLD_NUMEL


def fold_constants(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Evaluate pure ops whose tensor inputs are all constants; each result becomes a constant.

    Views of constants are evaluated (so ops after them fold) but not materialized: they cost
    nothing.  Never folded: RNG, results over MAX_FOLD_NUMEL elements, non-tensor results, values
    the graph returns (eager returns a fresh tensor each call, a constant would be shared), and
    anything reading a constant the graph writes.
    """
    work = _copy(gm)
    values: dict[torch.fx.Node, Any] = {}
    for node in list(work.graph.nodes):
        if node.op == "get_attr" and isinstance(node.target, str) \
                and is_constant_attr(work, node.target):
            if not _is_mutated(node):
                values[node] = _attr(work, node.target)
            continue
        inputs = node.all_input_nodes
        if not _is_pure(node) or not inputs or any(n not in values for n in inputs):
            continue
        if _too_big(node):
            continue
        with torch.no_grad():
            result = node.target(*map_arg(node.args, values.__getitem__),
                                 **map_arg(node.kwargs, values.__getitem__))
        if not isinstance(result, torch.Tensor) or result.numel() > MAX_FOLD_NUMEL:
            continue
        values[node] = result
        if _alias_source(node) is not None or _reaches_output(node):
            continue
        name = _free_constant_name(work)
        work.register_buffer(name, result)
        with work.graph.inserting_before(node):
            constant = work.graph.get_attr(name)
        constant.meta = copy.copy(node.meta)
        node.replace_all_uses_with(constant)
        work.graph.erase_node(node)
        values[constant] = result
    # Constants and constant views the folded nodes read may now be dead; drop them so the
    # module does not keep intermediate tensors alive.
    for node in reversed(list(work.graph.nodes)):
        if node in values and not node.users and not _has_side_effects(node):
            work.graph.erase_node(node)
    return _finish(work)


# ---------------------------------------------------------------------------------------------
# peepholes
# ---------------------------------------------------------------------------------------------
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
        tensor = _attr(gm, value.target)
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
    return len(node.args) == 2 and _key(alpha) in (_key(1), _key(1.0), _key(True))


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
        if isinstance(x, torch.fx.Node) and s is not None and isinstance(_val(x), torch.Tensor) \
                and test(s, _val(x)) and _same_tensor_meta(node, x):
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
        val = _val(x)
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
    val = _val(x)
    if isinstance(val, torch.Tensor) and dtype in (None, val.dtype) and _same_tensor_meta(node, x):
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
    val_x = _val(x)
    if not isinstance(val_x, torch.Tensor) or dtype_b is None or dtype_c is None:
        return False
    if not _lossless(val_x.dtype, dtype_b) or _is_mutated(mid) or _is_mutated(x):
        return False
    if node.target is _aten.to.dtype and dtype_c == val_x.dtype:
        return False  # to.dtype(x, x.dtype) returns x itself: eager's result here is fresh
    node.replace_input_with(mid, x)
    return True


def _eval_dropout(node: torch.fx.Node) -> torch.fx.Node | None:
    """x for dropout(x, p, train=False): the identity (traced eval-mode models carry these)."""
    if node.target in _DROPOUTS and len(node.args) == 3 and node.args[2] is False:
        x = node.args[0]
        if isinstance(x, torch.fx.Node) and _same_tensor_meta(node, x):
            return x
    return None


def _broadcast_expand(node: torch.fx.Node) -> torch.fx.Node | None:
    """x for expand(x, sizes) when every user is an op-table op that broadcasts x to the same
    shape without it (decompositions of lerp and logaddexp emit these).  Keeps the consumers
    fusible: a pointwise kernel broadcasts for free."""
    from nvfuse.graph.optable import has_lowering  # the op table decides what is pointwise

    x = node.args[0] if node.target is _aten.expand.default else None
    val_x = _val(x)
    if not isinstance(x, torch.fx.Node) or not isinstance(val_x, torch.Tensor):
        return None
    for user in node.users:
        out = _val(user)
        if user.op != "call_function" or not has_lowering(user.target) or not isinstance(
                out, torch.Tensor):
            return None
        vals = [val_x if a is node else _val(a) for a in user.all_input_nodes]
        if not all(isinstance(v, torch.Tensor) for v in vals):
            return None
        try:
            shape = torch.broadcast_shapes(*(v.shape for v in vals))
        except RuntimeError:
            return None
        if tuple(shape) != tuple(out.shape):
            return None
    return x


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
        if _collapse_cast_chain(node):
            changed = True
        for rule in _VALUE_RULES:
            replacement = rule(work, node)
            if replacement is not None and _can_forward(node, replacement):
                node.replace_all_uses_with(replacement)
                if not node.users and not _has_side_effects(node):
                    work.graph.erase_node(node)
                changed = True
                break
    return changed


def simplify_peephole(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Local algebraic rewrites that are exact in eager semantics (see the rule helpers).

    Rules needing dtype/shape facts use meta["val"] and are skipped on unannotated nodes.
    """
    work = _copy(gm)
    for _ in range(8):  # each sweep is topological; repeat for rewrites that enable others
        if not _simplify_once(work):
            break
    return _finish(work)


# ---------------------------------------------------------------------------------------------
# pipeline and annotation
# ---------------------------------------------------------------------------------------------
PASSES: list[Callable[[torch.fx.GraphModule], torch.fx.GraphModule]] = [
    eliminate_dead_code,
    eliminate_common_subexpressions,
    fold_constants,
    simplify_peephole,
    eliminate_common_subexpressions,
    eliminate_dead_code,
]


def run_passes(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Apply PASSES in order; the input is left unchanged."""
    for graph_pass in PASSES:
        gm = graph_pass(gm)
    return gm


class _FakeRunner(torch.fx.Interpreter):
    """Runs the graph on fake tensors, recording each node's result in meta["val"]."""

    def __init__(self, gm: torch.fx.GraphModule, mode: Any) -> None:
        super().__init__(gm)
        self.mode = mode

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except NvfuseError:
            raise
        except Exception as exc:  # any op failure becomes an nvfuse error naming the node
            raise NvfuseError(
                f"annotate: node {n.name} ({n.op} {getattr(n.target, '__name__', n.target)}) "
                f"failed under fake tensors: {type(exc).__name__}: {exc}"
            ) from exc
        n.meta["val"] = result
        return result

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        return self.mode.from_tensor(value) if isinstance(value, torch.Tensor) else value


def annotate(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> torch.fx.GraphModule:
    """A copy of gm whose every node carries meta["val"] (FakeTensor or Python scalar)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    work = _copy(gm)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake_inputs = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x
                   for x in example_inputs]
    with mode, torch.no_grad():
        _FakeRunner(work, mode).run(*fake_inputs)
    return _finish(work)
