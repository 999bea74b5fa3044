"""GPU tier for (value, index) pair reductions and vector norms (marker `gpu`, skipped without
CUDA): the cases of tests/numerics/test_argreduce.py and test_vector_norm.py on the device,
outputs poisoned, checked against eager CUDA, plus long rows (several passes of a 1024-thread
block) full of ties and NaNs, where the cross-warp combine decides the index."""

from __future__ import annotations

import math

import pytest
import torch

import nvfuse

from gpu_support import numerics


compare = numerics("cases").compare
A = numerics("test_argreduce")
N = numerics("test_vector_norm")

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


def _check(fn: object, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
           tol: tuple[float, float] | None = None, groups: int = 1) -> None:
    inputs = tuple(t.cuda() for t in inputs)
    fm = nvfuse.fuse(fn, inputs)  # type: ignore[arg-type]
    expected, actual = fn(*inputs), fm(*inputs)  # type: ignore[operator]
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    assert nvfuse.stats()["fallbacks"] == 0 and len(fm.fusion_groups) == groups


@pytest.mark.parametrize(("op", "dtype", "pattern", "keep"), A.PARAMS)
def test_arg_reduction_on_device(op: str, dtype: torch.dtype, pattern: str, keep: bool) -> None:
    shape, dim = A.PATTERNS[pattern]
    fn, _ = A.OPS[op]
    _check(lambda x: fn(x, dim, keep), (A.make(shape, dtype, op + pattern),), dtype)


@pytest.mark.parametrize("name", sorted(A.FUSED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fused_arg_pattern_on_device(name: str, dtype: torch.dtype) -> None:
    fn, make = A.FUSED[name]
    _check(fn, make(dtype), dtype)


@pytest.mark.parametrize("op", ["argmax", "argmin", "max_dim", "min_dim"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64], ids=str)
def test_long_rows_on_device(op: str, dtype: torch.dtype) -> None:
    fn, _ = A.OPS[op]
    x = A.make((64, 20000), dtype, "long" + op)  # block 1024, ~20 columns per thread
    _check(lambda x: fn(x, -1, False), (x,), dtype)


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("pattern", sorted(N.PATTERNS))
@pytest.mark.parametrize("dtype", N.FLOATS, ids=str)
@pytest.mark.parametrize("ord_", N.ORDS, ids=str)
def test_vector_norm_on_device(ord_: float, dtype: torch.dtype, pattern: str,
                               keep: bool) -> None:
    shape, dim = N.PATTERNS[pattern]
    x = N.make(shape, dtype, f"{ord_}{pattern}", specials=pattern != "all")
    n = math.prod(shape)
    _check(lambda x: torch.linalg.vector_norm(x, ord_, dim=dim, keepdim=keep), (x,), dtype,
           N.tol(dtype, n))


@pytest.mark.parametrize("name", sorted(N.FUSED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fused_norm_pattern_on_device(name: str, dtype: torch.dtype) -> None:
    x = N.make((256, 5000), dtype, name)
    _check(N.FUSED[name], (x,), dtype, N.tol(dtype, 5000))
