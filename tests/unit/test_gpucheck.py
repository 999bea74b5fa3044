"""The prepared GPU check's control flow on the CPU: it skips cleanly without CUDA, stops after a
failed launch smoke, records timeouts, stays inside its time budget; its smoke kernels run
(through the interpreter) and its step runner handles exit codes and time limits.  The steps
themselves are replaced by fakes: the GPU tier is never run from here."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from nvfuse import gpucheck


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_without_cuda_it_skips_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gpucheck, "cuda_available", lambda: False)
    ran: list[Sequence[str]] = []
    rc = gpucheck.check(tmp_path, runner=lambda c, *a, **k: ran.append(c) or ("passed", 0, 0.0))
    assert rc == 0 and not ran
    assert gpucheck.SKIPPED in capsys.readouterr().out
    summary = _summary(tmp_path)
    assert summary["status"] == "skipped"
    assert {s["status"] for s in summary["steps"]} == {"skipped"}
    assert "torch" in summary["versions"] and "date" in summary["versions"]
    assert "skipped" in (tmp_path / "summary.md").read_text()


def test_main_without_cuda_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpucheck, "cuda_available", lambda: False)
    assert gpucheck.main([str(tmp_path / "out")]) == 0
    assert _summary(tmp_path / "out")["status"] == "skipped"


class FakeRunner:
    """Stands in for run_command: a scripted status per log file name, every call recorded."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[list[str], str, float]] = []

    def __call__(self, command: Sequence[str], log: Path, timeout: float
                 ) -> tuple[str, int | None, float]:
        self.calls.append((list(command), log.name, timeout))
        log.write_text("fake\n")
        status = self.statuses.get(log.name, "passed")
        if log.name == "gpu-tests.txt":
            junit = next(a.split("=", 1)[1] for a in command if a.startswith("--junitxml="))
            Path(junit).write_text('<testsuites><testsuite tests="7" failures="0" errors="0" '
                                   'skipped="1"/></testsuites>')
        return status, (0 if status == "passed" else None if status == "timeout" else 1), 1.0


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpucheck, "cuda_available", lambda: True)


def test_all_steps_pass(tmp_path: Path, gpu: None) -> None:
    runner = FakeRunner({})
    assert gpucheck.check(tmp_path, runner=runner) == 0
    logs = [log for _, log, _ in runner.calls]
    assert logs == ["smoke.txt", "gpu-tests.txt", "demo.txt", "bench-0.txt", "bench-1.txt"]
    tests_cmd = runner.calls[1][0]
    assert tests_cmd[tests_cmd.index("-m", 3) + 1] == "gpu"
    assert f"--maxfail={gpucheck.MAX_FAILURES}" in tests_cmd
    bench_cmds = [c for c, log, _ in runner.calls if log.startswith("bench")]
    outs = [c[c.index("--out") + 1] for c in bench_cmds]
    assert all("--only" in c for c in bench_cmds)
    assert len(set(outs)) == 2 and all(o.startswith(str(tmp_path / "bench")) for o in outs)
    summary = _summary(tmp_path)
    assert summary["status"] == "passed"
    steps = {s["name"]: s for s in summary["steps"]}
    assert {s["status"] for s in steps.values()} == {"passed"}
    assert "7 tests" in steps["gpu-tests"]["detail"] and "1 skipped" in steps["gpu-tests"]["detail"]
    assert sum(t for _, _, t in runner.calls) <= gpucheck.DEFAULT_BUDGET_S


def test_failed_smoke_stops_the_check(tmp_path: Path, gpu: None) -> None:
    runner = FakeRunner({"smoke.txt": "failed"})
    assert gpucheck.check(tmp_path, runner=runner) == 1
    assert [log for _, log, _ in runner.calls] == ["smoke.txt"]
    steps = {s["name"]: s for s in _summary(tmp_path)["steps"]}
    assert steps["smoke"]["status"] == "failed"
    assert all(steps[n]["status"] == "not run" and "smoke failed" in steps[n]["detail"]
               for n in ("gpu-tests", "demo", "bench"))


