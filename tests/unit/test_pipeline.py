"""nvfuse/pipeline.py: the stage lists, the verifier inside the build, one path for all callers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import nvfuse
from nvfuse import pipeline
from nvfuse.dtypes import DType
from nvfuse.frontend.protocol import frontend_for
from nvfuse.lower import kir
from nvfuse.lower.verify import KernelIRError
from nvfuse.runtime import kernels


def _fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.relu(x * y + 1).sum(-1)


def test_stage_lists_are_named_in_pipeline_order() -> None:
    assert [s.name for s in pipeline.PLAN_STAGES] == ["graph", "partition", "fusion_ir",
                                                      "inplace", "horizontal"]
    assert [s.name for s in pipeline.BUILD_STAGES] == ["kernel_ir", "cuda"]
    assert [s.name for s in pipeline.HORIZONTAL_STAGES] == ["kernel_ir", "cuda"]
    assert pipeline.BUILD_STAGES[0].verify is not None
    assert pipeline.HORIZONTAL_STAGES[0].verify is not None


def test_plan_schedule_build_compose_to_what_fuse_runs(interpret: None) -> None:
    x, y = torch.randn(5, 33), torch.randn(5, 33)
    plan = pipeline.plan(frontend_for(_fn, (x, y)).trace((x, y)))
    (group,) = plan.groups
    outs = [torch.empty(s, dtype=o.dtype.torch) for s, o in
            zip(pipeline.output_shapes(group.ir, [x.shape, y.shape]), group.ir.outputs)]
    launch = pipeline.schedule(group.ir, [x, y], outs, "sm_90")
    built = [pipeline.build(group.ir, kernels.fusion_key(group.ir), sig, params, False)
             for sig, params, _ in launch.stages]
    fm = nvfuse.fuse(_fn, (x, y))
    torch.testing.assert_close(fm(x, y), _fn(x, y))
    assert [k.source for k in fm.kernels] == [k.source for k in built]
    assert str(fm.fusion_groups[0]) == str(group.ir)


def test_build_runs_the_kernel_ir_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lowering that emits a malformed kernel is caught in the build, before emission."""
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    (group,) = pipeline.plan(frontend_for(_fn, (x, y)).trace((x, y))).groups
    outs = [torch.empty(4)]
    (stage,) = pipeline.schedule(group.ir, [x, y], outs, "sm_90").stages
    lower = pipeline.BUILD_STAGES[0]

    def broken(job: object) -> kir.Kernel:
        k: kir.Kernel = lower.run(job)
        # a read of a register nobody declares
        bad = kir.Assign(kir.Var("never_declared", DType.FLOAT32),
                         kir.Var("also_never_declared", DType.FLOAT32))
        return dataclasses.replace(k, body=(*k.body, bad))

    monkeypatch.setattr(pipeline, "BUILD_STAGES",
                        (dataclasses.replace(lower, run=broken), *pipeline.BUILD_STAGES[1:]))
    kernels.clear()
    with pytest.raises(KernelIRError):
        pipeline.build(group.ir, "broken", stage[0], stage[1], False)
