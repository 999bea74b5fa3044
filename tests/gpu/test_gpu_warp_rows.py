"""GPU tier for warp rows (marker `gpu`, skipped without CUDA): the kinds, row lengths and
dtypes of tests/numerics/test_warp_rows.py on the device, outputs poisoned, against eager
CUDA; partial last blocks and many blocks of rows."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from nvfuse.schedule.kind import ScheduleKind

from gpu_support import numerics

compare = numerics("cases").compare
W = numerics("test_warp_rows")
OPS, WIDTHS, _x, _tolerance = W.OPS, W.WIDTHS, W._x, W._tolerance

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("rows", [1, 5, 9, 4099])
def test_warp_rows_on_device(op: str, width: int, rows: int) -> None:
    x = _x(op, rows, width, torch.float32).cuda()
    fm = nvfuse.fuse(OPS[op], (x,))
    compare(fm(x), OPS[op](x), torch.float32, _tolerance(op, torch.float32, width))
    assert nvfuse.stats()["fallbacks"] == 0
    assert all(k.signature[1].kind is ScheduleKind.WARP_ROW for k in fm.kernels)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_warp_rows_dtypes_on_device(op: str, dtype: torch.dtype) -> None:
    x = _x(op, 1027, 33, dtype).cuda()
    x[1, 4], x[2, 0] = float("nan"), float("-inf")
    fm = nvfuse.fuse(OPS[op], (x,))
    compare(fm(x), OPS[op](x), dtype, _tolerance(op, dtype, 33))
    assert nvfuse.stats()["fallbacks"] == 0
