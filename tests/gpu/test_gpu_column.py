"""GPU tier for reductions over non-trailing dims (marker `gpu`, skipped without CUDA): the ops,
dim patterns and fused column patterns of tests/numerics/test_column_reductions.py on the
device, outputs poisoned, against eager CUDA; large columns (many blocks, long reduced
extents); training batch norm (running stats included) and group norm."""

from __future__ import annotations

import pytest
import torch

import nvfuse

from gpu_support import numerics


compare = numerics("cases").compare
C = numerics("test_column_reductions")
FUSED, PATTERNS, REDUCE_PARAMS, OPS = C.FUSED, C.PATTERNS, C.REDUCE_PARAMS, C.REDUCE_OPS
BN_SHAPES, _make, _tol = C.BN_SHAPES, C._make, C._tol

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


@pytest.mark.parametrize(("op", "dtype", "pattern", "keep"), REDUCE_PARAMS)
def test_column_reduction_on_device(op: str, dtype: torch.dtype, pattern: str,
                                    keep: bool) -> None:
    shape, dims, transposed, _ = PATTERNS[pattern]
    fn, _ = OPS[op]
    x = _make(shape, dtype, f"{op}{pattern}", near_one=op == "prod",
              transposed=transposed).cuda()
    fm = nvfuse.fuse(lambda x: fn(x, dims, keep), (x,))
    compare(fm(x), fn(x, dims, keep), dtype, _tol(op, dtype, x.numel()))
    assert nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fused_column_pattern_on_device(name: str, dtype: torch.dtype) -> None:
    fn, make = FUSED[name]
    inputs = tuple(t.cuda() for t in make(dtype))
    fm = nvfuse.fuse(fn, inputs)
    compare(fm(*inputs), fn(*inputs), dtype, _tol("sum", dtype, 200))
    assert nvfuse.stats()["fallbacks"] == 0 and len(fm.fusion_groups) == 1


@pytest.mark.parametrize("shape", [(8192, 1024), (100000, 64), (7, 5000), (3, 70, 999)])
def test_large_columns_on_device(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, device="cuda")
    fm = nvfuse.fuse(lambda x: (x.sum(0), x.var(0)), (x,))
    for a, e in zip(fm(x), (x.sum(0), x.var(0))):
        compare(a, e, torch.float32, _tol("sum", torch.float32, shape[0]))
    assert nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("layout", sorted(BN_SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_batch_norm_training_on_device(dtype: torch.dtype, layout: str, affine: bool) -> None:
    shape, channels_last = BN_SHAPES[layout]
    c = shape[1]
    x = (_make(shape, dtype, "bn" + layout) + 3).cuda()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = ((_make((c,), dtype, "bw").cuda(), _make((c,), dtype, "bb").cuda()) if affine
            else (None, None))
    stats = [torch.randn(c, device="cuda"), torch.rand(c, device="cuda") + 0.5]

    def fn(x: torch.Tensor, rm: torch.Tensor, rv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.aten.native_batch_norm(x, w, b, rm, rv, True, 0.2, 1e-5)

    eager = [s.clone() for s in stats]
    expected = fn(x, *eager)
    fm = nvfuse.fuse(fn, (x, *[s.clone() for s in stats]))
    got = fm(x, *stats)
    tol = _tol("sum", dtype, 200)
    for a, e in zip(got, expected):
        compare(a, e, dtype, tol)
    for s, e in zip(stats, eager):
        compare(s, e, torch.float32, tol)
    assert nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_group_norm_on_device(dtype: torch.dtype, affine: bool) -> None:
    x = (_make((4, 32, 9, 11), dtype, "gn") + 1).cuda()
    w, b = ((torch.randn(32, device="cuda", dtype=dtype),
             torch.randn(32, device="cuda", dtype=dtype)) if affine else (None, None))

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.aten.native_group_norm(x, w, b, 4, 32, 99, 8, 1e-5)

    fm = nvfuse.fuse(fn, (x,))
    for a, e in zip(fm(x), fn(x)):
        compare(a, e, dtype, _tol("sum", dtype, 400))
    assert nvfuse.stats()["fallbacks"] == 0
