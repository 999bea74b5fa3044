"""GPU tier for horizontal launches (marker `gpu`, skipped without CUDA): independent groups of
mixed dtypes, layouts and schedules in one kernel against eager CUDA, outputs poisoned; an
optimizer step over many tensors in a few launches, updated in place."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from bench.cases import adamw_step, gpt2_parameter_shapes

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


def _independent(a, b, c, d, e):
    return (a.sin() * 2, (b.float() * 3).exp(), c.sum(-1), d.cos() + 1,
            torch.softmax(e, -1), e.amax(-1))


def _inputs(scale: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device="cuda").manual_seed(scale)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device="cuda", generator=g)

    return (r(1000 * scale + 3), r(37, 5 * scale).half(), r(6 * scale, 48),
            r(3, 7 * scale)[:, ::2], r(4 * scale, 2000))


@pytest.mark.parametrize("scale", [1, 64])
def test_independent_groups_in_one_launch(scale: int) -> None:
    xs = _inputs(scale)
    fm = nvfuse.fuse(_independent, xs)
    for _ in range(2):  # prepared, then replayed
        nvfuse.reset_stats()
        outs = fm(*xs)
        torch.cuda.synchronize()
        assert nvfuse.stats()["launches"] < 6 and nvfuse.stats()["fallbacks"] == 0
        for out, ref in zip(outs, _independent(*xs)):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert nvfuse.explain(_independent, *xs).kernels_per_step == nvfuse.stats()["launches"]


def test_adamw_gpt2_small_in_a_few_launches() -> None:
    shapes = gpt2_parameter_shapes()
    g = torch.Generator(device="cuda").manual_seed(0)

    def r(shape: tuple[int, ...], scale: float) -> torch.Tensor:
        return torch.randn(shape, device="cuda", generator=g) * scale

    state = ([r(s, 0.02) for s in shapes] + [r(s, 0.01) for s in shapes]
             + [r(s, 1e-3) for s in shapes] + [r(s, 1e-3).abs() for s in shapes]
             + [torch.full((), 3.0, device="cuda") for _ in shapes])
    expected = [t.clone() for t in state]
    fm = nvfuse.fuse(adamw_step, state)
    pointers = [t.data_ptr() for t in state]
    for _ in range(3):
        adamw_step(*expected)
        nvfuse.reset_stats()
        fm(*state)
    torch.cuda.synchronize()
    assert nvfuse.stats()["fallbacks"] == 0
    assert nvfuse.stats()["launches"] <= 4
    assert [t.data_ptr() for t in state] == pointers
    for want, got in zip(expected, state):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
