"""Functionalization for the FX frontend: a callable that mutates -> one that does not.

Contract: `functionalize(fn)` returns a callable to trace with make_fx.  Inside it `fn` runs
under torch's Python functionalization (`FunctionalTensorMode`, the one AOTAutograd uses), so
every in-place op becomes its functional form and views stay views.  What `fn` wrote into its
inputs is written back at the end by one `copy_` per mutated input, and an output that aliases a
mutated input is rebuilt as a view of that input (`as_strided`), as eager returns it.

Raises `Unfunctionalizable` for programs whose eager meaning functionalization cannot
reproduce, which the caller then runs eagerly:
- a write through a tensor whose elements overlap in memory (an expanded or unfolded view,
  a stride-0 input): eager writes each memory location, functionalization would treat the
  overlapping elements as independent (torch's inverse of `expand` sums them);
- a change of an input's metadata (`t.t_()`, `resize_`, `set_`);
- a write into an input that shares memory with another input (each is functionalized alone).

`torch.func.functionalize` is not used: it loses in-place ops on an alias that is not a view
(`t.type_as(t).add_(1)`, a same-dtype `.to()`, which return `t` itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.functional_tensor import FunctionalTensor, FunctionalTensorMode
from torch.multiprocessing.reductions import StorageWeakRef


class Unfunctionalizable(Exception):
    """`fn` does something functionalization cannot express exactly (see the module doc)."""


def may_overlap(t: torch.Tensor) -> bool:
    """Whether two elements of `t` may share a memory location (conservative: True when the
    strides do not prove otherwise).  Sizes 0 and 1 never make an overlap."""
    dims = sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz > 1)
    span = 0  # one past the furthest offset the smaller-strided dims reach
    for stride, size in dims:
        if stride <= span:  # stride 0 (expand) included
            return True
        span += stride * (size - 1)
    return False


def _refuse_overlapping_writes(func: Any, args: Any, kwargs: dict[str, Any]) -> None:
    """Raise `Unfunctionalizable` if `func` writes into a tensor whose elements overlap."""
    schema = func._schema
    if not schema.is_mutable:
        return
    for i, arg in enumerate(schema.arguments):
        if arg.alias_info is None or not arg.alias_info.is_write:
            continue
        value = args[i] if i < len(args) and not arg.kwarg_only else kwargs.get(arg.name)
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(t, torch.Tensor) and may_overlap(t):
                raise Unfunctionalizable(
                    f"{func} writes through a tensor of sizes {tuple(t.shape)} and strides "
                    f"{t.stride()}, whose elements overlap in memory")


def _functional_variant(func: Any) -> Any:
    """`add.Tensor` for `add_.Tensor`: the out-of-place overload of an in-place op that writes
    its first argument (None for other ops, and for metadata ops like `t_`, whose out-of-place
    forms are views)."""
    schema = func._schema
    name = schema.name.split("::")[-1]
    if not name.endswith("_") or name.endswith("__") or not schema.arguments \
            or not schema.arguments[0].alias_info or not schema.arguments[0].alias_info.is_write:
        return None
    packet = getattr(torch.ops.aten, name[:-1], None)
    functional = getattr(packet, func._overloadname, None) if packet is not None else None
    if functional is None or functional._schema.is_mutable or functional.is_view:
        return None
    return functional


class _Functionalization(FunctionalTensorMode):
    """torch's functionalization, refusing writes through overlapping elements first (it sees
    the program's own in-place ops).  An in-place op becomes its out-of-place form and a
    `copy_` into the written tensor: eager's in-place result keeps the written tensor's
    memory layout, which the out-of-place form may not (`masked_fill` is contiguous); the
    trace's cleanup drops the copy where the layouts agree."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        _refuse_overlapping_writes(func, args, kwargs)
        functional = _functional_variant(func)
        if functional is not None and args and isinstance(args[0], FunctionalTensor):
            written = args[0]
            out = super().__torch_dispatch__(functional, types, args, kwargs)
            if isinstance(out, torch.Tensor) and out.dtype == written.dtype \
                    and out.shape == written.shape:
                return super().__torch_dispatch__(torch.ops.aten.copy_.default, types,
                                                  (written, out), {})
            # eager refuses the in-place op (a result dtype it cannot cast to, a broadcast to
            # a larger shape): let it say so
        return super().__torch_dispatch__(func, types, args, kwargs)


def _storage(t: torch.Tensor) -> StorageWeakRef:
    return StorageWeakRef(t.untyped_storage())


def functionalize(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` without mutations (see the module docstring); takes and returns what `fn` does."""
    def functional(*args: Any) -> Any:
        flat, spec = pytree.tree_flatten(args)
        with _Functionalization():
            wrapped = [FunctionalTensor.to_functional(a) if isinstance(a, torch.Tensor) else a
                       for a in flat]
            out = fn(*pytree.tree_unflatten(wrapped, spec))
        # per written storage: the input and its functional twin
        mutated: dict[StorageWeakRef, tuple[torch.Tensor, FunctionalTensor]] = {}
        storages: dict[StorageWeakRef, int] = {}
        for original, f in zip(flat, wrapped):
            if not isinstance(f, FunctionalTensor):
                continue
            torch._sync(f)
            if torch._functionalize_has_metadata_mutation(f.elem):  # type: ignore[attr-defined]
                raise Unfunctionalizable("the program changes an input's sizes or strides")
            storages[_storage(original)] = storages.get(_storage(original), 0) + 1
            if torch._functionalize_has_data_mutation(f.elem):  # type: ignore[attr-defined]
                mutated[_storage(f)] = original, f
        if any(storages[_storage(original)] > 1 for original, _ in mutated.values()):
            raise Unfunctionalizable("the program writes into an input that shares memory "
                                     "with another input")
        for original, f in zip(flat, wrapped):
            if isinstance(f, FunctionalTensor) and _storage(f) in mutated:
                original.copy_(_unwrap(f))

        def result(o: Any) -> Any:
            if not isinstance(o, FunctionalTensor):
                return o
            if _storage(o) not in mutated:
                return _unwrap(o)
            base, written = mutated[_storage(o)]
            # eager returns (a view of) the input it wrote: rebuild that view after the write.
            # Storage offsets count from functionalization's own storage, not the input's: the
            # view's is taken relative to the input's twin, both as synced (a 0-dim twin
            # written with a dtype cast keeps offset 1 while its synced views start at 0)
            inner, twin = _unwrap(o), _unwrap(written)
            if _storage(inner) != _storage(twin):
                raise Unfunctionalizable("an output is a view of a written input that "
                                         "functionalization does not place in it")
            offset = base.storage_offset() + inner.storage_offset() - twin.storage_offset()
            if (o.shape, o.stride(), offset) == (base.shape, base.stride(),
                                                 base.storage_offset()):
                return base
            return base.as_strided(o.shape, o.stride(), offset)

        return pytree.tree_map(result, out)

    return functional


def _unwrap(f: FunctionalTensor) -> torch.Tensor:
    torch._sync(f)
    return torch._from_functional_tensor(f.elem)  # type: ignore[attr-defined]
