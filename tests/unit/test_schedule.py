"""Pointwise schedule: dim merging, stride classes, vector width, index width, arguments."""

from __future__ import annotations

import torch

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.shapes import output_shapes
from nvfuse.schedule.pointwise import merge_dims, plan_launch


def _add_ir(a_dtype: DType, a_ndim: int, b_dtype: DType, b_ndim: int, out: DType):
    b = Builder("g")
    x = b.cast(b.load(a_dtype, a_ndim), out.compute)
    y = b.cast(b.load(b_dtype, b_ndim), out.compute)
    b.store(b.finish(b.prim(Prim.ADD, x, y), out), out, (0, 1))
    return b.finalize()


def test_merge_dims_collapses_contiguous_and_drops_size_one() -> None:
    assert merge_dims([4, 5, 6], [[30, 6, 1], [30, 6, 1]]) == ([120], [[1], [1]])
    assert merge_dims([4, 5, 6], [[30, 6, 1], [0, 0, 1]]) == ([20, 6], [[6, 1], [0, 1]])
    assert merge_dims([4, 1, 6], [[6, 6, 1]]) == ([24], [[1]])


def test_contiguous_add_is_rank_one_and_vectorized() -> None:
    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 2, DType.FLOAT32)
    a, b = torch.randn(8, 64), torch.randn(8, 64)
    out = torch.empty(8, 64)
    launch = plan_launch(ir, [a, b], [out], "sm_90")
    sig = launch.signature
    assert (sig.rank, sig.inputs, sig.outputs, sig.lanes, sig.index) == (
        1, ("1", "1"), ("1",), 4, DType.INT32)
    assert launch.scalars == {"numel": 512} and launch.grid == 1


def test_new_sizes_share_the_signature() -> None:
    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 1, DType.FLOAT32)
    sigs = {plan_launch(ir, [torch.randn(n, 64), torch.randn(64)],
                        [torch.empty(n, 64)], "sm_90").signature for n in (3, 17, 1000)}
    assert len(sigs) == 1
    (sig,) = sigs
    assert sig.inputs == ("s1", "01") and sig.lanes == 4


def test_odd_inner_size_and_misalignment_fall_back_to_scalar_lanes() -> None:
    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 1, DType.FLOAT32)
    odd = plan_launch(ir, [torch.randn(4, 63), torch.randn(63)], [torch.empty(4, 63)], "sm_90")
    assert odd.signature.lanes == 1
    base = torch.randn(4 * 64 + 1)
    shifted = base[1:].view(4, 64)  # 4-byte aligned only
    mis = plan_launch(ir, [shifted, torch.randn(64)], [torch.empty(4, 64)], "sm_90")
    assert mis.signature.lanes == 1


def test_half_inputs_use_eight_lanes_and_mixed_use_the_wider_type() -> None:
    half = _add_ir(DType.FLOAT16, 1, DType.FLOAT16, 1, DType.FLOAT16)
    a = torch.randn(64).half()
    assert plan_launch(half, [a, a], [torch.empty(64).half()], "sm_90").signature.lanes == 8
    mixed = _add_ir(DType.FLOAT16, 1, DType.FLOAT32, 1, DType.FLOAT32)
    assert plan_launch(mixed, [a, torch.randn(64)], [torch.empty(64)],
                       "sm_90").signature.lanes == 4


def test_transposed_input_gets_a_general_stride() -> None:
    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 2, DType.FLOAT32)
    a = torch.randn(16, 8).t()
    launch = plan_launch(ir, [a, torch.randn(8, 16)], [torch.empty(8, 16)], "sm_90")
    assert launch.signature.inputs == ("1s", "s1") and launch.signature.lanes == 1


def test_output_shapes_follow_shape_from() -> None:
    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 1, DType.FLOAT32)
    assert output_shapes(ir, [torch.Size([3, 1]), torch.Size([5])]) == [torch.Size([3, 5])]


