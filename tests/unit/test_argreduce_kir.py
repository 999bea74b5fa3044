"""The (value, index) pair reduction of the kernel IR (`ArgReduce`), alone: the pair rule
(`arg_prefer`: NaN first, equal values -> smaller index) is a strict order, so the combine is
associative and commutative; warp and block ArgReduce in the interpreter against a brute-force
argmax / argmin over every thread's pair, with ties and NaNs spread across lanes and warps; the
lowering's prim-written rule (`prefers`) agreeing with it; the node's contract checks, the
printer, and the emitted CUDA compiled by NVRTC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import nvfuse
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.dtypes import DType
from nvfuse.interpret.fusion_eval import literal
from nvfuse.interpret.machine import run_kernel
from nvfuse.interpret.prims_np import apply_prim
from nvfuse.interpret.reduce import arg_combine, arg_prefer
from nvfuse.lower.argreduce import prefers
from nvfuse.lower.kir import (
    ARG_NO_INDEX,
    ArgReduce,
    Assign,
    Compute,
    Const,
    Declare,
    Elem,
    Expr,
    If,
    IndexOp,
    Kernel,
    Load,
    ReduceOp,
    ReduceScope,
    Shared,
    Special,
    Store,
    TensorParam,
    Var,
    print_kernel,
)

I64, F32, F64, BOOL = DType.INT64, DType.FLOAT32, DType.FLOAT64, DType.BOOL
NAN = float("nan")


def _brute(values: np.ndarray, index: np.ndarray, is_max: bool) -> tuple[float, int]:
    """The preferred pair by direct comparison with every other pair."""
    best = 0
    for j in range(1, len(values)):
        if arg_prefer((values[j], index[j]), (values[best], index[best]), is_max):
            best = j
    return values[best], int(index[best])


@pytest.mark.parametrize("is_max", [True, False])
def test_pair_rule_is_a_strict_order(is_max: bool) -> None:
    values = np.array([1.0, 1.0, NAN, NAN, -np.inf, np.inf, -0.0, 0.0])
    pairs = [(np.float64(v), np.int64(i)) for i, v in enumerate(values)]
    combine = arg_combine(is_max)
    for a, b in itertools.permutations(pairs, 2):
        assert bool(arg_prefer(a, b, is_max)) != bool(arg_prefer(b, a, is_max))
        assert tuple(map(int, combine(a, b)[1:])) == tuple(map(int, combine(b, a)[1:]))
    for a, b, c in itertools.permutations(pairs, 3):  # associativity of the index
        left, right = combine(combine(a, b), c), combine(a, combine(b, c))
        assert int(left[1]) == int(right[1])
    nan_first = combine(pairs[3], combine(pairs[0], pairs[2]))
    assert int(nan_first[1]) == 2  # the first NaN wins
    assert int(combine(pairs[1], pairs[0])[1]) == 0  # a tie goes to the first index


def _kernel(dtype: DType, op: ReduceOp, scope: ReduceScope, block: int) -> Kernel:
    """value[0], index[0] = the arg-reduction of (x[tid], idx[tid]) over the block's threads
    (or over warp 0's, for WARP); the other tensors hold the per-block result."""
    tid = Special("threadIdx.x", I64)
    zero = Const(0, DType.INT32)
    v, i = Var("v", dtype), Var("i", I64)
    body = [Declare("xv", dtype, 1), Load("xv", dtype, "x", tid, 1, False),
            Declare("xi", I64, 1), Load("xi", I64, "idx", tid, 1, False),
            Declare("v", dtype), Declare("i", I64)]
    scratch: tuple[str | None, str | None] = (None, None)
    if scope is ReduceScope.BLOCK:
        body += [Shared("sv", dtype, block // 32), Shared("si", I64, block // 32)]
        scratch = ("sv", "si")
    body.append(ArgReduce(v, i, Elem("xv", zero, dtype), Elem("xi", zero, I64), op, scope,
                          *scratch))
    first = IndexOp("==", tid, Const(0, I64), BOOL)
    body.append(If(first, (Declare("ov", dtype, 1), Assign(Elem("ov", zero, dtype), v),
                           Store("out_v", dtype, Const(0, I64), "ov", 1, False),
                           Declare("oi", I64, 1), Assign(Elem("oi", zero, I64), i),
                           Store("out_i", I64, Const(0, I64), "oi", 1, False))))
    tensors = (TensorParam("x", dtype, False, dtype.itemsize), TensorParam("idx", I64, False, 8),
               TensorParam("out_v", dtype, True, dtype.itemsize),
               TensorParam("out_i", I64, True, 8))
    name = f"arg_{op.value}_{scope.value}_{dtype}_{block}"
    return Kernel(name, tensors, (), tuple(body), block, Const(1, I64), I64)


def _data(dtype: DType, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (n,), generator=g).to(dtype.torch)  # many ties
    if dtype.is_float and seed % 2:
        x[torch.randint(0, n, (3,), generator=g)] = NAN
    index = torch.randperm(n, generator=g)  # indices not in lane order
    index[torch.randint(0, n, (4,), generator=g)] = ARG_NO_INDEX  # threads with no data
    if dtype.is_float:
        x[index == ARG_NO_INDEX] = -float("inf")
    return x, index


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [F32, F64, I64], ids=str)
@pytest.mark.parametrize("op", [ReduceOp.MAX, ReduceOp.MIN], ids=lambda o: o.value)
@pytest.mark.parametrize(("scope", "block"), [(ReduceScope.WARP, 32), (ReduceScope.BLOCK, 96),
                                              (ReduceScope.BLOCK, 1024)], ids=str)
def test_interpreter_matches_brute_force(scope: ReduceScope, block: int, op: ReduceOp,
                                         dtype: DType, seed: int) -> None:
    x, index = _data(dtype, block, seed)
    out_v, out_i = torch.zeros(1, dtype=dtype.torch), torch.zeros(1, dtype=torch.int64)
    run_kernel(_kernel(dtype, op, scope, block), [x, index, out_v, out_i], [], 1)
    n = 32 if scope is ReduceScope.WARP else block
    value, idx = _brute(x[:n].numpy(), index[:n].numpy(), op is ReduceOp.MAX)
    assert int(out_i) == idx
    assert np.array_equal(out_v.numpy(), np.array([value], dtype=out_v.numpy().dtype),
                          equal_nan=True)


@pytest.mark.parametrize("dtype", [F32, I64], ids=str)
@pytest.mark.parametrize("is_max", [True, False])
def test_prim_rule_agrees_with_the_combine(dtype: DType, is_max: bool) -> None:
    """`prefers` (what each thread's update runs) is `arg_prefer` (what the combine runs)."""
    raw = [1.0, 2.0, NAN, -np.inf] if dtype.is_float else [1, 2, -5]
    pairs = [(v, i) for v in raw for i in (0, 3)]
    a_v, a_i, b_v, b_i = (Var(n, t) for n, t in (("a", dtype), ("ai", I64), ("b", dtype),
                                                 ("bi", I64)))
    rule = prefers(a_v, a_i, b_v, b_i, is_max)
    for (av, ai), (bv, bi) in itertools.product(pairs, pairs):
        env = {"a": literal(av, dtype), "ai": literal(ai, I64), "b": literal(bv, dtype),
               "bi": literal(bi, I64)}
        got = _evaluate(rule, env)
        want = arg_prefer((env["a"], env["ai"]), (env["b"], env["bi"]), is_max)
        assert bool(got) == bool(want), (av, ai, bv, bi)


def _evaluate(e: Expr, env: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Const):
        return literal(e.value, e.dtype)
    assert isinstance(e, Compute)
    args = [_evaluate(a, env) for a in e.args]
    operand = e.args[1].dtype if e.prim.value == "where" else e.args[0].dtype
    return apply_prim(e.prim, args, operand, e.dtype)


def test_contract_checks_and_printer() -> None:
    v, i = Var("v", F32), Var("i", I64)
    with pytest.raises(ValueError, match="MAX or MIN"):
        ArgReduce(v, i, v, i, ReduceOp.SUM, ReduceScope.WARP)
    with pytest.raises(ValueError, match="two scratch arrays"):
        ArgReduce(v, i, v, i, ReduceOp.MAX, ReduceScope.BLOCK, "s")
    with pytest.raises(ValueError, match="expected int64"):
        ArgReduce(v, Var("j", F32), v, i, ReduceOp.MAX, ReduceScope.WARP)
    text = print_kernel(_kernel(F32, ReduceOp.MIN, ReduceScope.BLOCK, 64))
    assert "(v, i) = block_argmin(xv[0:int32], xi[0:int32]) scratch $sv $si" in text


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_emitted_cuda_compiles(arch: str) -> None:
    for dtype, op, (scope, block) in itertools.product(
            (F32, F64, I64), (ReduceOp.MAX, ReduceOp.MIN),
            ((ReduceScope.WARP, 32), (ReduceScope.BLOCK, 256))):
        source = emit_cuda(_kernel(dtype, op, scope, block))
        fn = "nvf_block_argreduce" if scope is ReduceScope.BLOCK else "nvf_warp_argreduce"
        assert f"{fn}<{'true' if op is ReduceOp.MAX else 'false'}, {dtype.c_type}>" in source
        assert nvfuse.compile_source(source, arch=arch)[:4] == b"\x7fELF"
