"""torch.compile(backend="nvfuse") on a network with training batch norm and bias gradients,
interpreted: forward (AOTAutograd's functional batch norm), backward (column reductions whose
keepdim=False results feed further work) and running stats, against eager."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import nvfuse


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.BatchNorm1d(24),
                               torch.nn.ReLU(), torch.nn.Linear(24, 5))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nc", "conv"])
def test_batch_norm_training_step_matches_eager(channels_last: bool, interpret: None) -> None:
    torch.manual_seed(0)
    if channels_last:
        model: torch.nn.Module = torch.nn.Sequential(torch.nn.BatchNorm2d(6), torch.nn.SiLU())
        x = torch.randn(4, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    else:
        model, x = _net(), torch.randn(32, 12)
    reference = type(model)(*[m for m in _copy(model)])
    compiled = torch.compile(model, backend="nvfuse")
    for _ in range(2):
        loss = compiled(x).square().mean()
        loss.backward()
        expected = reference(x).square().mean()
        expected.backward()
        torch.testing.assert_close(loss, expected)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=f"gradient of {name}")
    for (name, b), c in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(b, c, msg=f"buffer {name}")
    assert nvfuse.stats()["fallbacks"] == 0


def _copy(model: torch.nn.Module) -> list[torch.nn.Module]:
    import copy

    return list(copy.deepcopy(model))


def test_backward_bias_gradients_fuse() -> None:
    report = str(nvfuse.explain(_net(), torch.randn(32, 12), training=True))
    assert "eager aten::sum" not in report
    assert "eager aten::_native_batch_norm_legit_functional" not in report
