"""The op-table registry and the `Call` every lowering receives.

Contract:
    register(*targets)(fn)      fn: Call -> Val becomes the lowering of each OpOverload target
                                (None targets, ops this torch lacks, are skipped)
    TABLE                       OpOverload -> lowering, filled by importing the lowering modules
                                (`nvfuse.fusion.optable` imports them all)
    op(name, overload, ns) / ops(name, *overloads)   OpOverloads by name, None where missing
    Call                        one op application: builder, arguments by schema name, eager's
                                result dtype, and the operand / compute helpers lowerings share
Plus the numeric helpers more than one lowering module uses (literal, const_of, held,
binary_same, float_input).  Operand conversion follows eager as `nvfuse.fusion.optable`'s
docstring describes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder, Unsupported, Val, result_type
from nvfuse.fusion.ir import Scalar
from nvfuse.fusion.prims import Prim

aten = torch.ops.aten
P = Prim
F32 = DType.FLOAT32
F64 = DType.FLOAT64
BOOL = DType.BOOL
Operand = Val | Scalar


# -- the call being lowered ------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One op application: the builder, the bound arguments (by schema name, defaults
    filled in) and eager's result dtype."""

    b: Builder
    target: Any
    args: dict[str, Any]
    out: DType

    def __getitem__(self, name: str) -> Any:
        return self.args[name]

    # -- operands ----------------------------------------------------------------------------
    def tensor(self, name: str) -> Val:
        v = self.args[name]
        if not isinstance(v, Val):
            raise Unsupported(f"argument {name!r} is not a fused tensor: {v!r}")
        return v

    def scalar(self, name: str) -> Scalar:
        return literal(self.args[name], name)

    def operand(self, name: str) -> Operand:
        """A tensor-or-scalar operand (aten's `Scalar` arguments that take part in promotion)."""
        v = self.args[name]
        return v if isinstance(v, Val) else literal(v, name)

    def value(self, x: Operand, dt: DType) -> Val:
        """Operand `x` as eager holds it in common dtype `dt`, typed in `dt.compute`."""
        if isinstance(x, Val):
            if x.eager is dt:
                return self.b.cast(x, dt.compute)
            return self.b.convert(x, dt)  # rounds a float32-kept half as eager holds it
        return self.b.const(x, dt)

    def opmath(self, value: Scalar, dt: DType) -> Val:
        """A scalar parameter read as `Scalar::to<opmath_t>()` for common dtype `dt`."""
        return self.b.const(value, dt.compute)

    # -- compute -----------------------------------------------------------------------------
    def p(self, op: Prim, *args: Val) -> Val:
        return self.b.prim(op, *args)

    def where(self, cond: Val, a: Val, b: Val) -> Val:
        return self.b.prim(P.WHERE, cond, a, b)

    def common(self, *xs: Operand) -> DType:
        """torch's n-ary promotion over the operands (DEFAULT kind)."""
        return result_type(*xs)

    def float_out(self) -> DType:
        if not self.out.is_float:
            raise Unsupported(f"result dtype {self.out} is not floating point")
        return self.out


Lowering = Callable[[Call], Val]
TABLE: dict[Any, Lowering] = {}


def register(*targets: Any) -> Callable[[Lowering], Lowering]:
    """Register `fn` as the lowering of each OpOverload in `targets` (missing ones skipped,
    so the table works across torch versions)."""

    def deco(fn: Lowering) -> Lowering:
        for t in targets:
            if t is not None:
                TABLE[t] = fn
        return fn

    return deco


def op(name: str, overload: str = "default", ns: Any = aten) -> Any:
    """torch.ops.<ns>.<name>.<overload>, or None where this torch lacks it."""
    packet = getattr(ns, name, None)
    return getattr(packet, overload, None) if packet is not None else None


def ops(name: str, *overloads: str) -> list[Any]:
    return [op(name, o) for o in overloads]


# -- helpers shared by the lowering modules ---------------------------------------------------
def literal(value: Any, name: str) -> Scalar:
    """A Python number usable as a literal (not complex, not symbolic, not a tensor)."""
    if isinstance(value, (bool, int, float)) and not isinstance(value, complex):
        return value
    raise Unsupported(f"argument {name!r} is not a literal real scalar: {value!r}")


def const_of(value: float, dt: DType) -> float:
    """`value` rounded to the compute dtype of `dt` (how C++ holds an opmath constant)."""
    return float(np.float64(value)) if dt.compute is F64 else float(np.float32(value))


def held(c: Call, x: Val) -> Val:
    """`x` as eager holds it in memory, in its compute dtype: a float32-kept half is rounded to
    its dtype first.  Used where a result is discontinuous in that rounding (overflow to inf)."""
    if x.eager.is_reduced_float and x.dtype is F32:
        x = c.b.cast(x, x.eager)
    return c.b.cast(x, x.eager.compute)


def binary_same(
    op: Prim, *, floats: bool = True, ints: bool = True, bools: bool = True
) -> Lowering:
    """Lowering of a binary op computed in the common (= result) dtype."""

    def lower(c: Call) -> Val:
        dt = c.out
        allowed = floats if dt.is_float else ints if dt.is_int else bools
        if not allowed:
            raise Unsupported(f"{c.target} on {dt}")
        return c.p(op, c.value(c.operand("self"), dt), c.value(c.operand("other"), dt))

    return lower


def float_input(c: Call) -> tuple[Val, DType]:
    dt = c.float_out()
    return c.value(c.tensor("self"), dt), dt
