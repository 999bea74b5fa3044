"""Node facts the graph passes share, on `torch.fx` graphs of aten OpOverload call_functions.

Contract (all analyses: they read a node and its graph, never change them):
    has_side_effects(node) / is_pure(node) / is_mutating(node)   what may be dropped or merged
    alias_source(node) / is_mutated(node) / reaches_output(node)  which storage a value shares,
                                                                 whether it is written / returned
    can_forward(node, replacement)   may node's uses read replacement without changing eager's
                                     aliasing (see the safety rules in `nvfuse.graph.passes`)
    meta_val(node) / same_tensor_meta(a, b)   the FakeTensor facts `annotate` records
    is_constant_attr(gm, target) / module_attr(gm, target)   lifted constants (CONSTANT_PREFIX)
    structural_key(value)            hashable structural identity of node arguments
plus `copy_graph(gm) -> work` / `finish_graph(work) -> gm`, the non-mutating working copy every
pass and `annotate` starts from and ends with.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx

# Attribute prefix of lifted tensor constants (make_fx uses the same): foldable, never weights.
CONSTANT_PREFIX = "_tensor_constant"

_aten = torch.ops.aten


# ---------------------------------------------------------------------------------------------
# copying
# ---------------------------------------------------------------------------------------------
def copy_graph(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
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


def finish_graph(work: torch.fx.GraphModule) -> torch.fx.GraphModule:
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


def is_mutating(node: torch.fx.Node) -> bool:
    """In-place and out= ops (their schema marks a written alias), and training-mode norms."""
    op = _overload(node)
    return op is not None and (op._schema.is_mutable or bool(_hidden_writes(node)))


DROPOUTS = (_aten.dropout.default, _aten.feature_dropout.default, _aten.alpha_dropout.default,
             _aten.feature_alpha_dropout.default)


def _is_random(node: torch.fx.Node) -> bool:
    op = _overload(node)
    if op in DROPOUTS and len(node.args) == 3 and node.args[2] is False:
        return False  # eval-mode dropout draws nothing
    return op is not None and torch.Tag.nondeterministic_seeded in op.tags


def has_side_effects(node: torch.fx.Node) -> bool:
    """Must stay even when unused: graph I/O, mutation, RNG, asserts, modules, unknown callables."""
    if node.op in ("placeholder", "output", "call_module", "call_method"):
        return True
    if node.op == "get_attr":
        return False
    if is_mutating(node) or _is_random(node):
        return True
    if _overload(node) is None:
        # Plain Python callables: only the operator module's functions are known to be pure.
        return getattr(node.target, "__module__", None) not in ("_operator", "operator", "math")
    try:
        try:
            return node.is_impure(impure_random=False)  # RNG is judged by _is_random above
        except TypeError:  # a torch whose is_impure takes no arguments
            return node.is_impure()
    except (AssertionError, RuntimeError):
        return True


def is_pure(node: torch.fx.Node) -> bool:
    """Deterministic and side-effect free: safe to merge, fold or drop."""
    if node.op != "call_function" or has_side_effects(node):
        return False
    op = _overload(node)
    return op is None or torch.Tag.nondeterministic_bitwise not in op.tags


def alias_source(node: torch.fx.Node) -> torch.fx.Node | None:
    """The input whose storage node's result shares (views, in-place results), else None."""
    if node.op != "call_function":
        return None
    if node.target is operator.getitem:
        source = node.args[0]
        if isinstance(source, torch.fx.Node) and alias_source(source) is not None:
            return alias_source(source)  # an element of split()/unbind() views the input
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
    while (source := alias_source(node)) is not None:
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
            if user not in seen and alias_source(user) is current:
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


def is_mutated(node: torch.fx.Node) -> bool:
    """Whether any op writes node's storage (through any view of it)."""
    members = set(_alias_class(node))
    return any(
        member in _written_inputs(user) for member in members for user in member.users
    )


def reaches_output(node: torch.fx.Node) -> bool:
    """Whether the graph returns node's storage (node itself or a view of it)."""
    return any(user.op == "output" for member in _alias_class(node) for user in member.users)


def _is_fresh(node: torch.fx.Node) -> bool:
    """node's storage is made by the graph each call (not an input, weight or constant)."""
    return _alias_root(node).op == "call_function"


def can_forward(node: torch.fx.Node, replacement: torch.fx.Node) -> bool:
    """May every use of node become a use of replacement without changing eager's aliasing?"""
    if is_mutated(node) or is_mutated(replacement):
        return False
    if reaches_output(node):
        # Eager returns a fresh tensor here; the replacement must be just as private.
        return _is_fresh(replacement) and not reaches_output(replacement)
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


def meta_val(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def same_tensor_meta(a: torch.fx.Node, b: torch.fx.Node) -> bool:
    """Both annotated with tensors of equal dtype, shape, strides and device."""
    va, vb = meta_val(a), meta_val(b)
    if not isinstance(va, torch.Tensor) or not isinstance(vb, torch.Tensor):
        return False
    return (va.dtype == vb.dtype and va.shape == vb.shape and va.device == vb.device
            and va.stride() == vb.stride())


def module_attr(gm: torch.nn.Module, target: str) -> Any:
    owner: Any = gm
    for item in target.split("."):
        owner = getattr(owner, item)
    return owner


def is_constant_attr(gm: torch.nn.Module, target: str) -> bool:
    """A lifted tensor constant (never a parameter or a user buffer, which may change)."""
    if not target.rsplit(".", 1)[-1].startswith(CONSTANT_PREFIX):
        return False
    value = module_attr(gm, target)
    return isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)


# ---------------------------------------------------------------------------------------------
# structural keys
# ---------------------------------------------------------------------------------------------
class _Unmatchable:
    """Key part for an argument that has no structural identity (never equal to another)."""


def structural_key(value: Any) -> Any:
    """Hashable structural key. Scalars keep their type (1, 1.0, True differ) and repr (-0.0)."""
    if isinstance(value, torch.fx.Node):
        return ("node", value)
    if isinstance(value, (bool, int, float, complex)):
        return (type(value).__name__, repr(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(structural_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, structural_key(v)) for k, v in value.items())))
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value))
    try:
        hash(value)
    except TypeError:
        return ("unhashable", _Unmatchable())
    return (type(value).__name__, value)
