"""nvfuse.explain: per-graph op counts, groups, kernels per step and eager reasons."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from test_dynamo import MLPBlock


def test_forward_report() -> None:
    report = nvfuse.explain(MLPBlock(), torch.randn(8, 16))
    (graph,) = report.graphs
    assert graph.name == "forward"
    assert graph.groups == [["aten::gelu"], ["aten::sigmoid", "aten::mul", "aten::add"]]
    assert graph.eager == [("aten::addmm", "no lowering in the op table")] * 2
    assert graph.kernels == 4 and report.kernels_per_step == 4
    text = str(report)
    assert "eager aten::addmm x2: no lowering in the op table" in text
    assert "kernels per step: 4" in text


def test_training_report_has_forward_and_backward() -> None:
    model = MLPBlock()
    report = nvfuse.explain(model, torch.randn(8, 16), training=True)
    assert [g.name for g in report.graphs] == ["forward", "backward"]
    backward = report.graphs[1]
    assert backward.groups and any(op == "aten::mm" for op, _ in backward.eager)
    assert report.kernels_per_step == sum(g.kernels for g in report.graphs)


def test_explain_compiles_nothing() -> None:
    nvfuse.explain(lambda x: torch.exp(x) + 1, torch.randn(4))
    assert nvfuse.stats()["compiles"] == 0


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.max(a[:, :2], b[:, :2])  # aten::max.other in a TorchScript trace
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def test_traced_box_iou_is_one_kernel_and_explain_agrees(interpret: None) -> None:
    a, b = torch.rand(64, 4), torch.rand(64, 4)
    traced = torch.jit.trace(_box_iou, (a, b))
    fm = nvfuse.fuse(traced)
    torch.testing.assert_close(fm(a, b), _box_iou(a, b))
    assert len(fm.fusion_groups) == 1
    assert "aten::minimum" in fm.fusion_groups[0].ops and "aten::maximum" in fm.fusion_groups[0].ops
    (graph,) = nvfuse.explain(traced, a, b).graphs
    assert graph.groups == [list(g.ops) for g in fm.fusion_groups] and graph.eager == []


class _NormNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)
        self.bn = torch.nn.BatchNorm1d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(torch.relu(self.bn(self.lin(x))), 0.3)


def _state(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor | None]:
    return [*(t.detach().clone() for t in model.state_dict().values()),
            *(p.grad.clone() if p.grad is not None else None for p in model.parameters()),
            x.grad.clone() if x.grad is not None else None]


def _same(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> bool:
    return len(a) == len(b) and all(
        (u is None and v is None) or (u is not None and v is not None and torch.equal(u, v))
        for u, v in zip(a, b))


def test_explain_has_no_side_effects() -> None:
    torch.manual_seed(0)
    model = _NormNet().train()
    x = torch.randn(8, 6, requires_grad=True)
    for with_grads in (False, True):
        if with_grads:  # gradients already there must not be accumulated into either
            model(x).sum().backward()
        grads = [p.grad for p in model.parameters()]
        before = _state(model, x)
        rng = torch.get_rng_state()
        for training in (False, True):
            report = nvfuse.explain(model, x, training=training)
            assert report.kernels_per_step > 0
        assert _same(before, _state(model, x))
        assert all(p.grad is g for p, g in zip(model.parameters(), grads))
        assert torch.equal(rng, torch.get_rng_state())
        assert int(model.bn.num_batches_tracked) == (1 if with_grads else 0)


def test_explain_reports_a_script_nvfuse_runs_unfused() -> None:
    """A scripted function with control flow runs unfused (the TorchScript frontend converts
    straight-line graphs only); explain says so instead of planning another graph."""

    def branchy(x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * 2
        return x + 1

    scripted = torch.jit.script(branchy)
    x = torch.randn(4)
    (graph,) = nvfuse.explain(scripted, x).graphs
    assert graph.groups == [] and graph.eager[0][0] == "<whole function>"
    with pytest.warns(RuntimeWarning, match="runs unfused"):
        fm = nvfuse.fuse(scripted, (x,))
    torch.testing.assert_close(fm(x), branchy(x))
    assert fm.fusion_groups == []
