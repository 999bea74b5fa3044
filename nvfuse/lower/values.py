"""The one node-to-expression table of the lowerings: fusion-IR nodes -> kernel-IR expressions.

Input: the fusion IR, the nodes to translate (ascending: the IR is in topological order), the
expressions known so far and a `leaf` hook.  Output: `exprs` extended with every node's
expression, the declarations they need appended to `out`.

The hook gives what depends on the schedule: loads (a register array, a persistent slot, a
piece of a concatenation), random draws (their element index), values that are the same across
a row.  Every other node is a literal (CONST) or a register `v{index}` computed from its
arguments by its prim, which the emitter and the interpreter both define (one op table each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.prims import Prim
from nvfuse.lower.kir import Compute, Const, Declare, Expr, Stmt, Var

Leaf = Callable[[int, list[Stmt]], Expr | None]


def node_values(ir: FusionIR, indices: Iterable[int], exprs: dict[int, Expr], out: list[Stmt],
                leaf: Leaf) -> dict[int, Expr]:
    """Translate `indices` in order (module docstring); returns `exprs`."""
    for index in indices:
        node = ir.nodes[index]
        value = leaf(index, out)
        if value is not None:
            exprs[index] = value
        elif node.op is Prim.CONST:
            exprs[index] = Const(node.attr, node.dtype)  # type: ignore[arg-type]
        else:
            computed = Compute(node.op, tuple(exprs[a] for a in node.args), node.dtype)
            out.append(Declare(f"v{index}", node.dtype, init=computed))
            exprs[index] = Var(f"v{index}", node.dtype)
    return exprs
