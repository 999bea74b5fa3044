"""Row reductions stage by stage: fusion IR (printer, verifier, row values), op table, build,
schedule (buckets, signature, arguments) and the kernel IR's shape."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from nvfuse.dtypes import DType
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.builder import Builder, Unsupported
from nvfuse.fusion.ir import FusionIR, FusionIRError, Node, OutputShape, row_values, verify_fusion
from nvfuse.fusion.partition import partition
from nvfuse.fusion.shapes import output_shapes
from nvfuse.fusion.prims import Prim
from nvfuse.lower import kir
from nvfuse.lower.reduction import lower_reduction
from nvfuse.schedule.reduction import (
    WARP_ROW_MAX, block_for,
)
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedules import plan_launch

F32, I64 = DType.FLOAT32, DType.INT64


def _mean_ir() -> FusionIR:
    b = Builder("g")
    x = b.load(F32, 2)
    total = b.reduce(Prim.REDUCE_SUM, x, 1)
    mean = b.prim(Prim.DIV, total, b.cast(b.row_numel(1), F32))
    b.store(b.prim(Prim.SUB, x, mean), F32, (0,))
    b.store(mean, F32, (), shape=OutputShape.ROW_DROPPED, reduced_from=(0,))
    return b.finalize()


def test_printer_and_row_values() -> None:
    ir = _mean_ir()
    assert str(ir) == (
        "fusion g(%in0: float32[r2]) reduce_ndim=1 {\n"
        "  %0 = load in0 : float32\n"
        "  %1 = reduce_sum %0 : float32\n"
        "  %2 = row_numel  : int64\n"
        "  %3 = cast %2 : float32\n"
        "  %4 = div %1, %3 : float32\n"
        "  %5 = sub %0, %4 : float32\n"
        "  out0 = store %5 : float32  (shape of in0)\n"
        "  out1 = store %4 : float32  (shape of reduced in0, row_dropped)\n"
        "}")
    assert row_values(ir) == {1, 4}


def test_verifier_rejects_reductions_without_reduce_ndim() -> None:
    ir = _mean_ir()
    with pytest.raises(FusionIRError, match="reduce_ndim 0"):
        verify_fusion(FusionIR(ir.name, ir.inputs, ir.nodes, ir.outputs[:1], (), 0))
    bad = ir.nodes[:1] + (Node(Prim.REDUCE_SUM, (0,), DType.INT32),)
    with pytest.raises(FusionIRError, match="reduces"):
        verify_fusion(FusionIR(ir.name, ir.inputs, bad, (), (), 1))
    with pytest.raises(FusionIRError, match="full value"):  # a full value as a row output
        verify_fusion(FusionIR(ir.name, ir.inputs, ir.nodes, (ir.outputs[0].__class__(
            "o", 0, F32, (), shape=OutputShape.ROW_KEEPDIM, reduced_from=(0,)),), (), 1))


def test_one_group_reduces_one_number_of_dims() -> None:
    b = Builder("g")
    x = b.load(F32, 3)
    b.reduce(Prim.REDUCE_MAX, x, 1)
    with pytest.raises(Unsupported, match=r"reduces dims \[-2, -1\]"):
        b.reduce(Prim.REDUCE_SUM, x, 2)


def _group(fn: Callable[..., object], *inputs: torch.Tensor) -> list[FusionIR]:
    gm, names = partition(trace_to_aten(fn, inputs))
    return [build_fusion(n, getattr(gm, n)) for n in names]


def test_build_records_row_outputs_and_keepdim() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = x * 2
        return a.sum(-1), a.amax(-1, keepdim=True) + 1, a
    (ir,) = _group(fn, torch.randn(4, 8))
    assert ir.reduce_ndim == 1
    shapes = {o.shape for o in ir.outputs}
    assert shapes == {OutputShape.ROW_DROPPED, OutputShape.ROW_KEEPDIM, OutputShape.FULL}
    x = torch.randn(6, 3)
    expected = {OutputShape.ROW_DROPPED: (6,), OutputShape.ROW_KEEPDIM: (6, 1),
                OutputShape.FULL: (6, 3)}
    for out, shape in zip(ir.outputs, output_shapes(ir, [x.shape])):
        assert tuple(shape) == expected[out.shape]


def test_softmax_is_amax_sub_exp_sum_div_in_one_group() -> None:
    (ir,) = _group(lambda x: torch.softmax(x * 2, -1), torch.randn(4, 8))
    ops = [n.op for n in ir.nodes]
    assert ops.count(Prim.REDUCE_MAX) == 1 and ops.count(Prim.REDUCE_SUM) == 1
    assert ir.outputs[0].shape is OutputShape.FULL


def test_block_buckets() -> None:
    assert [block_for(c) for c in (1, 512, 513, 2048, 2049, 8192, 8193, 10**6)] == [
        128, 128, 256, 256, 512, 512, 1024, 1024]


def test_signature_ignores_row_count_and_strides_are_arguments() -> None:
    (ir,) = _group(lambda x, w: x * w / x.sum(-1, keepdim=True), torch.randn(4, 100),
                   torch.randn(100))
    sigs = []
    for rows in (4, 100):
        x, w = torch.randn(rows, 100), torch.randn(100)
        outs = [torch.empty(rows, 100)]
        launch = plan_launch(ir, [x, w], outs, "sm_90")
        sigs.append(launch.signature)
        assert launch.grid == rows and launch.scalars == {
            "rows": rows, "row_numel": 100, "stride_in0_o0": 100, "stride_out0_o0": 100}
    assert sigs[0] == sigs[1]
    assert sigs[0].inputs == ("s1", "01")  # the weight broadcasts across rows
    kernel = lower_reduction(ir, sigs[0], sigs[0].block)
    assert sum(isinstance(s, kir.BlockReduce) for s in kernel.body) == 1


def test_short_rows_get_a_warp_each() -> None:
    """C <= WARP_ROW_MAX: kind WARP_ROW, 4 rows a block (grid ceil(rows / 4)), one warp
    allreduce and no shared memory or barrier; C = WARP_ROW_MAX + 1: a block per row."""
    (ir,) = _group(lambda x, w: x * w / x.sum(-1, keepdim=True), torch.randn(4, 8),
                   torch.randn(8))
    sigs = []
    for rows, grid in ((4, 1), (5, 2), (100, 25)):
        x, w = torch.randn(rows, 8), torch.randn(8)
        launch = plan_launch(ir, [x, w], [torch.empty(rows, 8)], "sm_90")
        sigs.append(launch.signature)
        assert launch.grid == grid
        assert (launch.scalars["rows"], launch.scalars["row_numel"]) == (rows, 8)
    assert sigs[0] == sigs[1] == sigs[2]
    sig = sigs[0]
    assert sig.kind is ScheduleKind.WARP_ROW and sig.block == 128 and sig.persist == 0
    kernel = lower_reduction(ir, sig, sig.block)
    assert sum(isinstance(s, kir.WarpReduce) for s in kernel.body) == 1
    assert not any(isinstance(s, (kir.BlockReduce, kir.Shared, kir.Sync)) for s in kernel.body)
    c = WARP_ROW_MAX + 1
    launch = plan_launch(ir, [torch.randn(4, c), torch.randn(c)], [torch.empty(4, c)], "sm_90")
    assert launch.signature.kind is ScheduleKind.ROW and launch.grid == 4


def test_reduction_over_a_broadcast_operand_is_refused_at_run_time() -> None:
    (ir,) = _group(lambda x, y: (x * 2).sum(-1, keepdim=True) + y, torch.randn(4, 8),
                   torch.randn(4, 8))
    x, y = torch.randn(4, 1), torch.randn(4, 8)  # TorchScript plans may see new shapes
    with pytest.raises(ValueError, match="broadcasts"):
        plan_launch(ir, [x, y], [torch.empty(4, 8)], "sm_90")
    plan_launch(ir, [y, y], [torch.empty(4, 8)], "sm_90")


def _softmax_and_sum(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    a = x * 2
    return torch.softmax(a, -1), a.sum(-1)


def _center_two_dims(x: torch.Tensor) -> torch.Tensor:
    a = x * 2
    return a - a.mean((-2, -1), keepdim=True)


@pytest.mark.parametrize("fn", [_softmax_and_sum, _center_two_dims])
def test_reference_evaluator_reduces_rows(fn: Callable[..., object]) -> None:
    from nvfuse.interpret.fusion_eval import evaluate

    x = torch.randn(3, 4, 10)
    gm, (name,) = partition(trace_to_aten(fn, (x,)))
    ir = build_fusion(name, getattr(gm, name))
    for got, want in zip(evaluate(ir, [x.numpy()]), getattr(gm, name)(x)):
        assert got.shape == tuple(want.shape)
        torch.testing.assert_close(torch.from_numpy(got), want)


def test_explain_names_why_a_reduction_stays_eager() -> None:
    import nvfuse

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.sum(-1) + x, torch.softmax(x * 2, -1)

    text = str(nvfuse.explain(fn, torch.randn(8, 8)))
    # x.sum(-1) broadcast along the other dim: computed keepdim and squeezed (graph/views.py),
    # so it is a fused row sum (a sibling of the softmax's, reading x once) rather than eager
    assert "0 eager" in text and "keepdim=False" not in text
    assert "aten::mul, aten::_softmax" in text


@pytest.mark.parametrize("shape,groups", [((2, 32, 64, 64), 4), ((1, 12, 40, 120), 3)])
def test_vector_groups_load_per_channel_operands_once_and_split_no_index_per_lane(
        interpret: None, shape: tuple[int, ...], groups: int) -> None:
    """A group norm row is channels x pixels: its vector groups of pixels never cross a
    channel, so the per-channel weight and bias are loaded once per group (before the lane
    loop, one scalar each), and a lane's indices are the group's plus its lane (no division
    or remainder per lane).  Results match eager through the interpreter."""
    import nvfuse

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.group_norm(x, groups, w, b)

    args = (torch.randn(shape), torch.randn(shape[1]), torch.randn(shape[1]))
    fm = nvfuse.fuse(f, args)
    torch.testing.assert_close(fm(*args), f(*args), rtol=1e-4, atol=1e-4)
    (kernel,) = fm.kernels
    assert kernel.signature[1].lanes == 4  # type: ignore[union-attr]

    def lane_loops(body: tuple[kir.Stmt, ...]):  # type: ignore[no-untyped-def]
        for s in body:
            if isinstance(s, kir.For) and s.var.name == "pl":
                yield s
            elif isinstance(s, (kir.If, kir.For)):
                yield from lane_loops(s.body)

    def inside(body: tuple[kir.Stmt, ...]):  # type: ignore[no-untyped-def]
        for s in body:
            yield s
            if isinstance(s, (kir.If, kir.For)):
                yield from inside(s.body)

    loops = list(lane_loops(kernel.kernel_ir.body))
    assert loops
    for loop in loops:
        stmts = list(inside(loop.body))
        assert not [s for s in stmts if isinstance(s, kir.Load)]  # all loaded before the loop
        assert "%" not in str(kir.Kernel("k", (), (), loop.body, 32, kir.Const(1, DType.INT32),
                                         DType.INT32))
