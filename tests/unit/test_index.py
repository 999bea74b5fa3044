"""nvfuse/lower/index.py: the index math the pointwise, concat and reduction lowerings share."""

from __future__ import annotations

import itertools

from nvfuse.dtypes import DType
from nvfuse.lower.index import broadcast_guard, offset, split_index
from nvfuse.lower.kir import Const, Declare, Expr, IndexOp, Param, Var

I32 = DType.INT32


def _eval(e: Expr, env: dict[str, int]) -> int:
    if isinstance(e, Const):
        return int(e.value)  # type: ignore[arg-type]
    if isinstance(e, (Var, Param)):
        return env[e.name]
    assert isinstance(e, IndexOp)
    a, b = _eval(e.a, env), _eval(e.b, env)
    ops = {"+": lambda: a + b, "*": lambda: a * b, "%": lambda: a % b, "/": lambda: a // b,
           "==": lambda: int(a == b), "&&": lambda: int(bool(a) and bool(b))}
    return ops[e.op]()


def test_split_offset_and_guard_agree_with_row_major_indexing() -> None:
    sizes = [3, 4, 5]
    stmts: list = []
    indices = split_index(Var("n", I32), [Param("s1", I32), Param("s2", I32)], 3, I32, stmts)
    assert [s.name for s in stmts] == ["i2", "q2", "i1", "q1"]
    strides = [Param("t0", I32), Const(0, I32), Const(1, I32)]
    off = offset(indices, strides, I32)
    guard = broadcast_guard("s01", indices, I32)
    for n, (i, j, k) in enumerate(itertools.product(*map(range, sizes))):
        env = {"n": n, "s1": 4, "s2": 5, "t0": 7}
        for s in stmts:
            assert isinstance(s, Declare) and s.init is not None
            env[s.name] = _eval(s.init, env)
        assert [_eval(x, env) for x in indices] == [i, j, k]
        assert _eval(off, env) == 7 * i + k
        assert guard is not None and _eval(guard, env) == (j == 0)
    assert offset(indices, [Const(0, I32)] * 3, I32) == Const(0, I32)
    assert broadcast_guard("s1", indices, I32) is None
