"""Shared memory, barriers and warp / block reductions in the kernel IR, end to end on hand-built
kernels: the interpreter's results against torch, the interpreter's contract checks (divergent
barriers and reductions, shared-memory races), the printer, and the emitter's CUDA compiled by
NVRTC for sm_80 and sm_90 (no GPU needed).

The row kernels are the shape the reduction scheduler will produce: one block per row, a
block-stride loop over the columns accumulating into a register that starts at the identity
(threads past the row's end contribute nothing), one BlockReduce, thread 0 stores.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nvfuse.codegen.cuda import REDUCE_HEADER, emit_cuda
from nvfuse.dtypes import DType
from nvfuse.fusion.prims import Prim
from nvfuse.interpret.machine import InterpretError, run_kernel
from nvfuse.interpret.reduce import identity
from nvfuse.lower.kir import (
    Assign,
    BlockReduce,
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
    ReduceOp,
    ReduceScope,
    Shared,
    SharedElem,
    Special,
    Stmt,
    Store,
    Sync,
    TensorParam,
    Var,
    WarpReduce,
    WelfordReduce,
    print_kernel,
)

I64, I32, F32, F64, BOOL = DType.INT64, DType.INT32, DType.FLOAT32, DType.FLOAT64, DType.BOOL
R = ReduceOp
_COMBINE = {R.SUM: Prim.ADD, R.PROD: Prim.MUL, R.MAX: Prim.MAXIMUM, R.MIN: Prim.MINIMUM}
ARCHS = ("sm_80", "sm_90")

# -- little IR builders --------------------------------------------------------------------


def op(o: str, a: Expr, b: Expr) -> IndexOp:
    return IndexOp(o, a, b, BOOL if o in ("<", "<=", "==", "!=", "&&", "||") else I64)


def c(value: float, dtype: DType = I64) -> Const:
    return Const(value, dtype)


TID, BID, BDIM = Special("threadIdx.x", I64), Special("blockIdx.x", I64), Special("blockDim.x", I64)
ROWS, COLS = Param("rows", I64), Param("cols", I64)


def compute(prim: Prim, *args: Expr) -> Compute:
    return Compute(prim, tuple(args), args[0].dtype)


def store_scalar(tensor: str, dtype: DType, offset: Expr, value: Expr, reg: str) -> list[Stmt]:
    """tensor[offset] = value, through a one-lane register array."""
    return [Declare(reg, dtype, 1), Assign(Elem(reg, c(0), dtype), value),
            Store(tensor, dtype, offset, reg, 1, vector=False)]


def column_loop(dtype: DType, body: list[Stmt]) -> For:
    """for col = threadIdx.x; col < cols; col += blockDim.x: v[0] = x[row * cols + col]; body"""
    col = Var("col", I64)
    load: list[Stmt] = [Declare("v", dtype, 1),
            Load("v", dtype, "x", op("+", op("*", BID, COLS), col), 1, vector=False)]
    return For(col, TID, COLS, BDIM, tuple(load + body))


def row_kernel(name: str, dtype: DType, block: int, body: list[Stmt],
               outputs: tuple[str, ...] = ("y",)) -> Kernel:
    tensors = (TensorParam("x", dtype, False, dtype.itemsize),
               *(TensorParam(o, dtype, True, dtype.itemsize) for o in outputs))
    return Kernel(name, tensors, (ROWS, COLS), tuple(body), block, ROWS, I64)


@functools.cache
def row_reduce(dtype: DType, op_: ReduceOp, block: int) -> Kernel:
    """y[row] = op-reduction of x[row, :]."""
    acc, total = Var("acc", dtype), Var("total", dtype)
    ident = identity(op_, dtype)
    value = float(ident) if dtype.is_float else int(ident)
    body: list[Stmt] = [
        Comment(f"row {op_.value}: one block per row"),
        Shared("scratch", dtype, 32),
        Declare("acc", dtype, init=c(value, dtype)),
        column_loop(dtype, [Assign(acc, compute(_COMBINE[op_], acc, Elem("v", c(0), dtype)))]),
        Declare("total", dtype),
        BlockReduce(total, acc, op_, "scratch"),
        If(op("==", TID, c(0)), tuple(store_scalar("y", dtype, BID, total, "out"))),
    ]
    return row_kernel(f"row_{op_.value}_{dtype}_{block}", dtype, block, body)


@functools.cache
def row_var_mean(dtype: DType, block: int, shift: bool = True) -> Kernel:
    """mean[row], var[row] (correction 0) of x[row, :]: per-thread Welford updates, then a
    block Welford combine.  With `shift`, the data is first shifted by the row's first element
    (exact for values within a factor 2 of it), so float32 means stay small and precise; the
    mean gets the pivot back at the end."""
    mean, m2, n, delta = (Var(s, dtype) for s in ("mean", "m2", "n", "delta"))
    pivot = Elem("p", c(0), dtype)
    x: Expr = Elem("v", c(0), dtype)
    if shift:
        x = compute(Prim.SUB, x, pivot)
    zero = c(0.0, dtype)
    update: list[Stmt] = [
        Assign(n, compute(Prim.ADD, n, c(1.0, dtype))),
        Declare("delta", dtype, init=compute(Prim.SUB, x, mean)),
        Assign(mean, compute(Prim.ADD, mean, compute(Prim.DIV, delta, n))),
        Assign(m2, compute(Prim.ADD, m2, compute(Prim.MUL, delta, compute(Prim.SUB, x, mean)))),
    ]
    body: list[Stmt] = [
        Shared("scratch", dtype, 3 * 32),
        Declare("p", dtype, 1),
        Assign(pivot, zero),
        *([Load("p", dtype, "x", op("*", BID, COLS), 1, vector=False)] if shift else []),
        *(Declare(v.name, dtype, init=zero) for v in (mean, m2, n)),
        column_loop(dtype, update),
        WelfordReduce(mean, m2, n, mean, m2, n, ReduceScope.BLOCK, "scratch"),
        If(op("==", TID, c(0)), (
            *store_scalar("mean_out", dtype, BID, compute(Prim.ADD, pivot, mean), "o_mean"),
            *store_scalar("var_out", dtype, BID, compute(Prim.DIV, m2, n), "o_var"),
        )),
    ]
    return row_kernel(f"row_var_mean_{dtype}_{block}{'_shifted' if shift else ''}", dtype,
                      block, body,
                      outputs=("mean_out", "var_out"))


def per_thread_kernel(name: str, dtype: DType, block: int, body: list[Stmt]) -> Kernel:
    """x and y of `n` elements, one thread each (`gid`, `v` = x[gid] declared); grid = n / block
    (the tests launch whole blocks only)."""
    gid = op("+", op("*", BID, BDIM), TID)
    n = Param("n", I64)
    head: list[Stmt] = [Declare("gid", I64, init=gid), Declare("v", dtype, 1),
                        Load("v", dtype, "x", Var("gid", I64), 1, vector=False)]
    tensors = (TensorParam("x", dtype, False, dtype.itemsize),
               TensorParam("y", dtype, True, dtype.itemsize))
    return Kernel(name, tensors, (n,), tuple(head + body), block, op("/", n, c(block)), I64)


def warp_reduce(dtype: DType, op_: ReduceOp) -> Kernel:
    r = Var("r", dtype)
    return per_thread_kernel(f"warp_{op_.value}_{dtype}", dtype, 64, [
        Declare("r", dtype),
        WarpReduce(r, Elem("v", c(0), dtype), op_),
        *store_scalar("y", dtype, Var("gid", I64), r, "o"),
    ])


def reverse_block(sync: bool) -> Kernel:
    """y[gid] = x[block start + block - 1 - threadIdx.x] through shared memory."""
    mirrored = op("-", op("-", BDIM, c(1)), TID)
    body: list[Stmt] = [
        Shared("tile", F32, 128),
        Assign(SharedElem("tile", TID, F32), Elem("v", c(0), F32)),
        *([Sync()] if sync else []),
        *store_scalar("y", F32, Var("gid", I64), SharedElem("tile", mirrored, F32), "o"),
    ]
    return per_thread_kernel(f"reverse_{'sync' if sync else 'racy'}", F32, 128, body)


# -- running -------------------------------------------------------------------------------


def run_rows(k: Kernel, x: torch.Tensor, outputs: int = 1) -> list[torch.Tensor]:
    rows, cols = x.shape
    outs = [torch.full((rows,), 7, dtype=x.dtype) for _ in range(outputs)]  # never the answer
    run_kernel(k, [x, *outs], [rows, cols], rows)
    return outs


def data(dtype: DType, rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_float:
        return torch.randn(rows, cols, generator=g, dtype=dtype.torch)
    # Large integers: the sums wrap around, which the device and the interpreter agree on.
    lo, hi = (-(2**30), 2**30) if dtype is I32 else (-(2**62), 2**62)
    return torch.randint(lo, hi, (rows, cols), generator=g, dtype=dtype.torch)


@functools.cache
def compile_ok(source: str, arch: str) -> bytes:
    from nvfuse.runtime.nvrtc import compile_to_cubin

    return compile_to_cubin(source, arch, "reduce_test.cu")


def assert_compiles(k: Kernel) -> str:
    source = emit_cuda(k)
    for arch in ARCHS:
        assert compile_ok(source, arch)[:4] == b"\x7fELF"
    return source


# -- (a) row sums and products -------------------------------------------------------------


@pytest.mark.parametrize("block", [32, 128, 256, 1024])
@pytest.mark.parametrize("dtype", [F32, F64, I32, I64], ids=str)
def test_row_sum(dtype: DType, block: int) -> None:
    x = data(dtype, 3, 1000 + block // 3)  # never a multiple of the block
    (y,) = run_rows(row_reduce(dtype, R.SUM, block), x)
    if dtype.is_float:
        expected = x.double().sum(1).to(dtype.torch)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-4)
    else:  # wrapping integer sums, exactly
        expected = torch.from_numpy(x.numpy().sum(axis=1, dtype=dtype.np_storage))
        assert torch.equal(y, expected)


def test_row_sum_more_threads_than_columns() -> None:
    x = data(F32, 4, 40)  # most threads only contribute the identity
    (y,) = run_rows(row_reduce(F32, R.SUM, 256), x)
    torch.testing.assert_close(y, x.sum(1))


@pytest.mark.parametrize("dtype", [F64, I64], ids=str)
def test_row_prod(dtype: DType) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-3, 4, (3, 70), generator=g).to(dtype.torch)
    x[x == 0] = 1
    (y,) = run_rows(row_reduce(dtype, R.PROD, 64), x)
    assert torch.equal(y, x.prod(1))


# -- (b) amax / amin with NaN and infinities -----------------------------------------------


def special_rows(dtype: DType) -> torch.Tensor:
    x = data(dtype, 6, 300, seed=3)
    inf, nan = float("inf"), float("nan")
    x[0, 17] = nan  # one NaN wins over everything
    x[1, 299] = inf
    x[2, 5] = -inf
    x[3, :] = -inf  # the identity of max is a legitimate answer
    x[4, 100], x[4, 101] = nan, inf
    x[5, 0], x[5, 1] = inf, -inf
    return x


@pytest.mark.parametrize("block", [32, 256])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("op_", [R.MAX, R.MIN], ids=lambda o: o.value)
def test_amax_amin_nan_inf(op_: ReduceOp, dtype: DType, block: int) -> None:
    x = special_rows(dtype)
    (y,) = run_rows(row_reduce(dtype, op_, block), x)
    expected = torch.amax(x, 1) if op_ is R.MAX else torch.amin(x, 1)
    torch.testing.assert_close(y, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [I32, I64], ids=str)
@pytest.mark.parametrize("op_", [R.MAX, R.MIN], ids=lambda o: o.value)
def test_integer_max_min_extremes(op_: ReduceOp, dtype: DType) -> None:
    x = data(dtype, 3, 200)
    info = torch.iinfo(dtype.torch)
    x[0, 7], x[1, 150] = info.max, info.min
    (y,) = run_rows(row_reduce(dtype, op_, 128), x)
    assert torch.equal(y, torch.amax(x, 1) if op_ is R.MAX else torch.amin(x, 1))


# -- (c) Welford ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", [32, 128, 1024])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_welford_var_mean_large_mean(dtype: DType, block: int) -> None:
    g = torch.Generator().manual_seed(11)
    x = (1e4 + torch.randn(5, 3001, generator=g, dtype=torch.float64)).to(dtype.torch)
    mean, var = run_rows(row_var_mean(dtype, block), x, outputs=2)
    ev, em = torch.var_mean(x.double(), dim=1, correction=0)
    rtol = 1e-5 if dtype is F32 else 1e-10
    torch.testing.assert_close(var.double(), ev, rtol=rtol, atol=0)
    torch.testing.assert_close(mean.double(), em, rtol=rtol, atol=0)


def test_welford_unshifted_float32_has_no_cancellation() -> None:
    """Without the pivot shift a float32 mean of 1e4 carries only ~1e-3 absolute precision,
    which bounds the variance's accuracy to ~1e-4 relative -- a property of float32 Welford
    states, not of the combine.  A sum-of-squares formula would be off by orders of magnitude
    (E[x^2] - E[x]^2 = 1e8 + 1 - 1e8 with ulp(1e8) = 8)."""
    g = torch.Generator().manual_seed(11)
    x = (1e4 + torch.randn(5, 3001, generator=g, dtype=torch.float64)).float()
    mean, var = run_rows(row_var_mean(F32, 128, shift=False), x, outputs=2)
    ev, em = torch.var_mean(x.double(), dim=1, correction=0)
    torch.testing.assert_close(var.double(), ev, rtol=3e-4, atol=0)
    torch.testing.assert_close(mean.double(), em, rtol=1e-6, atol=0)


def test_welford_rows_shorter_than_block() -> None:
    """Most threads hold the empty state (n = 0): the combine must not produce 0 / 0."""
    x = torch.randn(3, 50, dtype=torch.float64)
    mean, var = run_rows(row_var_mean(F64, 256), x, outputs=2)
    ev, em = torch.var_mean(x, dim=1, correction=0)
    torch.testing.assert_close(var, ev)
    torch.testing.assert_close(mean, em)


# -- (d) warp reductions -------------------------------------------------------------------


_TORCH_REDUCE: dict[ReduceOp, Callable[..., torch.Tensor]] = {
    R.SUM: torch.sum, R.MAX: torch.amax, R.MIN: torch.amin, R.PROD: torch.prod}


@pytest.mark.parametrize(("dtype", "op_"), [(F32, R.SUM), (F64, R.MAX), (I32, R.SUM),
                                            (I64, R.MIN), (I32, R.PROD)], ids=str)
def test_warp_reduce(dtype: DType, op_: ReduceOp) -> None:
    x = data(dtype, 4, 64).reshape(-1)
    if op_ is R.PROD:
        x = torch.randint(-2, 3, (256,), dtype=dtype.torch)
    y = torch.full_like(x, 7)
    run_kernel(warp_reduce(dtype, op_), [x, y], [256], 4)
    warps = x.reshape(-1, 32)
    if op_ is R.SUM and dtype.is_int:
        per_warp = torch.from_numpy(warps.numpy().sum(axis=1, dtype=dtype.np_storage))
    else:
        fn = _TORCH_REDUCE[op_]
        per_warp = fn(warps.double() if dtype.is_float else warps, 1).to(dtype.torch)
    expected = per_warp.repeat_interleave(32)
    if dtype.is_float:
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(y, expected)


def test_warp_welford_matches_block_order() -> None:
    """A warp Welford allreduce gives every lane the bit-identical state."""
    mean, m2, n = Var("mean", F32), Var("m2", F32), Var("n", F32)
    x = Elem("v", c(0), F32)
    k = per_thread_kernel("warp_welford", F32, 64, [
        *(Declare(v.name, F32, init=c(0.0, F32)) for v in (mean, m2, n)),
        WelfordReduce(mean, m2, n, x, c(0.0, F32), c(1.0, F32), ReduceScope.WARP),
        *store_scalar("y", F32, Var("gid", I64), compute(Prim.DIV, m2, n), "o"),
    ])
    xs = torch.randn(128)
    y = torch.full_like(xs, 7)
    run_kernel(k, [xs, y], [128], 2)
    var = xs.reshape(-1, 32).double().var(1, correction=0).float()
    torch.testing.assert_close(y, var.repeat_interleave(32), rtol=1e-5, atol=1e-6)
    assert (y.reshape(-1, 32) == y.reshape(-1, 32)[:, :1]).all()


# -- (e) the contract: barriers, uniformity, races -----------------------------------------


def test_divergent_sync_raises() -> None:
    k = per_thread_kernel("divergent_sync", F32, 64, [If(op("<", TID, c(16)), (Sync(),))])
    with pytest.raises(InterpretError, match=r"divergent __syncthreads\(\): only 16 of the 64 "
                                             r"threads of block 0"):
        run_kernel(k, [torch.randn(128), torch.empty(128)], [128], 2)


def test_sync_skipped_by_whole_blocks_is_fine() -> None:
    k = per_thread_kernel("block_uniform_sync", F32, 64, [
        If(op("<", BID, c(1)), (Sync(),)),
        *store_scalar("y", F32, Var("gid", I64), Elem("v", c(0), F32), "o"),
    ])
    x, y = torch.randn(128), torch.empty(128)
    run_kernel(k, [x, y], [128], 2)
    assert torch.equal(x, y)


def test_divergent_block_reduce_raises() -> None:
    r = Var("r", F32)
    k = per_thread_kernel("divergent_reduce", F32, 64, [
        Shared("scratch", F32, 32), Declare("r", F32),
        If(op("<", TID, c(40)), (BlockReduce(r, Elem("v", c(0), F32), R.SUM, "scratch"),)),
    ])
    with pytest.raises(InterpretError, match="divergent block sum reduction: only 40 of the 64"):
        run_kernel(k, [torch.randn(128), torch.empty(128)], [128], 2)


def test_divergent_warp_reduce_raises() -> None:
    r = Var("r", I32)
    k = per_thread_kernel("divergent_warp", I32, 64, [
        Declare("r", I32),
        If(op("<", TID, c(48)), (WarpReduce(r, Elem("v", c(0), I32), R.MAX),)),
    ])
    with pytest.raises(InterpretError, match="divergent warp max reduction: only 16 of the 32 "
                                             "threads of warp 1"):
        run_kernel(k, [torch.zeros(128, dtype=torch.int32), torch.empty(128, dtype=torch.int32)],
                   [128], 2)


def test_block_reduce_needs_a_large_enough_scratch() -> None:
    k = row_kernel("small_scratch", F32, 256, [
        Shared("scratch", F32, 4), Declare("t", F32),
        BlockReduce(Var("t", F32), c(1.0, F32), R.SUM, "scratch"),
    ])
    with pytest.raises(InterpretError, match=r"scratch scratch is float32\[4\], needs "
                                             r"float32\[8\]"):
        run_rows(k, torch.randn(2, 8))


def test_shared_memory_through_a_barrier() -> None:
    x, y = torch.randn(256), torch.empty(256)
    run_kernel(reverse_block(sync=True), [x, y], [256], 2)
    assert torch.equal(y, x.reshape(2, 128).flip(1).reshape(-1))


def test_missing_barrier_is_a_race() -> None:
    with pytest.raises(InterpretError, match=r"shared memory race on tile\[127\] in block 0: "
                                             r"threadIdx 0 reads what was written by threadIdx "
                                             r"127 without a Sync"):
        run_kernel(reverse_block(sync=False), [torch.randn(256), torch.empty(256)], [256], 2)


def test_racing_stores_in_one_statement() -> None:
    k = per_thread_kernel("same_slot", F32, 32, [
        Shared("slot", F32, 1),
        Assign(SharedElem("slot", c(0), F32), Elem("v", c(0), F32)),
    ])
    with pytest.raises(InterpretError, match="several threads store different values"):
        run_kernel(k, [torch.randn(32), torch.empty(32)], [32], 1)


def test_out_of_bounds_shared_read() -> None:
    k = per_thread_kernel("oob_shared", F32, 32, [
        Shared("tile", F32, 16),
        *store_scalar("y", F32, Var("gid", I64), SharedElem("tile", TID, F32), "o"),
    ])
    with pytest.raises(InterpretError, match=r"out-of-bounds shared read of tile: .*threadIdx "
                                             r"16\) index 16 outside \[0, 16\)"):
        run_kernel(k, [torch.randn(32), torch.empty(32)], [32], 1)


def test_reduce_nodes_check_dtypes() -> None:
    with pytest.raises(ValueError, match="operand acc is float32, expected float64"):
        BlockReduce(Var("t", F64), Var("acc", F32), R.SUM, "s")
    with pytest.raises(ValueError, match="not one of"):
        WarpReduce(Var("t", DType.INT16), Var("a", DType.INT16), R.SUM)
    with pytest.raises(ValueError, match="needs a scratch array"):
        a, b, n = Var("a", F32), Var("b", F32), Var("n", F32)
        WelfordReduce(a, b, n, a, b, n, ReduceScope.BLOCK)


# -- printer and emitter -------------------------------------------------------------------


def test_printer_shows_the_new_statements() -> None:
    text = print_kernel(row_var_mean(F32, 128))
    assert "  shared float32 $scratch[96]\n" in text
    assert "(mean, m2, n) = block_welford(mean, m2, n) scratch $scratch" in text
    text = print_kernel(reverse_block(sync=True))
    assert "$tile[threadIdx.x] = v[0:int64]\n  sync\n" in text
    assert "warp_allreduce.max(v[0:int64])" in print_kernel(warp_reduce(F64, R.MAX))


def compile_cases() -> list[Kernel]:
    kernels = [row_reduce(d, o, 256) for d in (F32, F64, I32, I64) for o in R]
    return kernels + [row_var_mean(F32, 128), row_var_mean(F64, 1024),
                      warp_reduce(I64, R.MIN), warp_reduce(F32, R.SUM), reverse_block(True)]


@pytest.mark.parametrize("k", compile_cases(), ids=lambda k: k.name)
def test_emitted_reduction_kernels_compile(k: Kernel) -> None:
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    source = assert_compiles(k)
    assert f"// ---- {REDUCE_HEADER} ----" in source or k.name.startswith("reverse")


def test_emitted_reduction_statements() -> None:
    source = emit_cuda(row_var_mean(F32, 128))
    assert "  __shared__ float scratch[96];\n" in source
    assert "  nvf_block_welford<float>(mean, m2, n, mean, m2, n, scratch);\n" in source
    source = emit_cuda(row_reduce(I64, R.MAX, 256))
    assert "total = nvf_block_allreduce<nvf_op_max, long long>(acc, scratch);" in source
    assert "r = nvf_warp_allreduce<nvf_op_min, long long>(v[0LL]);" in emit_cuda(
        warp_reduce(I64, R.MIN))
    assert "  __syncthreads();\n" in emit_cuda(reverse_block(True))


def test_pointwise_kernels_do_not_include_the_reduce_header(interpret: None) -> None:
    import nvfuse

    pointwise_headers = ["nvf_types.cuh", "nvf_math.cuh", "nvf_memory.cuh"]
    # Shared memory alone needs no reduction helpers either.
    assert header_markers(emit_cuda(reverse_block(sync=False))) == pointwise_headers
    a, b = torch.randn(8, 32), torch.randn(8, 32)
    fm = nvfuse.fuse(lambda a, b: (a + b).relu(), (a, b))
    torch.testing.assert_close(fm(a, b), (a + b).relu())
    assert fm.kernels
    for built in fm.kernels:
        assert header_markers(built.source) == pointwise_headers
        assert "nvf_block_allreduce" not in built.source
    assert header_markers(emit_cuda(warp_reduce(F32, R.SUM)))[-1] == REDUCE_HEADER


def header_markers(source: str) -> list[str]:
    return [line[8:-5] for line in source.split("\n") if line.startswith("// ---- ")]


def test_reduction_block_must_be_a_multiple_of_32() -> None:
    k = row_kernel("odd_block", F32, 48, [
        Shared("scratch", F32, 32), Declare("t", F32),
        BlockReduce(Var("t", F32), c(1.0, F32), R.SUM, "scratch"),
    ])
    with pytest.raises(ValueError, match="block 48 is not a multiple of 32"):
        emit_cuda(k)
    with pytest.raises(InterpretError, match="multiple of 32"):
        run_rows(k, torch.randn(2, 8))


# -- host build of the combine functions ---------------------------------------------------

_HOST_DRIVER = r"""
#include <cstdio>
template <typename T> void welford(const char* fmt) {
  nvf_welford<T> a, b;
  while (std::scanf(fmt, &a.mean, &a.m2, &a.n, &b.mean, &b.m2, &b.n) == 6) {
    nvf_welford<T> r = nvf_welford_combine(a, b);
    std::printf("%a %a %a\n", (double)r.mean, (double)r.m2, (double)r.n);
  }
}
template <typename Op, typename T> void fold(const T* xs, int n, const char* fmt) {
  T acc = Op::template identity<T>();
  for (int i = 0; i < n; ++i) acc = Op::template combine<T>(acc, xs[i]);
  std::printf(fmt, acc);
}
int main() {
  const float f[] = {1.5f, -2.0f, nvf_bits_as_float(0x7fc00000u), 3.0f,
                     nvf_reduce_limits<float>::highest()};
  fold<nvf_op_max, float>(f, 5, "%a\n");  // NaN in the middle wins
  fold<nvf_op_min, float>(f, 2, "%a\n");
  fold<nvf_op_max, float>(f, 0, "%a\n");  // identity: -inf
  fold<nvf_op_min, double>(nullptr, 0, "%a\n");  // identity: +inf
  const int big[] = {2147483647, 1, 5};
  fold<nvf_op_sum, int>(big, 3, "%d\n");  // wraps
  fold<nvf_op_max, int>(big, 0, "%d\n");
  const long long l[] = {-9223372036854775807LL, -2, 3};
  fold<nvf_op_sum, long long>(l, 3, "%lld\n");
  fold<nvf_op_prod, long long>(l + 1, 2, "%lld\n");
  fold<nvf_op_min, long long>(l, 0, "%lld\n");
  welford<double>("%lf %lf %lf %lf %lf %lf");
  return 0;
}
"""


def test_combine_functions_on_the_host(tmp_path: Path) -> None:
    """nvf_reduce.cuh's ops and Welford combine, built for the host with nvcc, against the
    interpreter's definitions (the warp / block parts need a GPU)."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH")
    from nvfuse.codegen.templates import read_template
    from nvfuse.interpret.reduce import welford_combine

    headers = "".join(read_template(h) for h in ("nvf_types.cuh", "nvf_math.cuh", REDUCE_HEADER))
    (tmp_path / "driver.cu").write_text(headers + _HOST_DRIVER)
    build = subprocess.run(["nvcc", "-x", "cu", "-std=c++17", "-O1", "-arch=sm_80", "-o",
                            str(tmp_path / "driver"), str(tmp_path / "driver.cu")],
                           capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 0, build.stderr
    rng = np.random.default_rng(4)
    states = np.abs(rng.standard_normal((50, 6))) * [1e4, 5, 100, 1e4, 5, 100]
    states[:, [2, 5]] = np.round(states[:, [2, 5]])
    states[0, [0, 1, 2]] = 0  # an empty side
    states[1, :] = 0  # both empty: the empty state, not NaN
    stdin = "\n".join(" ".join(repr(float(v)) for v in row) for row in states)
    run = subprocess.run([str(tmp_path / "driver")], input=stdin, capture_output=True,
                         text=True, timeout=60, check=True)
    lines = run.stdout.split()
    fixed, welford = lines[:9], np.array([float.fromhex(v) for v in lines[9:]]).reshape(-1, 3)
    nan_max, min_two, max_identity, min_identity = (float.fromhex(v) for v in fixed[:4])
    assert np.isnan(nan_max) and min_two == -2.0
    assert (max_identity, min_identity) == (float("-inf"), float("inf"))
    assert [int(v) for v in fixed[4:]] == [-2147483643, -2147483648, -9223372036854775806, -6,
                                           9223372036854775807]
    expected = welford_combine(tuple(states[:, i] for i in range(3)),
                               tuple(states[:, i] for i in range(3, 6)))
    np.testing.assert_array_equal(welford, np.stack(expected, axis=1))
