"""Every op × dtype end to end through the interpreter: fuse, run the generated kernel IR on the
CPU (outputs poisoned first), compare with eager; then compile every generated kernel with NVRTC
for sm_80 and sm_90."""

from __future__ import annotations

import pytest
import torch
from cases import CASES, OpCase, compare

import nvfuse
from nvfuse.runtime import executor

PARAMS = [pytest.param(case, dtype, id=f"{case.name}-{str(dtype).split('.')[-1]}")
          for case in CASES for dtype in case.dtypes]


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


@pytest.mark.parametrize(("case", "dtype"), PARAMS)
def test_op_through_interpreter(case: OpCase, dtype: torch.dtype, interpret: None) -> None:
    gen = torch.Generator().manual_seed(hash(case.name) % 2**31)
    inputs = case.make_inputs(dtype, gen)
    expected = case.fn(*inputs)
    fm = nvfuse.fuse(case.fn, inputs)
    assert fm.fusion_groups, f"{case.name}: nothing was fused"
    actual = fm(*inputs)
    assert nvfuse.stats()["launches"] >= 1 and nvfuse.stats()["fallbacks"] == 0
    compare(actual, expected, dtype)
    for kernel in fm.kernels:
        for arch in ("sm_80", "sm_90"):
            assert nvfuse.compile_source(kernel.source, arch)[:4] == b"\x7fELF"
