"""Eval-mode batch norm as elementwise ops (nvfuse/graph/batchnorm.py), both frontends.

The issue's conv block -- Conv2d -> BatchNorm2d (eval) -> ReLU -> + residual -- traced with
torch.jit.trace and with make_fx: the normalization, the ReLU and the residual add are one
fusion group; the convolution stays eager.  Training mode normalizes with the batch's
statistics (nvfuse/frontend/batch_norm.py), never the running ones."""

from __future__ import annotations

import warnings

import pytest
import torch

import nvfuse


class ConvBlock(torch.nn.Module):
    def __init__(self, channels: int = 4, affine: bool = True) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels, affine=affine)
        with torch.no_grad():  # statistics far from the defaults, so a wrong one shows
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            if affine:
                self.bn.weight.uniform_(0.5, 2)
                self.bn.bias.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))) + x


def _one_norm_group(fm: nvfuse.FusedModule) -> None:
    groups = [g for g in fm.fusion_groups if "relu" in g.ops]
    assert len(groups) == 1 and "rsqrt" in groups[0].ops and "add" in groups[0].ops, \
        fm.fusion_groups
    assert len(fm.fusion_groups) == 1


@pytest.mark.parametrize("affine", [True, False])
def test_torchscript_conv_block_is_one_group(interpret: None, affine: bool) -> None:
    model = ConvBlock(affine=affine).eval()
    x = torch.randn(2, 4, 6, 5)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = nvfuse.fuse(torch.jit.trace(model, (x,)))
        torch.testing.assert_close(fm(x), model(x))
        _one_norm_group(fm)
        y = torch.randn(3, 4, 7, 4)  # new sizes reuse the size-generic plan
        torch.testing.assert_close(fm(y), model(y))
    assert nvfuse.stats()["fallbacks"] == 0


def test_fx_conv_block_is_one_group(interpret: None) -> None:
    model = ConvBlock().eval()
    x = torch.randn(2, 4, 6, 5)
    with torch.no_grad():
        fm = nvfuse.fuse(model, (x,))
        torch.testing.assert_close(fm(x), model(x))
    _one_norm_group(fm)


def test_channels_last_keeps_layout(interpret: None) -> None:
    model = ConvBlock().eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 6, 5).to(memory_format=torch.channels_last)
    with torch.no_grad():
        fm = nvfuse.fuse(model, (x,))
        out, expected = fm(x), model(x)
    torch.testing.assert_close(out, expected)
    assert out.stride() == expected.stride()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_functional_batch_norm_without_affine(interpret: None, dtype: torch.dtype) -> None:
    stats = torch.float64 if dtype == torch.float64 else torch.float32  # eager's CPU rule
    mean, var = torch.randn(3, dtype=stats), torch.rand(3, dtype=stats) + 0.5

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.batch_norm(x, mean, var, training=False, eps=1e-3) * 2

    x = torch.randn(4, 3, 5, dtype=dtype)
    fm = nvfuse.fuse(fn, (x,))
    out = fm(x)
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(out, fn(x), **tol)
    assert out.dtype == dtype and len(fm.fusion_groups) == 1


def test_training_mode_uses_batch_statistics(interpret: None) -> None:
    import copy

    model = ConvBlock().train()
    reference = copy.deepcopy(model)
    x = torch.randn(2, 4, 6, 5)
    with torch.no_grad():
        fm = nvfuse.fuse(model, [x])
        out = fm(x)
        expected = reference(x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(model.bn.running_mean, reference.bn.running_mean)
    torch.testing.assert_close(model.bn.running_var, reference.bn.running_var)
    assert not any("aten::_native_batch_norm_legit_no_training" in g.ops
                   for g in fm.fusion_groups)
