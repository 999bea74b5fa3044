"""nvfuse/fusion/rematerialize.py through the partitioner: a leading-dim reduction recomputes a
pointwise operand it would share with a reduction over other dims, and only then."""

from __future__ import annotations

import pytest
import torch

import nvfuse


def _groups(fn, *inputs: torch.Tensor) -> list[list[str]]:
    fm = nvfuse.fuse(fn, inputs)
    got, want = fm(*inputs), fn(*inputs)
    for a, e in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(a, e)
    assert nvfuse.stats()["fallbacks"] == 0
    return [list(g.ops) for g in fm.fusion_groups]


@pytest.fixture(autouse=True)
def _interpret(interpret: None) -> None:
    pass


def test_shared_operand_of_row_and_column_sums_is_recomputed() -> None:
    """y = x * w feeds a row sum and a column sum: the column group recomputes the product
    from x and w, so no group writes y (both groups read only the inputs)."""
    x, w = torch.randn(64, 48), torch.randn(48)

    def fn(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x * w
        return y.sum(-1), y.sum(0)

    fm = nvfuse.fuse(fn, (x, w))
    torch.testing.assert_close(fm(x, w), fn(x, w))
    groups = fm.fusion_groups
    assert len(groups) == 2
    assert all(g.ops.count("aten::mul") == 1 for g in groups)
    assert all(len(g.fusion_ir.outputs) == 1 for g in groups)  # no shared y written


def test_operand_shared_with_an_output_stays_one_group() -> None:
    """A GELU backward and its bias gradient: the product is also returned, so the one group
    that writes it and sums it over rows reads the inputs once: nothing is copied."""
    g, x = torch.randn(64, 48), torch.randn(64, 48)

    def fn(g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gx = torch.ops.aten.gelu_backward(g, x)
        return gx, gx.sum(0)

    groups = _groups(fn, g, x)
    assert len(groups) == 1


def test_random_operand_is_never_copied() -> None:
    """A dropout mask shared by a row and a column sum: a copy would draw a second mask."""
    x = torch.randn(64, 48) + 3

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.nn.functional.dropout(x, 0.5, training=True)
        return y.sum(-1), y.sum(0)

    fm = nvfuse.fuse(fn, (x,))
    rows, cols = fm(x)
    # one mask: the total of the row sums equals the total of the column sums
    torch.testing.assert_close(rows.sum(), cols.sum(), rtol=1e-5, atol=1e-3)
    assert sum(g.ops.count("aten::native_dropout") + g.ops.count("aten::rand_like")
               + g.ops.count("aten::bernoulli") for g in fm.fusion_groups) <= 1
