"""Views and layout ops inside fusion groups (nvfuse/graph/views.py), through the interpreter.

Each pattern is pointwise -> view op -> pointwise: one fusion group, one kernel, and a result
equal to eager's in values, dtype, shape and (dims of more than one element) strides, never
aliasing the input.  Then the cases the pass must leave alone or get exactly right: views it
cannot move, outputs that alias in eager, random masks, keepdim=False reductions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch._dynamo

import nvfuse
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.graph.passes import run_passes

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert all(a == b for n, a, b in zip(expected.shape, actual.stride(), expected.stride())
               if n > 1), (actual.stride(), expected.stride())
    tol = {} if expected.dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(actual, expected, **tol)


def _run(fn: Callable[..., object], *inputs: torch.Tensor) -> nvfuse.FusedModule:
    fm = nvfuse.fuse(fn, inputs)
    actual, expected = fm(*inputs), fn(*inputs)
    if isinstance(expected, torch.Tensor):
        actual, expected = (actual,), (expected,)
    for a, e in zip(actual, expected):  # type: ignore[arg-type]
        _close(a, e)
        assert all(a.data_ptr() != x.data_ptr() for x in inputs)
    return fm


def _pair(t: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return t[0] * t[1]


PATTERNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "view": lambda x: (x * 2).view(4, 48).sin(),
    "reshape": lambda x: (x * 2).reshape(-1, 8) + 1,
    "flatten": lambda x: (x + 1).flatten(1).exp(),
    "unflatten": lambda x: (x + 1).unflatten(2, (2, 4)) * 3,
    "unsqueeze": lambda x: (x * 2).unsqueeze(1) * 3,
    "squeeze": lambda x: (x[:, :1] * 2).squeeze() + 1,
    "squeeze_dim": lambda x: (x[:, :1] * 2).squeeze(1) + 1,
    "expand": lambda x: (x * 2)[:, :1].expand(4, 6, 8) + x,
    "permute": lambda x: (x * 2).permute(2, 0, 1) + 1,
    "transpose": lambda x: (x * 2).transpose(0, 2).sigmoid(),
    "t": lambda x: ((x[0] * 2).t() + 1),
    "slice": lambda x: (x * 2)[:, 1:5] + 1,
    "slice_step": lambda x: (x * 2)[..., ::2] * 3,
    "narrow": lambda x: (x * 2).narrow(1, 1, 3) + 1,
    "select": lambda x: (x * 2)[:, 2] + 1,
    "split": lambda x: _pair((x * 2).split(4, -1)),
    "chunk": lambda x: sum((x * 2).chunk(3, 1)),  # type: ignore[return-value]
    "unbind": lambda x: _pair((x * 2).unbind(0)[1:3]),
    "two_views": lambda x: (x + 1).reshape(4, 6, 2, 4).transpose(0, 2).unsqueeze(0).cos(),
    "broadcast_operand": lambda x: (x + x[0, 0]).permute(1, 2, 0) * 2,
    "mean_unsqueeze": lambda x: x - x.mean(-1).unsqueeze(-1),
    "mean_view": lambda x: x - x.mean(-1).view(4, 6, 1),
    "sum_epilogue": lambda x: x.sum(-1) * 2 + 1,
    "sum_epilogue_operand": lambda x: x.sum(-1) * x[0, :, 0] - x[:, :, 1],
    # x.sum() / x.mean() have no keepdim argument: computed as their dim overloads, keepdim
    "sum_all_epilogue": lambda x: x.sum() * 2 + 1,
    "loss_ratio": lambda x: (x * 2).sum() / (x > 0).sum() - x.mean(),
    "normalize_by_hand": lambda x: (x - x.mean(-1).unsqueeze(-1))
    * torch.rsqrt(x.var(-1).unsqueeze(-1) + 1e-5),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_view_between_pointwise_ops_is_one_kernel(interpret: None, name: str,
                                                  dtype: torch.dtype) -> None:
    x = torch.randn(4, 6, 8, dtype=dtype)
    fm = _run(PATTERNS[name], x)
    assert len(fm.fusion_groups) == 1 and len(fm.kernels) == 1, fm.fusion_groups


def test_views_reach_the_leaves() -> None:
    gm = run_passes(trace_to_aten(PATTERNS["two_views"], [torch.randn(4, 6, 8)]))
    views = (torch.ops.aten.view.default, torch.ops.aten.transpose.int,
             torch.ops.aten.unsqueeze.default)
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in views:
            source = node.args[0]
            while source.target in views:  # a chain of views of one leaf
                source = source.args[0]
            assert source.op == "placeholder", gm.graph


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_permuted_and_transposed_inputs(interpret: None, dtype: torch.dtype) -> None:
    x = torch.randn(8, 6, dtype=dtype).t()
    y = torch.randn(6, 4, 8, dtype=dtype).permute(1, 2, 0)
    fm = _run(lambda a: (a + 1).t() * 2, x)
    assert len(fm.fusion_groups) == 1
    fm = _run(lambda b: (b.exp() * 2).permute(2, 0, 1).reshape(6, 32) - 1, y)
    assert len(fm.fusion_groups) == 1


def test_reshape_of_a_transposed_value_stays_correct(interpret: None) -> None:
    # a copy in eager (the transposed value is not viewable as a flat tensor): two groups
    x = torch.randn(6, 8)
    fm = _run(lambda a: a.sin().t().reshape(-1) + 1, x)
    assert len(fm.fusion_groups) == 2


def test_view_feeding_a_matmul_stays_after_its_group(interpret: None) -> None:
    # moving it would only split the centering group: the matmul reads the view eagerly anyway
    x, w = torch.randn(4, 6, 8), torch.randn(8, 5)
    fm = _run(lambda a, b: ((a - a.mean(-1, keepdim=True)) * 2).view(-1, 8) @ b, x, w)
    assert len(fm.fusion_groups) == 1


def test_outputs_that_alias_in_eager_still_alias(interpret: None) -> None:
    x = torch.randn(4, 6)
    def fn(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = a * 2
        return y, y.view(-1)
    y, flat = nvfuse.fuse(fn, (x,))(x)
    assert flat.data_ptr() == y.data_ptr()
    torch.testing.assert_close(flat, (x * 2).view(-1))


def test_expanded_output_keeps_eager_strides(interpret: None) -> None:
    x = torch.randn(4, 6, 8)
    fm = _run(lambda a: (a * 2)[:, :1].expand(4, 6, 8), x)
    assert fm(x).stride()[1] == 0


def test_random_mask_is_drawn_once(interpret: None) -> None:
    x = torch.randn(4, 6, 8)

    def fn(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.rand_like(a) > 0.5
        return keep.view(4, 48) * a.view(4, 48), keep.float() + 0
    fm = nvfuse.fuse(fn, (x,))
    dropped, keep = fm(x)
    torch.testing.assert_close(dropped, (keep.bool() * x).view(4, 48))


def test_keepdim_false_reduction_still_returned(interpret: None) -> None:
    x = torch.randn(4, 6, 8)
    fm = _run(lambda a: (a.sum(-1), a - a.amax(-1).unsqueeze(-1)), x)
    assert nvfuse.stats()["fallbacks"] == 0
    assert len(fm.kernels) <= 2


def test_torchscript_new_sizes_replan(interpret: None) -> None:
    def fn(a: torch.Tensor) -> torch.Tensor:
        return (a * 2).view(a.shape[0], -1).sin()
    traced = torch.jit.trace(fn, (torch.randn(4, 6, 8),))
    fm = nvfuse.fuse(traced)
    for rows in (4, 3, 4):
        x = torch.randn(rows, 6, 8)
        torch.testing.assert_close(fm(x), fn(x))
        assert len(fm.fusion_groups) == 1


class _ViewMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 32)
        self.down = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.gelu(self.up(x))
        a, b = h.view(x.shape[0], 2, 16).unbind(1)
        g = (a * torch.sigmoid(b)).unsqueeze(1).transpose(0, 1).squeeze(0)
        return self.down(g - g.mean(-1).unsqueeze(-1)) + x


def test_training_through_views_matches_eager(interpret: None) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model, reference = _ViewMLP(), _ViewMLP()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(8, 16)
    loss = torch.compile(model, backend="nvfuse")(x).square().mean()
    loss.backward()
    expected = reference(x).square().mean()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=f"gradient of {name}")
    assert nvfuse.stats()["fallbacks"] == 0
    torch._dynamo.reset()
