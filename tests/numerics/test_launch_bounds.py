"""Launch bounds never force spills: every kernel of the bench's normalization cases at their GPU
sizes (planned on meta tensors, nothing allocated or run: bench/model/plan.py), compiled by
NVRTC for sm_90 with ptxas -v, reports no spill stores or loads, and a 1024-thread kernel
states one block per SM (ptxas had squeezed batch-norm training into 32 registers and spilled
in its main loop)."""

from __future__ import annotations

import pytest

from bench.cases import CASES
from bench.model.plan import plan_case
from bench.model.sass import compile_report

NAMES = ["batch-norm-train-nchw-fp32", "group-norm-g32-fp32", "layer-norm-residual-h16384-bf16",
         "softmax-w32k-fp32", "log-softmax-w128k-bf16",
         # vector column kernels (lanes per thread): a bias-gradient-like sum, LN backward's dw/db
         "sum-first-fp32", "layer-norm-backward-h4096-bf16"]


@pytest.mark.parametrize("name", NAMES)
def test_no_spills_at_gpu_sizes(name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    for call in plan_case(case, "sm_90"):
        for stage in call.stages:
            kernel = stage.kernel
            res, _ = compile_report(kernel.source, "sm_90")
            assert res.spills == 0, (name, kernel.name, res)
            block = kernel.kernel_ir.block
            bounds = f"__launch_bounds__({block}, 1)" if block == 1024 else \
                f"__launch_bounds__({block})"
            assert bounds in kernel.source
            assert res.regs <= 65536 // block
