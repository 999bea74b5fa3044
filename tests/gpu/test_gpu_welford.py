"""GPU tier for Welford reductions (marker `gpu`, skipped without CUDA): the variance family and
layer norm of tests/numerics/test_welford.py on the device, outputs poisoned, checked against
eager CUDA (native_layer_norm's float32 mean / rstd for half inputs included), plus rows longer
than several block passes and the large-mean cancellation case."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import nvfuse

from gpu_support import numerics


compare = numerics("cases").compare
W = numerics("test_welford")
_make, VAR_OPS, VAR_PARAMS, PATTERNS, _tol = W._make, W.VAR_OPS, W.VAR_PARAMS, W.PATTERNS, W._tol

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]
f16, bf16, f32 = torch.float16, torch.bfloat16, torch.float32


def _check(fn: object, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
           tol: tuple[float, float] | None = None) -> None:
    fm = nvfuse.fuse(fn, inputs)
    actual, expected = fm(*inputs), fn(*inputs)  # type: ignore[operator]
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    assert nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize(("name", "corr", "dtype", "pattern", "keep"), VAR_PARAMS)
def test_variance_on_device(name: str, corr: int, dtype: torch.dtype, pattern: str,
                            keep: bool) -> None:
    shape, dims = PATTERNS[pattern]
    x = _make(shape, dtype, f"{name}{pattern}").cuda()
    fn = VAR_OPS[name]
    _check(lambda x: fn(x, dims, corr, keep), (x,), dtype, _tol(dtype))


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
@pytest.mark.parametrize("cols", [64, 1000, 5000])
def test_layer_norm_on_device(dtype: torch.dtype, cols: int) -> None:
    x, r = _make((64, cols), dtype, "x").cuda(), _make((64, cols), dtype, "r").cuda()
    w, b = _make((cols,), dtype, "w").cuda(), _make((cols,), dtype, "b").cuda()
    _check(lambda x, w, b: tuple(torch.ops.aten.native_layer_norm(x, [cols], w, b, 1e-5)),
           (x, w, b), dtype)
    fn = lambda x, r, w, b: F.gelu(F.layer_norm(x + r, (cols,), w, b))
    fm = nvfuse.fuse(fn, (x, r, w, b))
    nvfuse.reset_stats()
    compare(fm(x, r, w, b), fn(x, r, w, b), dtype)
    assert len(fm.fusion_groups) == 1 and nvfuse.stats()["launches"] == 1


def test_large_mean_on_device() -> None:
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(64, 8192, generator=g, dtype=torch.float64) + 1e4).to(f32).cuda()
    fm = nvfuse.fuse(lambda x: x.var(-1), (x,))
    exact = x.double().var(-1)
    assert ((fm(x).double() - exact).abs() / exact).max().item() < 1e-5
