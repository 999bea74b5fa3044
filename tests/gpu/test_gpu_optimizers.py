"""GPU tier: torch.compile(optimizer.step, backend="nvfuse") on the device, against eager over
several steps, parameters and state written in place; `capturable=True` (the step counters on
the device, which eager allows only on CUDA) included."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo

pytestmark = pytest.mark.gpu
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_optimizers import per_step_launches, run_steps  # noqa: E402

CASES: list[tuple[str, Callable[..., Any], bool]] = [
    ("adam_capturable", lambda ps: torch.optim.Adam(ps, lr=0.01, capturable=True,
                                                    foreach=False), True),
    ("adam_capturable_amsgrad_foreach", lambda ps: torch.optim.Adam(
        ps, lr=0.01, capturable=True, amsgrad=True, weight_decay=0.1, foreach=True), True),
    ("adamw_capturable_maximize", lambda ps: torch.optim.AdamW(
        ps, lr=0.01, capturable=True, maximize=True, foreach=False), True),
    # eager's CPU step counters: their increments are host ops, no kernel
    ("adamw_foreach", lambda ps: torch.optim.AdamW(ps, lr=0.01, foreach=True), False),
    ("sgd_nesterov", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                                foreach=True), False),
]


@pytest.fixture(autouse=True)
def _fresh_dynamo(strict_poisoned: None) -> None:
    torch._dynamo.reset()


@pytest.mark.parametrize(("name", "make", "counts"), CASES, ids=[c[0] for c in CASES])
def test_step_on_device(name: str, make: Callable[..., Any], counts: bool) -> None:
    launches, _ = run_steps(make, device="cuda")
    assert launches == per_step_launches(counts)


def test_bf16_parameters_on_device() -> None:
    launches, _ = run_steps(lambda ps: torch.optim.AdamW(ps, lr=0.01, capturable=True),
                            torch.bfloat16, "cuda")
    assert launches == per_step_launches(True)
