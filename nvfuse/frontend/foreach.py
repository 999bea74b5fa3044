"""Foreach ops as per-tensor ops: `aten._foreach_<op>.<overload>` -> one `aten.<op>` per tensor.

Contract: `foreach_decompositions()` is a decomposition table (OpOverload -> callable) for
make_fx.  Each entry takes the foreach op's arguments and returns the list eager returns, built
from one call of the per-tensor op per list position: a `Tensor[]` argument gives its i-th
tensor, a `Scalar[]` its i-th number, any other argument (a `Tensor other` broadcast to every
list entry, a `Scalar`, `alpha`) is passed as it is.  The table is built from the schemas, not
written per op: the per-tensor overload is the first functional overload of `aten.<op>` that
takes every argument by the foreach schema's name, or, for the names it lacks, the remaining
parameters in schema order (`scalars` -> `value` for addcmul, `tensors1` -> `end` for lerp,
`scalar` -> `other`), with a matching kind (tensor for tensor, number for number) and defaults
for the rest.  Foreach ops without such an overload (`addcmul.Tensor`, whose per-tensor scalars
live in a tensor eager reads on the host; `powsum`) get no entry and stay eager.

Why: an optimizer's foreach path applies each step of its update to every parameter in one
launch; fused per parameter instead, the whole update of one parameter (every step) becomes one
pointwise group, which is fewer kernels and far fewer bytes (the horizontal stage then bundles
the per-parameter groups).  Numerics are the per-tensor ops', which eager's foreach kernels
share (the same opmath formulas, per element).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten

# per-tensor ops whose name is not (only) the foreach op's name without its prefix: a norm is
# linalg_vector_norm; eager's maximum / minimum with a scalar are clamp_min / clamp_max
_PER_TENSOR = {"norm": ("linalg_vector_norm",), "maximum": ("maximum", "clamp_min"),
               "minimum": ("minimum", "clamp_max")}


def _kind(t: Any) -> str:
    """'tensor_list', 'scalar_list', 'tensor', 'scalar' or the type's own name for a schema
    argument type (optional or not)."""
    text = str(t)
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional["):-1]
    if text in ("Tensor[]", "List[Tensor]"):
        return "tensor_list"
    if text in ("Scalar[]", "List[Scalar]", "List[number]"):
        return "scalar_list"
    if text == "Tensor":
        return "tensor"
    if text in ("Scalar", "number", "float", "int"):
        return "scalar"
    return text


def _element_kind(kind: str) -> str:
    return {"tensor_list": "tensor", "scalar_list": "scalar"}.get(kind, kind)


def _bind_names(foreach: Any, single: Any) -> dict[str, str] | None:
    """foreach argument name -> per-tensor argument name, or None where `single` cannot take
    the foreach op's arguments (see the module docstring)."""
    params = {a.name: a for a in single._schema.arguments}
    names: dict[str, str] = {}
    unmatched = []
    for arg in foreach._schema.arguments:
        if arg.name in params:
            names[arg.name] = arg.name
        else:
            unmatched.append(arg)
    rest = [a for a in single._schema.arguments if a.name not in names.values()]
    for arg in unmatched:
        if not rest:
            return None
        names[arg.name] = rest.pop(0).name
    given = set(names.values())
    for a in single._schema.arguments:
        if a.name not in given and not a.has_default_value():
            return None
    for arg in foreach._schema.arguments:
        if _element_kind(_kind(arg.type)) != _kind(params[names[arg.name]].type):
            return None
    return names


def _per_tensor(foreach: Any) -> tuple[Any, dict[str, str]] | None:
    """The per-tensor overload of `foreach` and the argument renaming, or None."""
    name = foreach._schema.name.split("::")[-1][len("_foreach_"):]
    for candidate in _PER_TENSOR.get(name, (name,)):
        packet = getattr(aten, candidate, None)
        for overload in packet.overloads() if packet is not None else ():
            single = getattr(packet, overload)
            if single._schema.is_mutable or any(a.kwarg_only and a.name == "out"
                                                for a in single._schema.arguments):
                continue
            names = _bind_names(foreach, single)
            if names is not None:
                return single, names
    return None


def _decomposition(foreach: Any, single: Any, names: dict[str, str]) -> Callable[..., Any]:
    schema = foreach._schema
    lists = {a.name for a in schema.arguments if _kind(a.type) in ("tensor_list", "scalar_list")}

    def run(*args: Any, **kwargs: Any) -> list[Any]:
        bound: dict[str, Any] = {}
        for arg, value in zip(schema.arguments, args):
            bound[arg.name] = value
        bound.update(kwargs)
        lengths = {len(bound[n]) for n in lists if n in bound}
        if len(lengths) != 1:
            return NotImplemented  # eager reports the mismatch
        (n,) = lengths
        results = []
        for i in range(n):
            call = {names[k]: (v[i] if k in lists else v) for k, v in bound.items()}
            results.append(single(**call))
        return results

    return run


@functools.cache
def foreach_decompositions() -> dict[Any, Callable[..., Any]]:
    """The decomposition table (see the module docstring)."""
    table: dict[Any, Callable[..., Any]] = {}
    for schema in torch._C._jit_get_all_schemas():
        name = schema.name
        if not name.startswith("aten::_foreach_") or name.endswith("_") \
                or schema.overload_name.endswith("out"):
            continue
        packet = getattr(aten, name.split("::")[-1], None)
        foreach = getattr(packet, schema.overload_name or "default", None) \
            if packet is not None else None
        if foreach is None or foreach in table:
            continue
        found = _per_tensor(foreach)
        if found is not None:
            table[foreach] = _decomposition(foreach, *found)
    return table
