"""logsumexp as one fused row-reduction kernel, against eager, including infinite rows."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from nvfuse.runtime import executor

INF = float("inf")


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("dims", "keepdim"), [(-1, False), (-1, True), ((1, 2), False)])
def test_logsumexp(dtype: torch.dtype, dims: object, keepdim: bool) -> None:
    x = (torch.randn(5, 7, 33) * 4).to(dtype)
    x[0, 0, :] = -INF          # all -inf row: -inf
    x[1, 2, 3] = INF           # +inf element: +inf
    x[2, 1, 5] = float("nan")  # NaN propagates
    # an epilogue on a keepdim=False result is not fused yet (it would run eagerly): only add one
    # when the dims are kept
    if keepdim:
        fn = lambda t: torch.logsumexp(t * 1.5, dims, keepdim=True) + 1
    else:
        fn = lambda t: torch.logsumexp(t * 1.5, dims)
    fm = nvfuse.fuse(fn, (x,))
    out, ref = fm(x), fn(x)
    assert len(fm.kernels) == 1 and out.shape == ref.shape and out.dtype == ref.dtype
    tol = 2e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol, equal_nan=True)
    for arch in ("sm_80", "sm_90"):
        nvfuse.compile_source(fm.kernels[0].source, arch)
