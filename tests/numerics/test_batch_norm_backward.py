"""Training batch norm's backward fused (nvfuse/frontend/batch_norm.py `_backward`) against
eager's `native_batch_norm_backward` through the interpreter (strict, outputs poisoned):
float32/float64/float16/bfloat16, [N, C], [N, C, L] and NCHW inputs, contiguous and channels
last, with and without a weight, every output mask, a mixed-precision weight, NaN gradients;
a training step of conv + batch norm + ReLU through torch.compile with no eager batch-norm
backward left; every generated kernel compiled by NVRTC."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from cases import check_fused
from test_reductions import _make

import nvfuse
from nvfuse.frontend.batch_norm import cudnn_batch_norm_backward
from nvfuse.runtime import executor
from nvrtc_batch import compile_all

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_checks import check_training_step

aten = torch.ops.aten
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
TOL = {f32: (1e-5, 1e-5), f64: (1e-12, 1e-12), f16: (5e-3, 5e-3), bf16: (3e-2, 3e-2)}
_generated: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _operands(shape: tuple[int, ...], dtype: torch.dtype, label: str,
              weight_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """(g, x, weight, save_mean, save_invstd) as a training forward would save them."""
    x = _make(shape, dtype, f"bn x {label}")
    g = _make(shape, dtype, f"bn g {label}")
    channels = shape[1]
    dims = [d for d in range(len(shape)) if d != 1]
    compute = f64 if dtype is f64 else f32
    # eager's CPU kernels save half statistics in x's dtype, float32 with a float32 weight
    stats = compute if weight_dtype is not None else dtype
    mean = x.to(compute).mean(dims).to(stats)
    invstd = (x.to(compute).var(dims, unbiased=False) + 1e-5).rsqrt().to(stats)
    weight = _make((channels,), weight_dtype or dtype, f"bn w {label}") + 1.5
    return g, x, weight, mean, invstd


def _backward(mask: list[bool], with_weight: bool):  # type: ignore[no-untyped-def]
    def fn(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, mean: torch.Tensor,
           invstd: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = aten.native_batch_norm_backward(g, x, w if with_weight else None, None, None,
                                              mean, invstd, True, 1e-5, mask)
        return tuple(t for t, wanted in zip(out, mask) if wanted)
    return fn


@pytest.mark.parametrize("dtype", [f32, f64, f16, bf16], ids=str)
@pytest.mark.parametrize("shape", [(64, 24), (8, 12, 33), (4, 6, 9, 11)], ids=str)
def test_backward_matches_eager(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    operands = _operands(shape, dtype, f"{dtype} {shape}")
    check_fused(_backward([True, True, True], True), operands, dtype, TOL[dtype],
                generated=_generated)


@pytest.mark.parametrize("mask", [[True, False, False], [False, True, True],
                                  [True, True, False], [False, False, True]], ids=str)
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "no-weight"])
def test_output_masks_and_no_weight(mask: list[bool], with_weight: bool) -> None:
    operands = _operands((16, 10, 7, 5), f32, f"mask {mask}")
    check_fused(_backward(mask, with_weight), operands, f32, TOL[f32], generated=_generated)


def test_channels_last_and_mixed_precision_weight() -> None:
    g, x, w, mean, invstd = _operands((4, 16, 6, 10), bf16, "cl", weight_dtype=f32)
    g = g.contiguous(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    fm = check_fused(_backward([True, True, True], True), (g, x, w, mean, invstd), bf16,
                     TOL[bf16], generated=_generated)
    out = fm(g, x, w, mean, invstd)
    assert out[0].is_contiguous(memory_format=torch.channels_last)  # eager's layout
    assert out[1].dtype == out[2].dtype == f32


def test_nan_gradient_stays_in_its_channel() -> None:
    g, x, w, mean, invstd = _operands((8, 5, 6, 6), f32, "nan")
    g[3, 2, 1, 4] = float("nan")
    check_fused(_backward([True, True, True], True), (g, x, w, mean, invstd), f32, TOL[f32])


def test_cudnn_form_is_the_native_one() -> None:
    """cuDNN's backward (x first, the saved inverse std as "save_var") gives the native
    decomposition's three gradients."""
    g, x, w, mean, invstd = _operands((6, 8, 5, 5), f32, "cudnn")
    got = cudnn_batch_norm_backward(x, g, w, None, None, mean, invstd, 1e-5,
                                    torch.empty(0, dtype=torch.uint8))
    want = aten.native_batch_norm_backward(g, x, w, None, None, mean, invstd, True, 1e-5,
                                           [True, True, True])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_eval_mode_keeps_the_op() -> None:
    g, x, w, mean, invstd = _operands((8, 4, 3, 3), f32, "eval")
    rm, rv = torch.zeros(4), torch.ones(4)

    def fn(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return aten.native_batch_norm_backward(g, x, w, rm, rv, None, None, False, 1e-5,
                                               [True, False, False])[0]
    fm = nvfuse.fuse(fn, (g, x))
    torch.testing.assert_close(fm(g, x), fn(g, x))


def test_training_step_has_no_eager_batch_norm_backward() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU())
    x = torch.randn(4, 3, 12, 12)
    backward = str(nvfuse.explain(model, x, training=True)).split("== backward", 1)[1]
    # ReLU's backward, both channel sums and grad_input: one kernel; only the convolution's
    # backward runs eagerly
    assert "batch_norm" not in backward and backward.count("  group ") == 1
    assert backward.count("  eager ") == 1 and "eager aten::convolution_backward" in backward
    torch._dynamo.reset()
    check_training_step(model, (x,), lambda m, inputs: m(*inputs).square().mean(),
                        rtol=1e-5, grad_rtol=1e-4, grad_atol=1e-5)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "batch_norm_backward")
