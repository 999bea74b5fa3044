"""GPU tier for vector looped rows (marker `gpu`, skipped without CUDA): the cases of
tests/numerics/test_looped_rows.py on the device at full sizes (rows past the last persistent
bucket, the real schedule), outputs poisoned, against eager CUDA: every row op and argmax in
every float dtype, rows sliced at element offsets (the lanes each alignment gets), and NaN /
inf rows."""

from __future__ import annotations

import pytest
import torch

import nvfuse

from gpu_support import numerics


compare = numerics("cases").compare
T = numerics("test_looped_rows")
_make = numerics("test_reductions")._make
sum_tolerance = numerics("cases").sum_tolerance
WIDE = numerics("test_persistent").EDGES[-1] * 4  # 128K columns: the looped schedule

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def _check(op: str, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype) -> None:
    """A sum is compared within cases.sum_tolerance: eager CUDA adds in another order."""
    fn = T.ROW_OPS[op][0]
    fm = nvfuse.fuse(fn, inputs)
    actual, expected = fm(*inputs), fn(*inputs)
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    tol = sum_tolerance(inputs[0], dtype) if op == "sum" else None
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    assert nvfuse.stats()["fallbacks"] == 0
    assert fm.kernels[0].signature[1].persist == 0


@pytest.mark.parametrize("op", sorted(T.ROW_OPS))
@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
def test_looped_rows_on_device(op: str, dtype: torch.dtype) -> None:
    inputs = tuple(t.cuda() for t in T._inputs(op, WIDE, dtype, rows=256))
    _check(op, inputs, dtype)


@pytest.mark.parametrize(("dtype", "offset"), [(f32, 0), (f32, 1), (f32, 2), (bf16, 4),
                                               (bf16, 3)])
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "argmax"])
def test_sliced_rows_on_device(op: str, dtype: torch.dtype, offset: int) -> None:
    inputs = tuple(t.cuda() for t in T._inputs(op, WIDE, dtype, rows=64))
    x = _make((64, WIDE + 8), dtype, "base").cuda()[:, offset:offset + WIDE]
    _check(op, (x, *inputs[1:]), dtype)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm", "sum",
                                "argmax"])
def test_nan_and_inf_rows_on_device(op: str) -> None:
    # 256 rows: more blocks than SMs, so a sum keeps the one-kernel looped schedule (64 rows
    # of a sum split across blocks on a 132-SM GPU)
    inputs = T._inputs(op, WIDE, f32, rows=256)
    x = inputs[0].clone()
    x[0] = -float("inf")
    x[1, WIDE // 3] = float("inf")
    x[2, WIDE - 1] = float("nan")
    x[3, 0], x[3, WIDE - 1] = float("inf"), -float("inf")
    x[5, :WIDE // 2] = -float("inf")
    _check(op, (x.cuda(), *(t.cuda() for t in inputs[1:])), f32)