def test_int64_index_kernels_run_and_compile() -> None:
    """Sizes past 2^31 need 64-bit index math; check that path on small tensors by forcing it."""
    import dataclasses

    from nvfuse.codegen.cuda import emit_cuda
    from nvfuse.interpret.machine import run_kernel
    from nvfuse.lower.kir import kernel_args
    from nvfuse.lower.pointwise import lower_pointwise
    from nvfuse.lower.verify import verify_kernel
    from nvfuse.runtime.nvrtc import compile_to_cubin

    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 1, DType.FLOAT32)
    a, b = torch.randn(6, 40).t(), torch.randn(6)  # transposed: general strides
    out = torch.empty(40, 6)
    launch = plan_launch(ir, [a, b], [out], "sm_90")
    wide = dataclasses.replace(launch.signature, index=DType.INT64)
    kernel = verify_kernel(lower_pointwise(ir, wide, launch.params.block))
    assert kernel.index_dtype is DType.INT64
    run_kernel(kernel, [a, b, out], kernel_args(kernel, launch.scalars), launch.grid)
    torch.testing.assert_close(out, a + b)
    source = emit_cuda(kernel)
    assert "long long base" in source
    for arch in ("sm_80", "sm_90"):
        assert compile_to_cubin(source, arch, "int64.cu")[:4] == b"\x7fELF"


def test_trailing_size_one_dims_drop_and_leading_ones_keep_their_strides() -> None:
    assert merge_dims([5, 1], [[1, 1], [0, 1]]) == ([5], [[1], [0]])
    assert merge_dims([1, 1], [[1, 1]]) == ([1], [[1]])
    # a batch of one next to an operand that lacks the dim: kept, as a batch of eight would be
    assert merge_dims([1, 64], [[64, 1], [0, 1]]) == ([1, 64], [[64, 1], [0, 1]])


def test_batch_of_one_shares_the_signature() -> None:
    ir = _add_ir(DType.FLOAT32, 2, DType.FLOAT32, 1, DType.FLOAT32)
    sigs = {plan_launch(ir, [torch.randn(n, 64), torch.randn(64)], [torch.empty(n, 64)],
                        "sm_90").signature for n in (1, 3, 8)}
    assert len(sigs) == 1


def test_rank_one_vector_width_ignores_the_size() -> None:
    """A flat space vectorizes whatever its length (the lowering's tail takes the rest)."""
    ir = _add_ir(DType.FLOAT32, 1, DType.FLOAT32, 1, DType.FLOAT32)
    sigs = {plan_launch(ir, [torch.randn(n), torch.randn(n)], [torch.empty(n)],
                        "sm_90").signature for n in (24, 30, 7, 1)}
    assert len(sigs) == 1 and sigs.pop().lanes == 4


def test_lane_invariant_values_are_computed_once_and_the_tail_stays_rolled(interpret: None
                                                                            ) -> None:
    """A value of broadcast scalars only (AdamW's bias corrections) is computed before the lane
    loop, once per thread; the tail of a rank-1 space is a rolled loop (#pragma unroll 1: a
    cold path unrolled costs compile time only).  Results match eager, tail included."""
    import nvfuse
    from nvfuse.lower import kir
    from nvfuse.runtime.nvrtc import compile_to_cubin

    def f(p: torch.Tensor, m: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return p - 0.01 * m / (1 - 0.9 ** step) / ((1 - 0.999 ** step).sqrt() + 1e-8)

    args = (torch.randn(1001), torch.randn(1001), torch.tensor(3.0))
    fm = nvfuse.fuse(f, args)
    for step in (2.0, 3.0):
        args = (torch.randn(1001), torch.randn(1001), torch.tensor(step))
        torch.testing.assert_close(fm(*args), f(*args))
    (kernel,) = fm.kernels
    body = kernel.kernel_ir.body

    def walk(stmts: tuple[kir.Stmt, ...], loops: tuple[kir.For, ...] = ()):
        for s in stmts:
            yield s, loops
            if isinstance(s, kir.If):
                yield from walk(s.body, loops)
            elif isinstance(s, kir.For):
                yield from walk(s.body, loops + (s,))

    pows = [loops for s, loops in walk(body)
            if isinstance(s, kir.Declare) and isinstance(s.init, kir.Compute)
            and s.init.prim is Prim.POW]
    vector_pows = [loops for loops in pows if not any(f.var.name == "tail" for f in loops)]
    assert len(vector_pows) == 2 and all(not loops for loops in vector_pows)  # before the loop
    (tail,) = [s for s, _ in walk(body) if isinstance(s, kir.For) and s.var.name == "tail"]
    assert tail.rolled and not tail.unroll
    assert "#pragma unroll 1\n" in kernel.source
    assert compile_to_cubin(kernel.source, "sm_90", "hoist.cu")[:4] == b"\x7fELF"
