"""Kernel scalars bound by name: a schedule's launch scalars carry exactly the names of the
parameters its kernels declare (nvfuse/schedule/names.py spells them once), and the launcher
orders them by each kernel's declared parameters (`kir.bind_scalars`, once per prepared call)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvfuse import pipeline, schedules
from nvfuse.errors import LaunchError
from nvfuse.frontend.protocol import frontend_for
from nvfuse.fusion.ir import FusionIR
from nvfuse.lower.kir import bind_scalars, kernel_args
from nvfuse.pipeline import plan
from nvfuse.runtime import executor
from nvfuse.schedule import names, pointwise, split
from nvfuse.schedule.kind import ScheduleKind as K


def _ir(fn: Callable[..., Any], *inputs: torch.Tensor) -> FusionIR:
    (group,) = plan(frontend_for(fn, inputs).trace(inputs)).groups
    return group.ir


def _scheduled(fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...],
               monkeypatch: pytest.MonkeyPatch) -> tuple[FusionIR, schedules.Launch]:
    """The fusion and launch of `fn`'s one group as the executor schedules it for `inputs`."""
    seen: list[tuple[FusionIR, schedules.Launch]] = []

    def recording(ir: FusionIR, *args: Any) -> schedules.Launch:
        launch = schedules.schedule(ir, *args)
        seen.append((ir, launch))
        return launch

    monkeypatch.setattr(pipeline, "schedule", recording)
    nvfuse.fuse(fn, inputs)(*inputs)
    ((ir, launch),) = seen
    return ir, launch


