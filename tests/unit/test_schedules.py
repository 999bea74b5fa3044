"""nvfuse/schedules.py: one entry per schedule kind, the kind chosen in one place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from nvfuse import schedules
from nvfuse.frontend.protocol import frontend_for
from nvfuse.fusion.ir import FusionIR
from nvfuse.pipeline import plan
from nvfuse.schedule import split
from nvfuse.schedule.kind import ScheduleKind as K

ROOT = Path(__file__).resolve().parents[2]


def _ir(fn: object, *inputs: torch.Tensor) -> FusionIR:
    (group,) = plan(frontend_for(fn, inputs).trace(inputs)).groups
    return group.ir


def _kinds(fn: object, *inputs: torch.Tensor) -> list[K]:
    ir = _ir(fn, *inputs)
    eager = fn(*inputs)  # type: ignore[operator]
    outs = list(eager) if isinstance(eager, tuple) else [eager]
    return [sig.kind for sig, _, _ in schedules.schedule(ir, inputs, outs, "sm_90").stages]


def test_every_kind_is_chosen_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(6, 40)
    assert _kinds(lambda a: a * 2 + 1, x) == [K.POINTWISE]
    assert _kinds(lambda a: torch.cat([a, a * 2], 1) + 1, x) == [K.CONCAT]
    assert _kinds(lambda a: a.sum(-1), x) == [K.WARP_ROW]           # 40 <= WARP_ROW_MAX
    assert _kinds(lambda a: a.sum(-1), torch.randn(6, 300)) == [K.ROW]
    assert _kinds(lambda a: a.sum(0), torch.randn(300, 64)) == [K.COLUMN]
    monkeypatch.setattr(split, "choose_splits", lambda *a: 4)
    assert _kinds(lambda a: a.sum(-1), torch.randn(2, 1 << 14)) == [K.SPLIT, K.SPLIT]
    assert _kinds(lambda a: a.sum(0), torch.randn(1 << 14, 64)) == [K.SPLIT, K.SPLIT]
    assert _kinds(lambda a: a.sum(-1), x) == [K.WARP_ROW]  # warp rows never split


def test_every_kind_has_one_entry_that_lowers_it() -> None:
    kinds = [e.kind for e in (*schedules.ENTRIES, schedules.SPLIT)]
    # HORIZONTAL combines kernels the entries built (pipeline.build_horizontal), per call
    planned = [k for k in K if k is not K.HORIZONTAL]
    assert sorted(kinds, key=lambda k: k.value) == sorted(planned, key=lambda k: k.value)


def test_no_type_tests_on_signatures_outside_the_registry() -> None:
    """The kind is a field of the signature: no module asks a signature's or launch's type."""
    pattern = re.compile(r"isinstance\([^)]*,\s*\w*(Signature|Launch)\b")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "nvfuse").rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
