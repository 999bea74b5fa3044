"""The kernel-IR machine and the fusion-IR evaluator on hand-built IR, against torch."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, Node, Output, TensorInput, verify_fusion
from nvfuse.fusion.prims import Prim
from nvfuse.interpret.bf16 import bf16_to_f32, f32_to_bf16
from nvfuse.interpret.fusion_eval import evaluate
from nvfuse.interpret.machine import InterpretError, launch_grid, run_kernel
from nvfuse.lower.kir import (
    Assign,
    Comment,
    Compute,
    Const,
    Declare,
    Elem,
    Expr,
    For,
    If,
    IndexOp,
    Kernel,
    Load,
    Param,
    Special,
    Stmt,
    Store,
    TensorParam,
    Var,
)

I64, I32, F32, BF16, BOOL = DType.INT64, DType.INT32, DType.FLOAT32, DType.BFLOAT16, DType.BOOL


# -- little IR builders --------------------------------------------------------------------


def op(o: str, a: Expr, b: Expr, dtype: DType = I64) -> IndexOp:
    return IndexOp(o, a, b, BOOL if o in ("<", "<=", "==", "!=", "&&", "||") else dtype)


def c(value: int, dtype: DType = I64) -> Const:
    return Const(value, dtype)


def global_thread(dtype: DType = I64) -> Expr:
    """blockIdx.x * blockDim.x + threadIdx.x"""
    block = op("*", Special("blockIdx.x", dtype), Special("blockDim.x", dtype), dtype)
    return op("+", block, Special("threadIdx.x", dtype), dtype)


def kernel(name: str, tensors: list[TensorParam], scalars: list[Param], body: list[Stmt],
           block: int = 128, index: DType = I64) -> Kernel:
    return Kernel(name, tuple(tensors), tuple(scalars), tuple(body), block,
                  Param(scalars[0].name, index) if scalars else c(1), index)


def vector_copy(dtype: DType = F32, lanes: int = 4, align: int = 16) -> Kernel:
    """y[base:base+lanes] = x[base:base+lanes] for base = 4 * thread, if base < n."""
    n = Param("n", I64)
    base = Var("base", I64)
    return kernel("copy",
                  [TensorParam("x", dtype, False, align), TensorParam("y", dtype, True, align)],
                  [n], [
                      Declare("base", I64, init=op("*", global_thread(), c(lanes))),
                      If(op("<", base, n), (
                          Declare("v", dtype, lanes),
                          Load("v", dtype, "x", base, lanes, vector=True),
                          Store("y", dtype, base, "v", lanes, vector=True),
                      )),
                  ])


def grid_for(numel: int, block: int, per_thread: int) -> int:
    return max(1, -(-numel // (block * per_thread)))


# -- vectorised copy -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F32, BF16, DType.FLOAT16, DType.INT64, BOOL], ids=str)
def test_vector_copy_with_predicate(dtype: DType) -> None:
    numel = 4 * 1000  # the last block is partly idle: the predicate must hold them back
    lanes = 4
    k = vector_copy(dtype, lanes, align=lanes * dtype.itemsize)
    x = (torch.randn(numel) * 100).to(dtype.torch)
    y = torch.empty_like(x)
    run_kernel(k, [x, y], [numel], grid_for(numel, k.block, lanes))
    assert torch.equal(y, x)


def test_misaligned_vector_load_pointer() -> None:
    storage = torch.randn(4 * 65)
    x = storage[1:]  # data pointer 4 bytes past a 16-byte boundary
    y = torch.empty(4 * 64)
    k = vector_copy(F32, 4, align=4)
    with pytest.raises(InterpretError, match="misaligned vector load of x"):
        run_kernel(k, [x[: 4 * 64], y], [4 * 64], 1)


def test_misaligned_vector_offset() -> None:
    n = Param("n", I64)
    off = op("+", op("*", global_thread(), c(4)), c(2))  # base + 2: not a multiple of 4
    k = kernel("bad", [TensorParam("x", F32, False, 16), TensorParam("y", F32, True, 16)], [n], [
        Declare("v", F32, 4),
        If(op("<", op("+", off, c(4)), op("+", n, c(1))), (
            Load("v", F32, "x", off, 4, vector=True),
        )),
    ])
    with pytest.raises(InterpretError, match=r"misaligned vector load of x: thread .* offset 2"):
        run_kernel(k, [torch.randn(64), torch.empty(64)], [64], 1)


def test_broken_alignment_promise() -> None:
    x = torch.randn(65)[1:]
    with pytest.raises(InterpretError, match="16-byte alignment"):
        run_kernel(vector_copy(F32, 4, align=16), [x, torch.empty(64)], [64], 1)


def test_out_of_bounds_store_names_tensor_thread_and_offset() -> None:
    n = Param("n", I64)
    i = Var("i", I64)
    k = kernel("oob", [TensorParam("x", F32, False, 4), TensorParam("y", F32, True, 4)], [n], [
        Declare("i", I64, init=global_thread()),
        Declare("v", F32, 1),
        Load("v", F32, "x", op("%", i, n), 1, vector=False),  # in bounds
        Store("y", F32, i, "v", 1, vector=False),  # no predicate: threads >= n overflow y
    ], block=32)
    y = torch.zeros(40)
    with pytest.raises(InterpretError, match=r"out-of-bounds store of y: thread \(blockIdx 1, "
                                             r"threadIdx 8\) offset 40"):
        run_kernel(k, [torch.randn(40), y], [40], 2)


def test_out_of_bounds_load_is_caught_but_inactive_threads_are_free() -> None:
    n = Param("n", I64)
    i = Var("i", I64)
    body: list[Stmt] = [
        Declare("i", I64, init=global_thread()),
        Declare("v", F32, 1),
        If(op("<", i, n), (Load("v", F32, "x", i, 1, False), Store("y", F32, i, "v", 1, False))),
    ]
    tensors = [TensorParam("x", F32, False, 4), TensorParam("y", F32, True, 4)]
    x, y = torch.randn(100), torch.zeros(100)
    run_kernel(kernel("ok", tensors, [n], body), [x, y], [100], 4)  # 512 threads, 100 active
    assert torch.equal(x, y)
    with pytest.raises(InterpretError, match="out-of-bounds load of x"):
        run_kernel(kernel("bad", tensors, [n], body), [x[:50], y], [100], 4)


def test_store_to_input_is_rejected() -> None:
    k = kernel("w", [TensorParam("x", F32, False, 4)], [Param("n", I64)], [
        Declare("v", F32, 1),
        Assign(Elem("v", c(0), F32), Const(1.0, F32)),
        Store("x", F32, Special("threadIdx.x", I64), "v", 1, False),
    ], block=4)
    with pytest.raises(InterpretError, match="store to input tensor x"):
        run_kernel(k, [torch.zeros(4)], [4], 1)


# -- strided / broadcast pointwise with explicit index math ---------------------------------


def broadcast_add(index: DType) -> Kernel:
    """out[i, j] = cast<f32>(a[i, j]) + b[i, j] over sizes (s0, s1) with explicit strides;
    bf16 out, one element per thread, grid-stride loop (per-thread loop bounds)."""
    p = {name: Param(name, index) for name in ("n", "s1", "a0", "a1", "b0", "b1", "o0", "o1")}
    k = Var("k", index)
    i, j = Var("i", index), Var("j", index)

    def offset(s0: str, s1: str) -> Expr:
        return op("+", op("*", i, p[s0], index), op("*", j, p[s1], index), index)

    stride = op("*", Special("gridDim.x", index), Special("blockDim.x", index), index)
    body: list[Stmt] = [
        Comment("grid-stride loop"),
        For(k, global_thread(index), p["n"], stride, (
            Declare("i", index, init=op("/", k, p["s1"], index)),
            Declare("j", index, init=op("%", k, p["s1"], index)),
            Declare("a", BF16, 1), Declare("b", F32, 1), Declare("r", BF16, 1),
            Load("a", BF16, "a", offset("a0", "a1"), 1, False),
            Load("b", F32, "b", offset("b0", "b1"), 1, False),
            Assign(Elem("r", c(0, index), BF16), Compute(Prim.CAST, (
                Compute(Prim.ADD, (Compute(Prim.CAST, (Elem("a", c(0, index), BF16),), F32),
                                   Elem("b", c(0, index), F32)), F32),), BF16)),
            Store("out", BF16, offset("o0", "o1"), "r", 1, False),
        )),
    ]
    tensors = [TensorParam("a", BF16, False, 2), TensorParam("b", F32, False, 4),
               TensorParam("out", BF16, True, 2)]
    return Kernel("badd", tuple(tensors), tuple(p.values()), tuple(body), 64, c(1, index), index)


@pytest.mark.parametrize("index", [I32, I64], ids=str)
def test_strided_broadcast_add(index: DType) -> None:
    big = torch.randn(40, 30).bfloat16()
    a = big[3:, 2:].t()  # (28, 37): transposed, storage offset, non-contiguous
    b = torch.randn(28, 1).expand(28, 37)  # broadcast: stride 0 along dim 1
    out = torch.full((37, 28), float("nan"), dtype=torch.bfloat16).t()  # strided output
    s0, s1 = a.shape
    scalars = [s0 * s1, s1, *a.stride(), *b.stride(), *out.stride()]
    run_kernel(broadcast_add(index), [a, b, out], scalars, grid=3)  # fewer threads than elements
    assert torch.equal(out, (a.float() + b).bfloat16())


# -- divergence, scoping, lanes -------------------------------------------------------------


def test_masked_assign_and_scoping() -> None:
    """Threads with odd id take one branch; an inner declaration shadows an outer one."""
    t = Special("threadIdx.x", I64)
    x = Var("x", F32)
    k = kernel("div", [TensorParam("y", F32, True, 4)], [], [
        Declare("x", F32, init=Const(1.0, F32)),
        If(op("==", op("%", t, c(2)), c(1)), (
            Assign(x, Compute(Prim.ADD, (x, Const(10.0, F32)), F32)),
            Declare("x", F32, init=Const(-5.0, F32)),  # shadows until the end of the If
            Assign(x, Const(-6.0, F32)),
        )),
        Declare("r", F32, 2),
        For(Var("l", I64), c(0), c(2), c(1), (
            Assign(Elem("r", Var("l", I64), F32),
                   Compute(Prim.MUL, (x, Compute(Prim.CAST, (Var("l", I64),), F32)), F32)),
        ), unroll=True),
        Store("y", F32, op("*", t, c(2)), "r", 2, vector=True),
    ], block=8)
    y = torch.zeros(16)
    run_kernel(k, [y], [], 1)
    want = torch.tensor([[0.0, 1.0] if i % 2 == 0 else [0.0, 11.0] for i in range(8)]).ravel()
    assert torch.equal(y, want)


def test_masked_load_keeps_inactive_registers() -> None:
    t = Special("threadIdx.x", I64)
    k = kernel("keep", [TensorParam("x", F32, False, 4), TensorParam("y", F32, True, 4)], [], [
        Declare("v", F32, 1),
        Assign(Elem("v", c(0), F32), Const(7.0, F32)),
        If(op("<", t, c(2)), (Load("v", F32, "x", t, 1, False),)),
        Store("y", F32, t, "v", 1, False),
    ], block=4)
    y = torch.zeros(4)
    run_kernel(k, [torch.tensor([1.0, 2.0]), y], [], 1)
    assert y.tolist() == [1.0, 2.0, 7.0, 7.0]


def test_uniform_load_of_a_scalar_tensor() -> None:
    t = Special("threadIdx.x", I64)
    k = kernel("bcast", [TensorParam("s", F32, False, 4), TensorParam("y", F32, True, 4)], [], [
        Declare("v", F32, 1),
        Load("v", F32, "s", c(0), 1, False),
        Store("y", F32, t, "v", 1, False),
    ], block=5)
    y = torch.zeros(5)
    run_kernel(k, [torch.tensor(3.5), y], [], 1)
    assert y.tolist() == [3.5] * 5


def test_bad_lane_and_undeclared_names_raise() -> None:
    k = kernel("lane", [TensorParam("y", F32, True, 4)], [], [
        Declare("v", F32, 2), Assign(Elem("v", c(2), F32), Const(0.0, F32))], block=1)
    with pytest.raises(InterpretError, match="lane 2 out of range"):
        run_kernel(k, [torch.zeros(1)], [], 1)
    k = kernel("undeclared", [TensorParam("y", F32, True, 4)], [], [
        Assign(Var("q", F32), Const(0.0, F32))], block=1)
    with pytest.raises(InterpretError, match="undeclared register 'q'"):
        run_kernel(k, [torch.zeros(1)], [], 1)


# -- speed ---------------------------------------------------------------------------------


def pointwise_chain(lanes: int = 4) -> Kernel:
    """y = tanh(x * 2 + 1) * sigmoid-ish chain: ~10 float ops per element, bf16 in/out."""
    n = Param("n", I64)
    base = Var("base", I64)
    lane = Var("l", I64)

    def f(prim: Prim, *args: Expr) -> Compute:
        return Compute(prim, args, F32)

    x = Var("xf", F32)
    value = f(Prim.MUL, f(Prim.TANH, f(Prim.ADD, f(Prim.MUL, x, Const(2.0, F32)),
                                      Const(1.0, F32))),
              f(Prim.RECIPROCAL, f(Prim.ADD, Const(1.0, F32), f(Prim.EXP, f(Prim.NEG, x)))))
    value = f(Prim.MAXIMUM, f(Prim.SUB, value, Const(0.25, F32)), f(Prim.ABS, x))
    return kernel("chain", [TensorParam("x", BF16, False, 8), TensorParam("y", BF16, True, 8)],
                  [n], [
                      Declare("base", I64, init=op("*", global_thread(), c(lanes))),
                      If(op("<", base, n), (
                          Declare("a", BF16, lanes), Declare("r", BF16, lanes),
                          Load("a", BF16, "x", base, lanes, vector=True),
                          For(lane, c(0), c(lanes), c(1), (
                              Declare("xf", F32, init=Compute(
                                  Prim.CAST, (Elem("a", lane, BF16),), F32)),
                              Assign(Elem("r", lane, BF16), Compute(Prim.CAST, (value,), BF16)),
                          ), unroll=True),
                          Store("y", BF16, base, "r", lanes, vector=True),
                      )),
                  ], block=256)


def test_one_million_element_pointwise_kernel_is_fast() -> None:
    numel = 1 << 20
    x = torch.randn(numel).bfloat16()
    y = torch.empty_like(x)
    k = pointwise_chain()
    start = time.perf_counter()
    run_kernel(k, [x, y], [numel], grid_for(numel, k.block, 4))
    elapsed = time.perf_counter() - start
    xf = x.float()
    want = torch.maximum(torch.tanh(xf * 2 + 1) * (1 / (1 + torch.exp(-xf))) - 0.25, xf.abs())
    torch.testing.assert_close(y.float(), want.bfloat16().float(), atol=0, rtol=1e-2)
    assert elapsed < 1.0, f"1M-element pointwise kernel took {elapsed:.2f} s"


# -- fusion-IR evaluator -------------------------------------------------------------------


def test_evaluate_broadcasts_computes_in_f32_and_rounds_once() -> None:
    ir = verify_fusion(FusionIR("f", (TensorInput("a", BF16, 2), TensorInput("b", F32, 1)), (
        Node(Prim.LOAD, (), BF16, 0),
        Node(Prim.CAST, (0,), F32),
        Node(Prim.LOAD, (), F32, 1),
        Node(Prim.MUL, (1, 2), F32),
        Node(Prim.CONST, (), F32, 0.1),
        Node(Prim.ADD, (3, 4), F32),
        Node(Prim.GT, (5, 4), BOOL),
    ), (Output("o", 5, BF16, (0, 1)), Output("p", 6, BOOL, (0, 1)),
        Output("q", 4, F32, ()))))
    a = torch.randn(3, 5).bfloat16()
    b = torch.randn(5)
    bits = a.view(torch.int16).numpy().view(np.uint16)
    o, p, q = evaluate(ir, [bits, b.numpy()])
    want = a.float() * b + 0.1
    assert o.dtype == np.uint16 and o.shape == (3, 5)
    assert (o == f32_to_bf16(want.numpy())).all()
    assert (bf16_to_f32(o) == want.bfloat16().float().numpy()).all()
    assert p.dtype == np.bool_ and (p == (want > 0.1).numpy()).all()
    assert q.shape == () and q.dtype == np.float32


def test_evaluate_integer_semantics() -> None:
    ir = verify_fusion(FusionIR("g", (TensorInput("a", I32, 1), TensorInput("b", I32, 1)), (
        Node(Prim.LOAD, (), I32, 0),
        Node(Prim.LOAD, (), I32, 1),
        Node(Prim.DIV_FLOOR, (0, 1), I32),
        Node(Prim.REMAINDER, (0, 1), I32),
    ), (Output("q", 2, I32, (0, 1)), Output("r", 3, DType.INT64, (0, 1)))))
    a = torch.tensor([7, -7, 7, -7], dtype=torch.int32)
    b = torch.tensor([2, 2, -2, -2], dtype=torch.int32)
    q, r = evaluate(ir, [a.numpy(), b.numpy()])
    assert (q == torch.div(a, b, rounding_mode="floor").numpy()).all()
    assert r.dtype == np.int64 and (r == torch.remainder(a, b).numpy()).all()


# -- more control flow ---------------------------------------------------------------------


def copy_with_tail(lanes: int = 4) -> Kernel:
    """Vector path for full groups of `lanes`, a per-lane predicated tail for the rest:
    y = x * 3 as float32, int32 index math."""
    n = Param("n", I32)
    base, lane = Var("base", I32), Var("l", I32)
    at = op("+", base, lane, I32)

    def triple(array: str) -> Assign:
        value = Compute(Prim.MUL, (Elem(array, lane, F32), Const(3.0, F32)), F32)
        return Assign(Elem(array, lane, F32), value)

    return kernel("tail", [TensorParam("x", F32, False, 16), TensorParam("y", F32, True, 16)],
                  [n], [
                      Declare("base", I32, init=op("*", global_thread(I32), c(lanes, I32), I32)),
                      Declare("v", F32, lanes),
                      If(op("<=", op("+", base, c(lanes, I32), I32), n), (
                          Load("v", F32, "x", base, lanes, vector=True),
                          For(lane, c(0, I32), c(lanes, I32), c(1, I32), (triple("v"),), True),
                          Store("y", F32, base, "v", lanes, vector=True),
                      )),
                      If(op("&&", op("<", base, n),
                            op("<", n, op("+", base, c(lanes, I32), I32))), (
                          For(lane, c(0, I32), c(lanes, I32), c(1, I32), (
                              If(op("<", at, n), (
                                  Declare("s", F32, 1),
                                  Load("s", F32, "x", at, 1, vector=False),
                                  Assign(Elem("v", lane, F32), Elem("s", c(0, I32), F32)),
                                  triple("v"),
                                  Declare("o", F32, 1),
                                  Assign(Elem("o", c(0, I32), F32), Elem("v", lane, F32)),
                                  Store("y", F32, at, "o", 1, vector=False),
                              )),
                          )),
                      )),
                  ], block=32, index=I32)


@pytest.mark.parametrize("numel", [1, 3, 4, 127, 130, 1001])
def test_vector_body_and_predicated_tail(numel: int) -> None:
    x = torch.randn(numel)
    y = torch.full_like(x, float("nan"))
    k = copy_with_tail()
    run_kernel(k, [x, y], [numel], grid_for(numel, k.block, 4))
    assert torch.equal(y, x * 3)


def test_per_thread_lane_index() -> None:
    t = Special("threadIdx.x", I64)
    k = kernel("lane", [TensorParam("y", F32, True, 4)], [], [
        Declare("r", F32, 4),
        For(Var("l", I64), c(0), c(4), c(1), (
            Assign(Elem("r", Var("l", I64), F32), Compute(Prim.CAST, (Var("l", I64),), F32)),
        )),
        Assign(Elem("r", op("%", t, c(4)), F32), Const(-1.0, F32)),  # each thread its own lane
        Declare("o", F32, 1),
        Assign(Elem("o", c(0), F32), Elem("r", op("%", op("+", t, c(1)), c(4)), F32)),
        Store("y", F32, t, "o", 1, vector=False),
    ], block=8)
    y = torch.zeros(8)
    run_kernel(k, [y], [], 1)
    assert y.tolist() == [1.0, 2.0, 3.0, 0.0] * 2


def test_launch_grid_and_empty_launch() -> None:
    k = vector_copy()  # grid = n
    assert launch_grid(k, [37]) == 37
    run_kernel(k, [torch.empty(0), torch.empty(0)], [0], 0)  # no threads: nothing happens


def test_compute_in_bfloat16_is_rejected() -> None:
    k = kernel("bf", [TensorParam("y", BF16, True, 2)], [], [
        Declare("r", BF16, 1),
        Assign(Elem("r", c(0), BF16), Compute(Prim.ADD, (Const(1.0, BF16), Const(1.0, BF16)),
                                              BF16)),
    ], block=1)
    with pytest.raises(InterpretError, match="computes in bfloat16"):
        run_kernel(k, [torch.zeros(1, dtype=torch.bfloat16)], [], 1)