def test_a_timeout_is_recorded_and_the_rest_still_runs(tmp_path: Path, gpu: None) -> None:
    runner = FakeRunner({"gpu-tests.txt": "timeout"})
    assert gpucheck.check(tmp_path, runner=runner) == 1
    assert [log for _, log, _ in runner.calls][-1] == "bench-1.txt"
    steps = {s["name"]: s for s in _summary(tmp_path)["steps"]}
    assert steps["gpu-tests"]["status"] == "timeout" and "timed out" in steps["gpu-tests"]["detail"]
    assert steps["demo"]["status"] == "passed"
    assert _summary(tmp_path)["status"] == "failed"


def test_steps_stop_when_the_budget_is_spent(tmp_path: Path, gpu: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(0, 10_000, 200))  # each reading: 200 s later
    monkeypatch.setattr(gpucheck.time, "monotonic", lambda: next(clock))
    runner = FakeRunner({})
    assert gpucheck.check(tmp_path, budget=480, runner=runner) == 1
    steps = {s["name"]: s for s in _summary(tmp_path)["steps"]}
    assert any(s["detail"] == "time budget spent" for s in steps.values())
    assert all(t <= 480 for _, _, t in runner.calls)


def test_pytest_command_uses_xdist_only_where_installed(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    real = gpucheck.importlib.util.find_spec
    monkeypatch.setattr(gpucheck.importlib.util, "find_spec",
                        lambda name: None if name == "xdist" else real(name))
    assert "-n" not in gpucheck.pytest_command(tmp_path / "j.xml")
    monkeypatch.setattr(gpucheck.importlib.util, "find_spec", lambda name: object())
    command = gpucheck.pytest_command(tmp_path / "j.xml")
    assert int(command[command.index("-n") + 1]) >= 2


def test_run_command_statuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpucheck, "GRACE_S", 2.0)
    py = sys.executable
    assert gpucheck.run_command([py, "-c", "print('hi')"], tmp_path / "a.txt", 60)[:2] == (
        "passed", 0)
    assert (tmp_path / "a.txt").read_text().strip() == "hi"
    assert gpucheck.run_command([py, "-c", "raise SystemExit(3)"], tmp_path / "b.txt", 60)[:2] == (
        "failed", 3)
    status, rc, seconds = gpucheck.run_command(
        [py, "-c", "import time; time.sleep(30)"], tmp_path / "c.txt", 1.0)
    assert (status, rc) == ("timeout", None) and seconds < 20


def test_smoke_kernels_through_the_interpreter(monkeypatch: pytest.MonkeyPatch,
                                               interpret: None) -> None:
    from nvfuse.runtime import executor
    from nvfuse.schedule import split

    monkeypatch.setattr(executor, "POISON_OUTPUTS", False)  # restored after the test
    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 1024)  # interpreter-sized rows split
    monkeypatch.setattr(split, "MIN_CHUNK", 256)
    results = gpucheck.smoke("cpu", n=1 << 14, rows=8, cols=64)
    assert [r["name"] for r in results] == ["pointwise", "reduction", "split-reduction", "random",
                                            "horizontal"]
    assert all(r["ok"] for r in results), results


def test_dropout_check_catches_wrong_output() -> None:
    x = torch.randn(1 << 14)
    kept = (x + 1.0) * 2.0
    mask = torch.rand(1 << 14) < 0.5
    assert gpucheck._dropout_ok(torch.where(mask, kept, 0.0), None, (x,)) is None
    assert gpucheck._dropout_ok(kept, None, (x,)) is not None  # nothing dropped
    assert gpucheck._dropout_ok(torch.where(mask, x, 0.0), None, (x,)) is not None  # unscaled


def test_real_smoke_subprocess_reports_into_the_summary(tmp_path: Path, gpu: None) -> None:
    """The smoke step for real (a subprocess of `python -m nvfuse.gpucheck --smoke`); every later
    step faked.  Without CUDA the smoke fails at its setup and says so in the summary."""
    fake = FakeRunner({})

    def runner(command: Sequence[str], log: Path, timeout: float
               ) -> tuple[str, int | None, float]:
        if log.name == "smoke.txt":
            return gpucheck.run_command(command, log, timeout)
        return fake(command, log, timeout)

    rc = gpucheck.check(tmp_path, runner=runner)
    smoke = {s["name"]: s for s in _summary(tmp_path)["steps"]}["smoke"]
    assert (tmp_path / "smoke.json").exists()
    if torch.cuda.is_available():
        assert smoke["status"] == "passed" and rc == 0
    else:
        assert rc == 1 and smoke["status"] == "failed" and "setup" in smoke["detail"]
        assert not fake.calls
