"""GPU tier for split reductions (marker `gpu`, skipped without CUDA): few rows of many
elements at the default thresholds (2^26 elements summed: 256 chunks), two launches, against
eager CUDA (in float64 for the reference of float32 sums), outputs poisoned, bitwise
deterministic across runs, and no recompile for a new size in the same bucket."""

from __future__ import annotations

import pytest
import torch

import nvfuse

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


CASES = {
    "sum": lambda x: x.sum(),
    "mean_rows": lambda x: x.view(4, -1).mean(-1),
    "amax": lambda x: x.amax(),
    "var": lambda x: x.var(),
    "norm": lambda x: torch.linalg.vector_norm(x),
    "sum_sq_scaled": lambda x: (x * x).sum() * 0.5,
    "column_sum": lambda x: x.view(-1, 8).sum(0),      # the column schedule, split
    "column_var": lambda x: x.view(-1, 16).var(0),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_split_on_device(name: str, dtype: torch.dtype) -> None:
    g = torch.Generator(device="cuda").manual_seed(1)
    x = (torch.randn(1 << 26, device="cuda", generator=g) + 0.5).to(dtype)
    fn = CASES[name]
    fm = nvfuse.fuse(fn, (x,))
    nvfuse.reset_stats()
    got = fm(x)
    assert nvfuse.stats()["launches"] == 2 and nvfuse.stats()["fallbacks"] == 0
    want = fn(x.double()).to(got.dtype)
    rtol = 1e-4 if dtype is torch.float32 else 1e-2  # one bf16 rounding of the result
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=1e-2)
    assert torch.equal(got, fm(x))  # deterministic: no atomics


def test_new_size_reuses_the_kernels() -> None:
    fm = nvfuse.fuse(lambda x: x.sum(), (torch.randn(1 << 26, device="cuda"),))
    fm(torch.randn(1 << 26, device="cuda"))
    nvfuse.reset_stats()
    x = torch.randn((1 << 26) + 12345, device="cuda")
    torch.testing.assert_close(fm(x).double(), x.double().sum(), rtol=1e-5, atol=1e-2)
    assert nvfuse.stats()["compiles"] == 0
