"""GPU tier (marker `gpu`, skipped without CUDA): the numerics cases on the device with
poisoned outputs and fresh random inputs per check, plus launch-path behaviour that only a
device shows (current stream, new batch sizes without recompiles, non-contiguous inputs)."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import pytest
import torch

import nvfuse
from nvfuse.runtime import kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "numerics"))
from cases import CASES, OpCase, compare

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]

PARAMS = [pytest.param(case, dtype, id=f"{case.name}-{str(dtype).split('.')[-1]}")
          for case in CASES for dtype in case.dtypes]


def _cuda(inputs: tuple) -> tuple:
    return tuple(t.cuda() if isinstance(t, torch.Tensor) else t for t in inputs)


@pytest.mark.parametrize(("case", "dtype"), PARAMS)
def test_op_on_device(case: OpCase, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(zlib.crc32(case.name.encode()))
    inputs = _cuda(case.make_inputs(dtype, gen))
    fm = nvfuse.fuse(case.fn, inputs)
    expected = case.expected(*inputs)
    actual = fm(*inputs)
    torch.cuda.synchronize()
    assert nvfuse.stats()["launches"] >= 1 and nvfuse.stats()["fallbacks"] == 0
    compare(actual, expected, dtype, case.tolerance(dtype))
    fresh = _cuda(case.make_inputs(dtype, gen))  # same kernel, new random data
    compare(fm(*fresh), case.expected(*fresh), dtype, case.tolerance(dtype))


def test_new_batch_size_reuses_the_kernel() -> None:
    kernels.clear()  # the kernel cache is process-wide: count this test's compiles alone
    fn = lambda x, b: torch.nn.functional.gelu(x + b) * 2
    b = torch.randn(1024, device="cuda")
    fm = nvfuse.fuse(fn, (torch.randn(8, 1024, device="cuda"), b))
    for rows in (8, 33, 4096):
        x = torch.randn(rows, 1024, device="cuda")
        torch.testing.assert_close(fm(x, b), fn(x, b))
    assert nvfuse.stats()["compiles"] == 1
    assert len(fm.kernels) == 1


def test_runs_on_the_current_stream() -> None:
    fn = lambda x: torch.sigmoid(x) * x
    x = torch.randn(1 << 22, device="cuda")
    fm = nvfuse.fuse(fn, (x,))
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = x * 3  # produced on the side stream: the fused call must order after it
        out = fm(y)
    side.synchronize()
    torch.testing.assert_close(out, fn(x * 3))


def test_large_noncontiguous_and_misaligned_inputs() -> None:
    fn = lambda a, b: a * b + 1
    a = torch.randn(2048, 4097, device="cuda")[:, 1:]  # misaligned rows
    b = torch.randn(4096, 2048, device="cuda").t()     # transposed
    fm = nvfuse.fuse(fn, (a, b))
    torch.testing.assert_close(fm(a, b), fn(a, b))


def test_demo_runs_on_the_device() -> None:
    from nvfuse.demo import main

    assert main() == 0


def test_dropout_on_device() -> None:
    fn = lambda x: torch.nn.functional.dropout(x, 0.25, training=True) * 3
    x = torch.rand(1 << 20, device="cuda") + 0.5
    fm = nvfuse.fuse(fn, (x,))
    torch.manual_seed(3)
    a = fm(x)
    torch.manual_seed(3)
    b = fm(x)
    kept = a != 0
    assert torch.equal(a, b) and abs(kept.float().mean().item() - 0.75) < 0.005
    torch.testing.assert_close(a[kept], (x * 3 / 0.75)[kept])
    assert len(fm.kernels) == 1
