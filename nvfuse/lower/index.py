"""Index math every lowering shares: linear index -> per-dim indices, offsets, broadcast guards.

Input: kernel-IR expressions (a linear index, sizes and strides as `Param`s or `Const`s).
Output: expressions and the declarations they need, with stable register names (goldens).

- `split_index`: the per-dim indices of a linear index over merged dims, innermost fastest
  (`{index}{d}` = rest % size, `{quotient}{d}` = rest / size; dim 0 is the last quotient, so
  its size is never needed);
- `offset`: sum(index * stride) over dims, skipping stride 0 and multiplying by 1 never;
- `broadcast_guard`: where an operand that broadcasts along some dims (stride class "0") is
  stored: the threads whose index is 0 along all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from nvfuse.dtypes import DType
from nvfuse.lower.kir import Const, Declare, Expr, IndexOp, Stmt, Var


def split_index(linear: Expr, sizes: Sequence[Expr], rank: int, idx: DType, out: list[Stmt],
                index: str = "i", quotient: str = "q") -> list[Expr]:
    """Per-dim indices of `linear` (`sizes` = the sizes of dims 1..rank-1), declarations
    appended to `out`."""
    if rank == 0:
        return []
    indices: list[Expr] = [Const(0, idx)] * rank
    rest = linear
    for d in range(rank - 1, 0, -1):
        size = sizes[d - 1]
        out.append(Declare(f"{index}{d}", idx, init=IndexOp("%", rest, size, idx)))
        indices[d] = Var(f"{index}{d}", idx)
        out.append(Declare(f"{quotient}{d}", idx, init=IndexOp("/", rest, size, idx)))
        rest = Var(f"{quotient}{d}", idx)
    indices[0] = rest
    return indices


def offset(indices: Sequence[Expr], strides: Sequence[Expr], idx: DType) -> Expr:
    """sum(index * stride) (terms of stride 0 skipped, stride 1 not multiplied)."""
    expr: Expr | None = None
    for i, s in zip(indices, strides):
        if isinstance(s, Const) and s.value == 0:
            continue
        term = i if isinstance(s, Const) and s.value == 1 else IndexOp("*", i, s, idx)
        expr = term if expr is None else IndexOp("+", expr, term, idx)
    return expr if expr is not None else Const(0, idx)


def broadcast_guard(classes: Sequence[str], indices: Sequence[Expr], idx: DType) -> Expr | None:
    """indices[d] == 0 for every dim d of stride class "0", and-ed; None if there is none."""
    cond: Expr | None = None
    for c, i in zip(classes, indices):
        if c == "0":
            term = IndexOp("==", i, Const(0, idx), DType.BOOL)
            cond = term if cond is None else IndexOp("&&", cond, term, DType.BOOL)
    return cond
