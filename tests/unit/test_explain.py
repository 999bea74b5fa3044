"""nvfuse.explain: per-graph op counts, groups, kernels per step and eager reasons."""

from __future__ import annotations

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
    assert all(p.grad is not None for p in model.parameters())  # the step really ran


def test_explain_compiles_nothing() -> None:
    nvfuse.explain(lambda x: torch.exp(x) + 1, torch.randn(4))
    assert nvfuse.stats()["compiles"] == 0
