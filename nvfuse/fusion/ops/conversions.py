"""Conversion and constant lowerings: dtype conversions (_to_copy, to, type_as,
prims.convert_element_type), copies (clone, alias, detach, positive, lift_fresh_copy, copy,
prims.copy_strided), zeros_like / ones_like / full_like / fill, and 0-dim constants
(scalar_tensor, full, new_full / new_zeros / new_ones of size ()) -> prims.

Contract: importing this module registers each lowering in the op table
(`nvfuse.fusion.ops.registry.TABLE`); each takes a `Call` and returns the result `Val`, raising
`Unsupported` for a device change, a layout, pin_memory or memory format it cannot honour, or a
`full()` whose shape is not taken from an input.
"""

from __future__ import annotations

from typing import Any

import torch

from nvfuse import dtypes
from nvfuse.fusion.builder import Unsupported, Val
from nvfuse.fusion.ir import Scalar
from nvfuse.fusion.ops.registry import Call, aten, op, register


# -- copies -----------------------------------------------------------------------------------
@register(op("positive"), aten.clone.default, aten.alias.default, aten.detach.default,
          op("lift_fresh_copy"))
def _copy(c: Call) -> Val:
    fmt = c.args.get("memory_format")
    if fmt not in (None, torch.preserve_format, torch.contiguous_format):
        raise Unsupported(f"memory_format {fmt}")
    return c.value(c.tensor("self"), c.out)


@register(op("copy_strided", ns=torch.ops.prims))
def _copy_strided(c: Call) -> Val:
    # copy_strided(a, stride): a's values with the given strides (lerp's decomposition restores
    # eager's layout so); the output's recorded layout carries the strides
    return c.value(c.tensor("a"), c.out)


@register(aten.copy.default)
def _copy_values(c: Call) -> Val:
    # copy(self, src): src's values (broadcast, cast to self's dtype) in self's layout, which
    # the output's recorded layout carries; self's values are not read
    return c.b.convert(c.tensor("src"), c.out)


# -- conversions and constants ------------------------------------------------------------------
def _check_layout(c: Call) -> None:
    layout = c.args.get("layout")
    if layout not in (None, torch.strided):
        raise Unsupported(f"layout {layout}")
    if c.args.get("pin_memory"):
        raise Unsupported("pin_memory=True")
    fmt = c.args.get("memory_format")
    if fmt not in (None, torch.preserve_format, torch.contiguous_format):
        raise Unsupported(f"memory_format {fmt}")


def _convert_to(c: Call, dtype: Any) -> Val:
    _check_layout(c)
    if c.args.get("device") is not None:
        # lower_op cannot see the input's device; the caller drops `device` when it is the
        # input's own (FakeTensor meta), so any device left here may be a change.
        raise Unsupported("conversion with a device argument")
    target = c.out if dtype is None else dtypes.from_torch(dtype)
    return c.b.convert(c.tensor("self"), target)  # eager's x.to(dtype): rounds halves


@register(aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout)
def _to_copy(c: Call) -> Val:
    return _convert_to(c, c.args.get("dtype"))


@register(aten.to.other, aten.type_as.default)
def _to_other(c: Call) -> Val:
    _check_layout(c)
    return c.b.convert(c.tensor("self"), c.tensor("other").eager)


@register(op("convert_element_type", ns=torch.ops.prims))
def _convert_element_type(c: Call) -> Val:
    return c.b.convert(c.tensor("a"), dtypes.from_torch(c["dtype"]))


def _filled(c: Call, value: Scalar) -> Val:
    # shape comes from the like-tensor (the caller records it); the value is the constant
    return c.b.const(value, c.out)


@register(aten.zeros_like.default)
def _zeros_like(c: Call) -> Val:
    _check_layout(c)
    return _filled(c, 0)


@register(aten.ones_like.default)
def _ones_like(c: Call) -> Val:
    _check_layout(c)
    return _filled(c, 1)


@register(aten.full_like.default)
def _full_like(c: Call) -> Val:
    _check_layout(c)
    return _filled(c, c.scalar("fill_value"))


@register(aten.fill.Scalar)
def _fill(c: Call) -> Val:
    # functionalized `x.fill_(v)`: full_like(x, v) in x's dtype (`self` gives the shape only)
    return _filled(c, c.scalar("value"))


def _zero_dim_const(c: Call, value: Scalar) -> Val:
    v = c.b.const(value, c.out)
    return Val(v.index, v.dtype, v.eager, zero_dim=True)


@register(aten.scalar_tensor.default)
def _scalar_tensor(c: Call) -> Val:
    _check_layout(c)
    return _zero_dim_const(c, c.scalar("s"))


@register(op("scalar_tensor", ns=torch.ops.prims))
def _prims_scalar_tensor(c: Call) -> Val:
    return _zero_dim_const(c, c.scalar("s"))


@register(aten.full.default)
def _full(c: Call) -> Val:
    _check_layout(c)
    if list(c["size"]) != []:
        raise Unsupported("full() with a shape not taken from an input")
    return _zero_dim_const(c, c.scalar("fill_value"))


def _new_constant(c: Call, value: Scalar) -> Val:
    # x.new_full((), v): 0-dim, x gives only the default dtype (c.out) and the device; the
    # graph passes rewrite it as full((), v), whose shape reads no input
    _check_layout(c)
    if list(c["size"]) != []:
        raise Unsupported(f"{c.target} with a shape of its own")
    return _zero_dim_const(c, value)


register(aten.new_full.default)(lambda c: _new_constant(c, c.scalar("fill_value")))
register(aten.new_zeros.default)(lambda c: _new_constant(c, 0))
register(aten.new_ones.default)(lambda c: _new_constant(c, 1))
