"""GPU tier for the persistent and online row schedules (marker `gpu`, skipped without CUDA):
the cases of tests/numerics/test_persistent.py on the device at large row counts, outputs
poisoned, checked against eager CUDA: every op across the persistent bucket edges and past
them, every float dtype, vector lanes on sliced rows, NaN / inf rows, and online softmax on
50,000-wide rows."""

from __future__ import annotations

import pytest
import torch

import nvfuse

from gpu_support import numerics


compare = numerics("cases").compare
T = numerics("test_persistent")
_make = numerics("test_reductions")._make
sum_tolerance = numerics("cases").sum_tolerance

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def _check(fn: object, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
           op: str = "") -> None:
    """`op` "sum": eager CUDA adds in another order (cases.sum_tolerance)."""
    fm = nvfuse.fuse(fn, inputs)
    actual, expected = fm(*inputs), fn(*inputs)  # type: ignore[operator]
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    tol = sum_tolerance(inputs[0], dtype) if op == "sum" else None
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    assert nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize("op", sorted(T.OPS))
@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
@pytest.mark.parametrize("width", T.WIDTHS)
def test_widths_on_device(op: str, dtype: torch.dtype, width: int) -> None:
    inputs = tuple(t.cuda() for t in T._inputs(op, width, dtype, rows=1024))
    _check(T.OPS[op][0], inputs, dtype, op)


@pytest.mark.parametrize(("dtype", "width", "offset"), [
    (f32, 4096, 0), (f32, 4094, 0), (f32, 4096, 1), (bf16, 8192, 0), (f16, 1000, 2)])
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm"])
def test_vector_rows_on_device(op: str, dtype: torch.dtype, width: int, offset: int) -> None:
    inputs = tuple(t.cuda() for t in T._inputs(op, width, dtype, rows=512))
    x = _make((512, width + 8), dtype, "base").cuda()[:, offset:offset + width]
    _check(T.OPS[op][0], (x, *inputs[1:]), dtype)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm", "sum"])
@pytest.mark.parametrize("width", [300, 8192, 50_000])
def test_nan_and_inf_rows_on_device(op: str, width: int) -> None:
    inputs = T._inputs(op, width, f32, rows=64)
    x = numerics("cases").special_rows(inputs[0])
    _check(T.OPS[op][0], (x.cuda(), *(t.cuda() for t in inputs[1:])), f32, op)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
def test_online_softmax_on_device(op: str, dtype: torch.dtype) -> None:
    x = (_make((256, 50_000), dtype, "wide") * 4).cuda()
    _check(T.OPS[op][0], (x,), dtype)
