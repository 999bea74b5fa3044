"""Welford reductions stage by stage: the REDUCE_M2 prim in the fusion IR (verifier, reference
evaluator), the FX frontend's decompositions and in-place rewrite, and the kernel IR of a layer
norm (one Welford pass carrying the mean's sum, a pivot per row)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvfuse.dtypes import DType
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.builder import Builder
from nvfuse.fusion.ir import FusionIR, FusionIRError, Node, OutputShape, verify_fusion
from nvfuse.fusion.partition import partition
from nvfuse.fusion.prims import Prim
from nvfuse.interpret.fusion_eval import evaluate
from nvfuse.lower import kir
from nvfuse.lower.reduction import lower_reduction
from nvfuse.lower.verify import verify_kernel
from nvfuse.schedules import plan_launch

F32, I64 = DType.FLOAT32, DType.INT64


def _m2_ir() -> FusionIR:
    b = Builder("g")
    x = b.load(F32, 2)
    b.store(b.reduce(Prim.REDUCE_M2, x, 1), F32, (), shape=OutputShape.ROW_DROPPED,
            reduced_from=(0,))
    return b.finalize()


def test_m2_is_float_only_and_evaluates_to_squared_deviations() -> None:
    ir = _m2_ir()
    assert "reduce_m2 %0 : float32" in str(ir)
    x = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    (out,) = evaluate(ir, [x])
    np.testing.assert_allclose(out.ravel(), x.var(-1) * 7, rtol=1e-5)
    b = Builder("h")
    xi = b.load(I64, 2)
    bad = (b.nodes[0], Node(Prim.REDUCE_M2, (xi.index,), I64))
    with pytest.raises(FusionIRError, match="reduce_m2 is float32 or float64"):
        verify_fusion(FusionIR("h", tuple(b.inputs), bad, (), (), 1))


def test_frontend_decomposes_multi_output_norms() -> None:
    x, w = torch.randn(4, 8), torch.randn(8)
    gm = trace_to_aten(lambda x, w: (torch.var_mean(x, -1), F.layer_norm(x, (8,), w),
                                     F.rms_norm(x, (8,), w)), (x, w))
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    aten = torch.ops.aten
    assert aten.var_mean.correction not in targets
    assert aten.native_layer_norm.default not in targets
    assert aten.var.correction in targets and aten.mean.dim in targets
    assert not any(t._schema.is_mutable for t in targets)  # rms_norm's add_ became add


def test_in_place_writes_to_inputs_are_kept() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        x.add_(1)
        return x * 2

    gm = trace_to_aten(fn, (torch.randn(3),))
    assert any(n.target is torch.ops.aten.copy_.default for n in gm.graph.nodes)


def _loads_of(stmts: tuple[kir.Stmt, ...], tensor: str) -> int:
    count = 0
    for s in stmts:
        if isinstance(s, kir.Load) and s.tensor == tensor:
            count += 1
        if isinstance(s, (kir.If, kir.For)):
            count += _loads_of(s.body, tensor)
    return count


@pytest.mark.parametrize("width", [300, 40000])
def test_layer_norm_kernel_reads_the_row_once_or_twice(width: int) -> None:
    """Persistent (300 wide): one load loop into registers, then the pivot (column 0 only),
    the row's two-pass statistics (mean, then m2 + sum, each closed by a block sum:
    nvfuse/lower/welford.py) and normalize + store read the registers; looped (40000 wide,
    past the last persistent bucket, staged whole in shared memory): the copy loop and the
    pivot read global memory, the two statistics passes and normalize + store read shared
    memory only."""
    x, w, b = torch.randn(4, width), torch.randn(width), torch.randn(width)
    gm, names = partition(trace_to_aten(lambda x, w, b: F.layer_norm(x, (width,), w, b),
                                        (x, w, b)))
    (ir,) = [build_fusion(n, getattr(gm, n)) for n in names]
    m2 = [n for n in ir.nodes if n.op is Prim.REDUCE_M2]
    sums = [n for n in ir.nodes if n.op is Prim.REDUCE_SUM]
    assert len(m2) == 1 and len(sums) == 1 and m2[0].args == sums[0].args
    launch = plan_launch(ir, [x, w, b], [torch.empty(4, width)], "sm_90")
    kernel = verify_kernel(lower_reduction(ir, launch.signature, launch.signature.block))
    loops = [s for s in kernel.body if isinstance(s, kir.For)]
    persistent = width == 300
    assert (launch.signature.persist > 0) == persistent
    assert launch.signature.smem is not persistent
    assert len(loops) == 5
    pivot = loops[1]
    assert pivot.start == kir.Const(0, pivot.start.dtype)
    # x: the load (or copy) loop and the pivot; the other passes read registers (or shared
    # memory)
    assert [_loads_of((s,), "in0") for s in loops] == [1, 1, 0, 0, 0]
    # no Welford combine: three plain block sums (the mean of the shifted values, m2, the sum)
    reductions = [s for s in kernel.body if isinstance(s, kir.REDUCTIONS)]
    assert [type(r) for r in reductions] == [kir.BlockReduce] * 3
