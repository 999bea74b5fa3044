"""GPU tier for row reductions (marker `gpu`, skipped without CUDA): the reduction ops and the
fused patterns of tests/numerics/test_reductions.py on the device, outputs poisoned, checked
against eager CUDA, plus large rows (several passes of the block) and row-count reuse."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from nvfuse.runtime import kernels

from gpu_support import numerics


compare = numerics("cases").compare
R = numerics("test_reductions")
FUSED, PATTERNS, REDUCE_PARAMS, SOFTMAX_OPS = R.FUSED, R.PATTERNS, R.REDUCE_PARAMS, R.SOFTMAX_OPS
OPS, _make, _rmsnorm, _tol = R.REDUCE_OPS, R._make, R._rmsnorm, R._tol

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


@pytest.mark.parametrize(("op", "dtype", "pattern", "keep"), REDUCE_PARAMS)
def test_reduction_on_device(op: str, dtype: torch.dtype, pattern: str, keep: bool) -> None:
    shape, dims = PATTERNS[pattern]
    fn, _ = OPS[op]
    x = _make(shape, dtype, f"{op}{pattern}", near_one=op == "prod").cuda()
    fm = nvfuse.fuse(lambda x: fn(x, dims, keep), (x,))
    n = shape[-1] * (shape[-2] if len(dims) == 2 else 1)
    compare(fm(x), fn(x, dims, keep), dtype, _tol(op, dtype, n))
    assert nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize("name", sorted(FUSED) + sorted(SOFTMAX_OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fused_pattern_on_device(name: str, dtype: torch.dtype) -> None:
    if name in SOFTMAX_OPS:
        fn, inputs = SOFTMAX_OPS[name], (_make((64, 5000), dtype, name),)
    else:
        fn, make = FUSED[name]
        inputs = make(dtype)
    inputs = tuple(t.cuda() for t in inputs)
    fm = nvfuse.fuse(fn, inputs)
    expected, actual = fn(*inputs), fm(*inputs)
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, _tol("sum", dtype, 5000))
    assert nvfuse.stats()["fallbacks"] == 0 and len(fm.fusion_groups) == 1


def test_new_row_count_reuses_the_kernel_on_device() -> None:
    kernels.clear()  # the kernel cache is process-wide: count this test's compiles alone
    w = torch.randn(4096, device="cuda")
    for rows in (8, 33, 4096):
        x = torch.randn(rows, 4096, device="cuda")
        fm = nvfuse.fuse(_rmsnorm, (x, w))
        torch.testing.assert_close(fm(x, w), _rmsnorm(x, w))
    assert nvfuse.stats()["compiles"] == 1
