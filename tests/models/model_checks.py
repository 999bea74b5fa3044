"""Checks shared by the model tests (tests/models) and their GPU tier (tests/gpu).

- `check_inference`: a module in eval mode through nvfuse.fuse(module, inputs) (the FX
  frontend) and nvfuse.fuse(torch.jit.trace(module, inputs)) (TorchScript), outputs matching
  eager; returns both fused modules so a test can look at their groups.
- `check_training_step`: one step through torch.compile(backend="nvfuse") against a deep copy
  run eagerly: the loss, every parameter's gradient, every input's gradient and every buffer
  (batch norm's running statistics) match.
- `assert_fused_without_fallback`: kernels really ran and no group fell back.
Tests run these with NVFUSE_STRICT=1, so a group that cannot be fused raises instead.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

import nvfuse

Loss = Callable[[Callable[..., Any], Sequence[Any]], torch.Tensor]


def assert_fused_without_fallback() -> None:
    stats = nvfuse.stats()
    assert stats["launches"] > 0 and stats["fallbacks"] == 0, stats


def check_inference(module: torch.nn.Module, inputs: Sequence[Any], rtol: float = 1.3e-6,
                    atol: float = 1e-5) -> tuple[nvfuse.FusedModule, nvfuse.FusedModule]:
    """`module` fused through both frontends, each matching eager on `inputs` (no grad)."""
    inputs = tuple(inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning, deprecation of torch.jit
        expected = module(*inputs)
        fx_fused = nvfuse.fuse(module, inputs)
        torch.testing.assert_close(fx_fused(*inputs), expected, rtol=rtol, atol=atol)
        ts_fused = nvfuse.fuse(torch.jit.trace(module, inputs, strict=False))
        torch.testing.assert_close(ts_fused(*inputs), expected, rtol=rtol, atol=atol)
    assert_fused_without_fallback()
    return fx_fused, ts_fused


def _fresh(inputs: Sequence[Any]) -> tuple[Any, ...]:
    """Inputs for one side of a comparison: leaves requiring grad are cloned, so each side
    accumulates its own gradient."""
    return tuple(t.detach().clone().requires_grad_() if isinstance(t, torch.Tensor)
                 and t.requires_grad else t for t in inputs)


def check_training_step(model: torch.nn.Module, inputs: Sequence[Any], loss: Loss, *,
                        rtol: float = 1.3e-6, atol: float = 1e-5, grad_rtol: float = 1e-5,
                        grad_atol: float = 1e-5,
                        reference: torch.nn.Module | None = None,
                        fused: Callable[..., Any] | None = None) -> torch.Tensor:
    """One training step of `loss(model, inputs)` through `fused` (default:
    torch.compile(model, backend="nvfuse")) against `reference` (default: a deep copy of
    `model`) run eagerly.  The loss, every parameter's and input's gradient and every buffer
    match; kernels ran without fallback.  Returns the fused step's loss."""
    reference = copy.deepcopy(model) if reference is None else reference
    compiled = torch.compile(model, backend="nvfuse") if fused is None else fused
    ours, theirs = _fresh(inputs), _fresh(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        actual = loss(compiled, ours)
        actual.backward()
        expected = loss(reference, theirs)
        expected.backward()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None, name
            continue
        torch.testing.assert_close(p.grad, q.grad, rtol=grad_rtol, atol=grad_atol,
                                   msg=f"gradient of {name}")
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if isinstance(a, torch.Tensor) and a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=grad_rtol, atol=grad_atol,
                                       msg=f"gradient of input {i}")
    for (name, a), b in zip(model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=f"buffer {name}")
    assert_fused_without_fallback()
    return actual
