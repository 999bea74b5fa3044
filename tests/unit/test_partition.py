"""Partition: maximal groups of fusible nodes, eager ops between them, one iteration space."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import fx

from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.partition import partition, why_unfusible


def _groups(fn: Callable[..., object],
            *inputs: torch.Tensor) -> tuple[fx.GraphModule, list[fx.GraphModule]]:
    gm, names = partition(trace_to_aten(fn, inputs))
    return gm, [getattr(gm, n) for n in names]


def _ops(group: fx.GraphModule) -> list[str]:
    return [str(n.target) for n in group.graph.nodes if n.op == "call_function"]


def test_chain_around_an_unfusible_op_makes_two_groups() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        # an op nvfuse has no lowering for (cumsum) splits the chain
        return torch.sigmoid(torch.exp(x).cumsum(0) * 2) + 1

    gm, groups = _groups(fn, torch.randn(4, 8))
    assert len(groups) == 2
    assert any("cumsum" in str(n.target) for n in gm.graph.nodes if n.op == "call_function")


def test_single_supported_op_is_a_group_and_input_is_unchanged() -> None:
    gm0 = trace_to_aten(lambda x: torch.relu(x), (torch.randn(3),))
    before = str(gm0.graph)
    _, names = partition(gm0)
    assert len(names) == 1 and str(gm0.graph) == before


def test_intermediate_used_outside_becomes_a_group_output() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.exp(x) * 2
        return a.sum(), a + 1
    _, groups = _groups(fn, torch.randn(5, 5))
    assert len(groups) == 1
    (out,) = [n for n in groups[0].graph.nodes if n.op == "output"]
    assert len(out.args[0]) == 2  # a.sum() (a fused reduction over every dim) and a + 1


def test_values_without_one_iteration_space_stay_eager() -> None:
    def fn(p: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple:
        q = p * 2
        return q + y, q + z  # (1,4)+(3,1) -> (3,4) and (1,4)+(5,1) -> (5,4)
    _, groups = _groups(fn, torch.randn(1, 4), torch.randn(3, 1), torch.randn(5, 1))
    for group in groups:
        shapes = [n.meta["val"].shape for n in group.graph.nodes if n.op == "call_function"]
        torch.broadcast_shapes(*shapes)  # every group has one iteration space


def test_independent_chains_are_not_merged_horizontally() -> None:
    def fn(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.exp(a), torch.sin(b)

    _, groups = _groups(fn, torch.randn(8, 64), torch.randn(16))
    assert len(groups) == 2


def test_reasons_for_unfusible_nodes() -> None:
    gm = trace_to_aten(lambda x: torch.mm(x, x).exp(), (torch.randn(3, 3),))
    reasons = {str(n.target): why_unfusible(n) for n in gm.graph.nodes
               if n.op == "call_function"}
    assert reasons["aten.mm.default"] == "no lowering in the op table"
    assert reasons["aten.exp.default"] is None


def test_sibling_reductions_of_one_input_merge() -> None:
    def fn(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.sum(0), (x * w).sum(0), x.amax(-1)  # the last reduces other dims

    _, groups = _groups(fn, torch.randn(6, 5), torch.randn(6, 5))
    assert sorted(len([n for n in g.graph.nodes if n.op == "call_function"])
                  for g in groups) == [1, 3]


def test_dependent_reductions_do_not_merge_into_a_cycle() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = x.sum(0, keepdim=True)
        return s, (x * torch.mm(s, x)).sum(0)  # both read x; the second needs s (via eager mm)

    x = torch.randn(4, 4)
    gm, groups = _groups(fn, x)
    assert len(groups) == 2
    gm.graph.lint()
    for got, want in zip(gm(x), fn(x)):
        torch.testing.assert_close(got, want)
