"""GPU tier: the building blocks of tests/models/test_blocks.py on the device (marker `gpu`),
bigger: inference through both frontends and a training step with every gradient and buffer
checked, in float32, strict (no silent fallback), outputs poisoned before each launch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch._dynamo

from nvfuse import config
from nvfuse.runtime import executor

pytestmark = pytest.mark.gpu
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_checks import check_inference, check_training_step  # noqa: E402
from test_blocks import ConvBlock, CrossEntropyHead, MLPBlock  # noqa: E402


@pytest.fixture(autouse=True)
def _strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    monkeypatch.delenv("NVFUSE_INTERPRET", raising=False)
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)
    config.reload()
    torch._dynamo.reset()
    torch.manual_seed(0)


def _square_mean(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return module(*inputs).square().mean()


def _itself(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return module(*inputs)


# GPU reductions sum in another order than the CPU's eager kernels: fp32 over rows of a few
# hundred elements keeps ~1e-5 relative
TOL = {"rtol": 1e-5, "atol": 1e-5}


def test_mlp_block_on_device() -> None:
    x = torch.randn(8, 64, 256, device="cuda")
    check_inference(MLPBlock(256).eval().cuda(), (x,), **TOL)
    check_training_step(MLPBlock(256).train().cuda(), (x.requires_grad_(),), _square_mean,
                        **TOL, grad_rtol=1e-4, grad_atol=1e-5)


def test_conv_block_on_device() -> None:
    x = torch.randn(8, 32, 28, 28, device="cuda")
    check_inference(ConvBlock(32).eval().cuda(), (x,), **TOL)
    check_training_step(ConvBlock(32).train().cuda(), (x.requires_grad_(),), _square_mean,
                        **TOL, grad_rtol=1e-4, grad_atol=1e-5)


@pytest.mark.parametrize("rows", [512, 4096])  # 4096 x 1000 logits: nvfuse's training op
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_head_on_device(label_smoothing: float, reduction: str, rows: int) -> None:
    x = torch.randn(rows, 256, device="cuda")
    target = torch.randint(0, 1000, (rows,), device="cuda")
    target[::7] = -100
    model = CrossEntropyHead(256, 1000, label_smoothing, reduction).cuda()
    check_inference(model, (x, target), **TOL)
    check_training_step(model, (x.requires_grad_(), target), _itself, **TOL,
                        grad_rtol=1e-4, grad_atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_training_cross_entropy_over_a_large_vocabulary(dtype: torch.dtype,
                                                        reduction: str) -> None:
    """Logits of 1024 x 50304 through nvfuse's training op (row statistics saved, the
    log-probabilities never written): loss and gradient as eager's."""
    x = torch.randn(1024, 50304, device="cuda").mul_(3).to(dtype)
    target = torch.randint(0, 50304, (1024,), device="cuda")
    target[::5] = -100
    xe, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = torch.nn.functional.cross_entropy(xe, target, reduction=reduction)
    want.backward()
    got = torch.compile(lambda x, t: torch.nn.functional.cross_entropy(x, t, reduction=reduction),
                        backend="nvfuse")(xf, target)
    got.backward()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype is torch.float32 else {"rtol": 2e-2,
                                                                        "atol": 1e-2}
    torch.testing.assert_close(got, want, **tol)
    assert xf.grad is not None and xe.grad is not None
    torch.testing.assert_close(xf.grad, xe.grad, **tol)
