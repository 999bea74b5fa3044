"""A training step's optimizer through nvfuse: AdamW over ~150 parameter tensors of mixed sizes
and dtypes in a handful of launches (horizontal fusion), matching eager over five steps, with
explain's count equal to the launches; and the whole-step kernel counts of the README's table
pinned as upper bounds."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import nvfuse
from bench.cases import adamw_step, gpt2_parameter_shapes



@pytest.fixture(autouse=True)
def _setup(interpret: None) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)


def _adamw_state(dtypes: tuple[torch.dtype, ...]) -> tuple[torch.Tensor, ...]:
    """GPT-2 small's 148 parameter shapes scaled down (one value in 64 per dim, at least 1),
    parameters cycling through `dtypes`; grads and moments in the parameter's dtype (as
    torch.optim keeps them), fp32 step counts."""
    g = torch.Generator().manual_seed(0)
    shapes = [tuple(max(1, n // 64) for n in s) for s in gpt2_parameter_shapes()]
    params = [(torch.randn(s, generator=g) * 0.02).to(dtypes[i % len(dtypes)])
              for i, s in enumerate(shapes)]
    grads = [(torch.randn(p.shape, generator=g) * 0.01).to(p.dtype) for p in params]
    m = [(torch.randn(p.shape, generator=g) * 1e-3).to(p.dtype) for p in params]
    v = [(torch.rand(p.shape, generator=g) * 1e-5).to(p.dtype) for p in params]
    steps = [torch.full((), 3.0) for _ in params]
    return (*params, *grads, *m, *v, *steps)


# bf16: within one unit in the last place at the parameters' scale (~0.02: 2^-13) after five
# steps, as eager's per-op roundings and nvfuse's per-op roundings may land either side
TOLERANCE = {torch.float32: (1e-5, 1e-7), torch.bfloat16: (1.6e-2, 2 ** -13)}


@pytest.mark.parametrize("dtypes", [(torch.float32,), (torch.float32, torch.bfloat16)],
                         ids=["fp32", "fp32+bf16"])
def test_adamw_over_148_tensors_in_few_launches(dtypes: tuple[torch.dtype, ...]) -> None:
    state = _adamw_state(dtypes)
    n = len(state) // 5
    expected = [t.clone() for t in state]
    actual = [t.clone() for t in state]
    pointers = [t.data_ptr() for t in actual]
    fm = nvfuse.fuse(adamw_step, actual)
    report = nvfuse.explain(adamw_step, *[t.clone() for t in state])
    for _ in range(5):
        adamw_step(*expected)
        nvfuse.reset_stats()
        fm(*actual)
        launches = nvfuse.stats()["launches"]
        assert nvfuse.stats()["fallbacks"] == 0
    for want, got in zip(expected, actual):
        rtol, atol = TOLERANCE[want.dtype]
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    assert [t.data_ptr() for t in actual] == pointers  # updated in place
    assert launches == report.kernels_per_step, str(report)
    assert launches <= 4 * len(dtypes), str(report)  # at most 4 per dtype combination
    assert n == 148


# Upper bounds on the README's whole-step table (explain; forward + backward + optimizer).
WHOLE_STEP = {"resnet-18 + SGD(momentum)": (90, 2), "GPT-2 (2 layers) + AdamW": (72, 2)}


@pytest.mark.parametrize("name", sorted(WHOLE_STEP))
def test_whole_step_kernel_counts(name: str) -> None:
    import whole_step

    if name.startswith("GPT-2"):
        pytest.importorskip("transformers")
    total_bound, optimizer_bound = WHOLE_STEP[name]
    _, optimizer, total = whole_step.kernels_per_step(whole_step.SETUPS[name]())
    assert optimizer <= optimizer_bound and total <= total_bound, (optimizer, total)
