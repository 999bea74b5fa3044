"""Reductions over non-trailing dims, stage by stage: the op table's reduced dims, the fusion
IR's `reduce_dims`, the schedule's permutation and stride-based choice (row vs column), the
column kernel IR (shape, verifier, the interpreter's lockstep / shared-memory run, the race a
missing barrier causes), and the frontend's batch norm / group norm decompositions."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nvfuse.dtypes import DType
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.builder import Builder, Unsupported
from nvfuse.fusion.ir import FusionIR, dropped_shape, keepdim_shape
from nvfuse.fusion.partition import partition
from nvfuse.fusion.prims import Prim
from nvfuse.interpret.machine import InterpretError, run_kernel
from nvfuse.lower import kir
from nvfuse.lower.reduction import lower_reduction
from nvfuse.lower.verify import verify_kernel
from nvfuse.fusion.shapes import output_shapes
from nvfuse.schedule.reduction import (
    COLUMN_X, WARP_ROW_MAX, WARP_ROWS, ReductionSignature, column_block_for,
)
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedules import plan_launch

F32 = DType.FLOAT32


def _ir(fn, *inputs: torch.Tensor) -> FusionIR:  # type: ignore[no-untyped-def]
    gm, names = partition(trace_to_aten(fn, inputs))
    (name,) = names
    return build_fusion(name, getattr(gm, name))


def test_builder_records_non_trailing_dims() -> None:
    b = Builder("g")
    x = b.load(F32, 3)
    b.reduce(Prim.REDUCE_SUM, x, (-3, -1))
    assert (b.reduce_ndim, b.reduce_dims, b.reduce_axes) == (2, (-3, -1), (-3, -1))
    with pytest.raises(Unsupported, match=r"reduces dims \[-2\]"):
        b.reduce(Prim.REDUCE_MAX, x, (-2,))
    trailing = Builder("t")
    trailing.reduce(Prim.REDUCE_SUM, trailing.load(F32, 2), (-1,))
    assert trailing.reduce_dims is None  # prints (and hashes) as it always did


def test_fusion_ir_prints_and_evaluates_reduce_dims() -> None:
    ir = _ir(lambda x: x.sum((0, 2)), torch.randn(3, 4, 5))
    assert "reduce_ndim=2 reduce_dims=[-3, -1]" in str(ir)
    assert keepdim_shape((3, 4, 5), ir.reduce_axes) == (1, 4, 1)
    assert dropped_shape((3, 4, 5), ir.reduce_axes) == (4,)
    assert output_shapes(ir, [torch.Size((3, 4, 5))]) == [torch.Size((4,))]
    with pytest.raises(Exception, match="reduce_dims"):
        from nvfuse.fusion.ir import verify_fusion
        verify_fusion(replace(ir, reduce_dims=(-1, -3)))


@pytest.mark.parametrize(("shape", "dims", "transpose", "column"), [
    ((64, 32), (0,), False, True),      # bias gradient: kept dim contiguous
    ((64, 32), (1,), False, False),     # the classic row reduction (short: warp rows)
    ((8, 100), (1,), False, False),     # rows past WARP_ROW_MAX: a block per row
    ((64, 32), (1,), True, True),       # a row reduction of a transposed view
    ((4, 8, 16), (0, 2), False, False),  # batch norm NCHW: rows of contiguous runs
    ((4, 8, 16), (0, 1), False, True),
])
def test_schedule_is_chosen_by_strides(shape: tuple[int, ...], dims: tuple[int, ...],
                                       transpose: bool, column: bool) -> None:
    x = torch.randn(shape)
    if transpose:
        x = x.t().contiguous().t()
    ir = _ir(lambda x: x.sum(dims), x)
    out = torch.empty(output_shapes(ir, [x.shape])[0])
    launch = plan_launch(ir, [x], [out], "sm_90")
    assert (launch.signature.kind is ScheduleKind.COLUMN) is column
    kept = x.numel() // launch.row_numel
    assert launch.rows == kept
    # a row schedule over rows of at most WARP_ROW_MAX: warp rows, WARP_ROWS rows a block
    warp = not column and launch.row_numel <= WARP_ROW_MAX
    assert (launch.signature.kind is ScheduleKind.WARP_ROW) is warp
    assert launch.grid == (-(-kept // (COLUMN_X * launch.signature.lanes)) if column else
                           -(-kept // WARP_ROWS) if warp else kept)


def test_column_signature_never_equals_a_row_signature() -> None:
    fields = (1, 1, ("1s",), ("1",), 128, DType.INT32, "sm_90")
    assert ReductionSignature(*fields, kind=ScheduleKind.COLUMN) != ReductionSignature(*fields)
    assert column_block_for(10) == 128 and column_block_for(5000) == 512


def _column_kernel(x: torch.Tensor, fn=lambda x: x.sum(0)):  # type: ignore[no-untyped-def]
    ir = _ir(fn, x)
    out = torch.empty(output_shapes(ir, [x.shape])[0], dtype=x.dtype)
    launch = plan_launch(ir, [x], [out], "sm_90")
    assert launch.signature.kind is ScheduleKind.COLUMN
    kernel = lower_reduction(ir, launch.signature, launch.params.block)
    return kernel, launch, out


def test_column_kernel_ir_runs_in_lockstep() -> None:
    x = torch.randn(45, 71)  # 71 kept columns (odd: lanes 1): the last block has 25 dead lanes
    kernel, launch, out = _column_kernel(x)
    assert launch.signature.lanes == 1
    verify_kernel(kernel)
    text = kir.print_kernel(kernel)
    assert "row = ((blockIdx.x * 32:int32) + tx)" in text
    assert "for col in [ty, row_numel) step 4:int32" in text
    assert text.count("sync") == 2 and "block_allreduce" not in text
    run_kernel(kernel, [x, out], kir.kernel_args(kernel, launch.scalars), launch.grid)
    torch.testing.assert_close(out, x.sum(0), rtol=1e-5, atol=1e-5)


def test_column_welford_combines_thread_rows() -> None:
    x = torch.randn(300, 40, dtype=torch.float64) + 1e4
    kernel, launch, out = _column_kernel(x, lambda x: x.var(0))
    verify_kernel(kernel)
    run_kernel(kernel, [x, out], kir.kernel_args(kernel, launch.scalars), launch.grid)
    torch.testing.assert_close(out, x.var(0), rtol=1e-9, atol=1e-9)


def _without_first_sync(body: tuple[kir.Stmt, ...]) -> tuple[kir.Stmt, ...] | None:
    """`body` without its first Sync, looking into loops (a vector column combines lane by
    lane, its barriers inside the lane loop); None: there is none."""
    for i, s in enumerate(body):
        if isinstance(s, kir.Sync):
            return body[:i] + body[i + 1:]
        if isinstance(s, kir.For):
            inner = _without_first_sync(s.body)
            if inner is not None:
                return body[:i] + (replace(s, body=inner),) + body[i + 1:]
    return None


def test_a_missing_barrier_is_reported_as_a_race() -> None:
    x = torch.randn(20, 40)
    kernel, launch, out = _column_kernel(x)
    body = _without_first_sync(kernel.body)
    assert body is not None
    broken = replace(kernel, body=body)
    with pytest.raises(InterpretError, match="race"):
        run_kernel(broken, [x, out], kir.kernel_args(kernel, launch.scalars), launch.grid)


def _targets(fn, *inputs: torch.Tensor) -> list[str]:  # type: ignore[no-untyped-def]
    gm = trace_to_aten(fn, inputs)
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def test_batch_norm_training_decomposes_and_copies_running_stats_back() -> None:
    def fn(x: torch.Tensor, rm: torch.Tensor, rv: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.batch_norm(x, rm, rv, training=True)

    targets = _targets(fn, torch.randn(2, 3, 4), torch.zeros(3), torch.ones(3))
    assert not any("batch_norm" in t for t in targets)
    assert targets.count("aten.copy_.default") == 2
    eval_mode = _targets(lambda x, rm, rv: torch.nn.functional.batch_norm(x, rm, rv),
                         torch.randn(2, 3, 4), torch.zeros(3), torch.ones(3))
    assert any("native_batch_norm" in t for t in eval_mode)  # not this module's business


def test_group_norm_decomposes_into_a_row_reduction() -> None:
    ir = _ir(lambda x: torch.nn.functional.group_norm(x, 2), torch.randn(2, 4, 3, 3))
    assert ir.reduce_ndim == 2 and ir.reduce_dims is None