CASES: dict[str, tuple[Callable[..., Any], Callable[[], tuple[torch.Tensor, ...]], K]] = {
    # a transposed input and a broadcast one: general strides of several operands
    "pointwise": (lambda a, b: a * b + 1, lambda: (torch.randn(6, 40).t(), torch.randn(6)),
                  K.POINTWISE),
    # a transposed piece: piece strides, segment ends and shifts
    "concat": (lambda a, b: torch.cat([a, b.t() * 2], 1) + 1,
               lambda: (torch.randn(6, 5), torch.randn(3, 6)), K.CONCAT),
    "warp_row": (lambda a, w: a * w / a.sum(-1, keepdim=True),
                 lambda: (torch.randn(6, 40), torch.randn(40)), K.WARP_ROW),
    "row": (lambda a: torch.softmax(a.transpose(0, 2), -1),
            lambda: (torch.randn(300, 5, 3),), K.ROW),
    "column": (lambda a: a.var(0), lambda: (torch.randn(300, 64),), K.COLUMN),
    # the kernel declares `seed`: the launcher's, never the schedule's
    "random": (lambda a: F.dropout(torch.softmax(a, -1), 0.1, training=True),
               lambda: (torch.randn(4, 100),), K.ROW),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_schedule_names_are_the_kernel_parameters(case: str, interpret: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fn, make, kind = CASES[case]
    ir, launch = _scheduled(fn, make(), monkeypatch)
    ((sig, params, _),) = launch.stages
    assert sig.kind is kind
    kernel = schedules.lower(ir, sig, params)
    declared = [p.name for p in kernel.scalars]
    assert len(set(declared)) == len(declared)
    assert set(launch.scalars) == set(declared) - {names.SEED}
    assert (names.SEED in declared) == ir.random
    assert any(n.startswith("stride_") for n in declared) or case == "column"
    args = kernel_args(kernel, {**launch.scalars, **({names.SEED: 5} if ir.random else {})})
    assert args == tuple(launch.scalars.get(n, 5) for n in declared)


def test_each_split_stage_takes_the_names_it_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "choose_splits", lambda *a: 4)
    x = torch.randn(2, 1 << 14)
    ir = _ir(lambda a: a.var(-1), x)
    launch = schedules.schedule(ir, (x,), [torch.empty(2)], "sm_90")
    kernels = [schedules.lower(ir, sig, params) for sig, params, _ in launch.stages]
    assert [sig.kind for sig, _, _ in launch.stages] == [K.SPLIT, K.SPLIT]
    assert set(launch.scalars) == {p.name for k in kernels for p in k.scalars}
    first, second = bind_scalars(kernels, launch.scalars)
    for kernel, args in zip(kernels, (first, second)):
        assert args == tuple(launch.scalars[p.name] for p in kernel.scalars)
    assert (launch.scalars[names.SPLITS], launch.scalars[names.CHUNK_LEN]) == (4, 4096)


def _kernel(monkeypatch: pytest.MonkeyPatch) -> Any:
    fn, make, _ = CASES["pointwise"]
    ir, launch = _scheduled(fn, make(), monkeypatch)
    ((sig, params, _),) = launch.stages
    return schedules.lower(ir, sig, params), dict(launch.scalars)


def test_a_missing_or_unknown_name_is_an_error_naming_it(interpret: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, values = _kernel(monkeypatch)
    assert kernel_args(kernel, values)  # complete: binds
    missing = {k: v for k, v in values.items() if k != names.NUMEL}
    with pytest.raises(LaunchError, match="no value for scalar parameter.*numel"):
        kernel_args(kernel, missing)
    with pytest.raises(LaunchError, match="'?bogus'? given but not a parameter"):
        kernel_args(kernel, {**values, "bogus": 3})
    with pytest.raises(LaunchError, match="seed.*launcher"):
        executor.bind_launch([kernel], {**values, names.SEED: 1})


def _misnaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the pointwise schedule give its first stride under a name no kernel declares."""
    original = pointwise.plan_launch

    def wrong(*args: Any, **kwargs: Any) -> pointwise.PointwiseLaunch:
        launch = original(*args, **kwargs)
        renamed = {("stride_typo" if k.startswith("stride_") else k): v
                   for k, v in launch.scalars.items()}
        return dataclasses.replace(launch, scalars=renamed)

    monkeypatch.setattr(pointwise, "plan_launch", wrong)


def test_a_misnamed_schedule_scalar_raises_strictly(interpret: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fn, make, _ = CASES["pointwise"]
    fm = nvfuse.fuse(fn, make())
    _misnaming(monkeypatch)
    with pytest.raises(LaunchError, match="stride_typo|no value for scalar parameter.*stride_"):
        fm(*make())


def test_a_misnamed_schedule_scalar_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.delenv("NVFUSE_STRICT", raising=False)
    nvfuse.config.reload()
    fn, make, _ = CASES["pointwise"]
    fm = nvfuse.fuse(fn, make())
    _misnaming(monkeypatch)
    inputs = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fm(*inputs)
    torch.testing.assert_close(got, fn(*inputs))
    assert any("LaunchError" in str(w.message) and "stride_" in str(w.message) for w in caught)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_kind_runs_by_name_and_matches_eager(case: str, interpret: None) -> None:
    fn, make, _ = CASES[case]
    fm = nvfuse.fuse(fn, make())
    for _ in range(2):  # the prepared call, then its cached replay
        inputs = make()
        if case == "random":
            torch.manual_seed(3)
            got = fm(*inputs)
            torch.manual_seed(3)
            torch.testing.assert_close(fm(*inputs), got)  # the seed: torch's generator
            kept = got != 0
            want = torch.softmax(inputs[0], -1) / 0.9
            torch.testing.assert_close(got[kept], want[kept])
        else:
            torch.testing.assert_close(fm(*inputs), fn(*inputs), rtol=1e-5, atol=1e-5)


def _two_dropouts_and_a_strided_add(a: torch.Tensor, b: torch.Tensor,
                                    c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return F.dropout(a, 0.5, training=True), F.dropout(b, 0.5, training=True), c + 1


def test_a_horizontal_launch_binds_each_member_by_its_renamed_names(interpret: None) -> None:
    """The shared kernel's scalars are every member's under `h{k}_` names plus block offsets;
    bound by name, each member's seed drawn fresh (the two dropouts' masks are independent)."""
    from nvfuse.lower.horizontal import first_block_param, member_name
    from nvfuse.runtime.horizontal import HorizontalGroup

    a, b, c = torch.randn(4096), torch.randn(4096), torch.randn(64, 48)[:, ::2]
    fm = nvfuse.fuse(_two_dropouts_and_a_strided_add, (a, b, c))
    first = fm(a, b, c)
    gm = fm._latest.gm
    (bundle,) = [gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module"
                 and isinstance(gm.get_submodule(n.target), HorizontalGroup)]
    (ready,) = bundle._launches.values()
    (shared,) = ready.shared
    kernel = shared.stage.kernel.kernel_ir
    members = [ready.readies[i] for i in shared.members]
    assert len(members) == 3 and sum(r.random for r in members) == 2
    want: dict[str, int] = {}
    for k, r in enumerate(members):
        want |= {member_name(k, n): v for n, v in r.named.items()}
        want[first_block_param(k)] = sum(m.stages[0].grid for m in members[:k])
    declared = [p.name for p in kernel.scalars]
    assert any(n.startswith("h2_stride_") for n in declared)  # the sliced add's strides
    assert {declared[i] for i in shared.seeds} == {member_name(k, names.SEED)
                                                   for k, r in enumerate(members) if r.random}
    for i, (name, value) in enumerate(zip(declared, shared.scalars)):
        assert i in shared.seeds or want[name] == value
    agree = ((first[0] != 0) == (first[1] != 0)).float().mean().item()
    assert 0.4 < agree < 0.6  # independent seeds
    torch.testing.assert_close(first[2], c + 1)
    kept = first[0] != 0
    torch.testing.assert_close(first[0][kept], (a * 2)[kept])
