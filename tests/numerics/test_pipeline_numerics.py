"""Every op × dtype end to end through the interpreter: fuse, run the generated kernel IR on the
CPU (outputs poisoned first), compare with eager.  Every generated kernel is then compiled by
NVRTC for sm_80 and sm_90 (batched: kernels share their helper prelude, so ~150 kernels go into
one translation unit; a failing batch is retried kernel by kernel to name the culprit)."""

from __future__ import annotations

import zlib

import pytest
import torch
from cases import CASES, OpCase, compare

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.lower.verify import verify_kernel
from nvfuse.runtime import executor

PARAMS = [pytest.param(case, dtype, id=f"{case.name}-{str(dtype).split('.')[-1]}")
          for case in CASES for dtype in case.dtypes]

_generated: dict[str, str] = {}  # kernel name -> source, filled by the op tests


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


@pytest.mark.parametrize(("case", "dtype"), PARAMS)
def test_op_through_interpreter(case: OpCase, dtype: torch.dtype, interpret: None) -> None:
    gen = torch.Generator().manual_seed(zlib.crc32(case.name.encode()))
    inputs = case.make_inputs(dtype, gen)
    expected = case.expected(*inputs)
    fm = nvfuse.fuse(case.fn, inputs)
    assert fm.fusion_groups, f"{case.name}: nothing was fused"
    actual = fm(*inputs)
    assert nvfuse.stats()["launches"] >= 1 and nvfuse.stats()["fallbacks"] == 0
    compare(actual, expected, dtype, case.tolerance(dtype))
    for kernel in fm.kernels:
        verify_kernel(kernel.kernel_ir)
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the op tests (they generate the kernels)")
    compile_all(_generated, arch, "numerics")
