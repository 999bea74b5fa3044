"""GPU tier for shared-memory rows (marker `gpu`, skipped without CUDA): the cases of
tests/numerics/test_shared_rows.py on the device at full sizes, outputs poisoned, against eager
CUDA: rows that fit the staging cap whole (a 50K-wide bf16 vocabulary, 40K fp32: over 48 KiB,
so the launch raises the kernel's dynamic shared memory limit) and rows that overflow it (128K
columns: on sm_90 a thread-block cluster of 2-8 blocks shares the row, each staging its chunk,
the reductions combined through distributed shared memory), every float dtype, two staged
inputs side by side, and NaN / inf rows (the special values in any block of a cluster)."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from nvfuse.lower import kir

from gpu_support import numerics


compare = numerics("cases").compare
T = numerics("test_persistent")
_make = numerics("test_reductions")._make

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def _check(fn: object, inputs: tuple[torch.Tensor, ...],
           dtype: torch.dtype) -> nvfuse.FusedModule:
    fm = nvfuse.fuse(fn, inputs)
    actual, expected = fm(*inputs), fn(*inputs)  # type: ignore[operator]
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype)
    assert nvfuse.stats()["fallbacks"] == 0
    assert kir.dynamic_shared(fm.kernels[0].kernel_ir)
    return fm


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
@pytest.mark.parametrize("width", [40_000, 50_304, 131_072])
def test_staged_rows_on_device(op: str, dtype: torch.dtype, width: int) -> None:
    inputs = tuple(t.cuda() for t in T._inputs(op, width, dtype, rows=256))
    _check(T.OPS[op][0], inputs, dtype)


@pytest.mark.parametrize("width", [40_000, 131_072])
def test_two_staged_inputs_on_device(width: int) -> None:
    x = _make((128, width), f32, "two-x").cuda()
    y = _make((128, width), bf16, "two-y").cuda()
    _check(lambda a, b: torch.softmax(a + b, -1), (x, y), f32)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("width", [50_304, 131_072])
def test_nan_and_inf_rows_on_device(op: str, width: int) -> None:
    inputs = T._inputs(op, width, f32, rows=64)
    x = numerics("cases").special_rows(inputs[0])
    _check(T.OPS[op][0], (x.cuda(), *(t.cuda() for t in inputs[1:])), f32)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_norms_of_several_dims_on_device(norm: str) -> None:
    """Group norm (rows of 8 channels x 3136 pixels: fit) and batch-norm training (rows of
    32 x 3136 per channel: overflow), staged through their strides."""
    S = numerics("test_shared_rows")
    x = _make((32, 256, 56, 56), f32, f"{norm}x").cuda()
    w, b = _make((256,), f32, "w").cuda(), _make((256,), f32, "b").cuda()
    if norm == "group":
        _check(lambda a, c, d: torch.nn.functional.group_norm(a, 32, c, d), (x, w, b), f32)
    else:
        rm, rv = _make((256,), f32, "rm").cuda(), _make((256,), f32, "rv", near_one=True).cuda()
        _check(S._batch_norm, (x, w, b, rm, rv), f32)


@pytest.mark.parametrize(("op", "dtype", "cluster"), [
    ("softmax", f32, 4), ("softmax", bf16, 2), ("log_softmax", bf16, 2),
    ("layer_norm", f32, 4), ("rms_norm", f64, 8)])
def test_cluster_rows_on_device(op: str, dtype: torch.dtype, cluster: int) -> None:
    """128K-wide rows on sm_90: the cluster schedule itself (the launch with
    __cluster_dims__, the cluster barriers, distributed shared memory), at the cluster size
    the schedule picks, with a NaN and an inf in different blocks of one row."""
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90")
    inputs = T._inputs(op, 131_072, dtype, rows=264)
    x = inputs[0].clone()
    x[1, 5], x[1, 131_071] = float("nan"), float("inf")
    x[2, 70_000] = float("-inf")
    fm = _check(T.OPS[op][0], (x.cuda(), *(t.cuda() for t in inputs[1:])), dtype)
    assert fm.kernels[0].kernel_ir.cluster == cluster
