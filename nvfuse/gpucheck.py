"""The prepared first-GPU-run check: one command, about eight minutes on one H100 at most.

    PYTHONPATH=$PWD python -m nvfuse.gpucheck OUTDIR [--budget SECONDS]

Run from the working tree (the GPU tier and the bench live there).  Steps, in order, each in a
subprocess with its own time limit, every file written under OUTDIR:

1. smoke (`smoke.json`, `smoke.txt`): five fused launches on the GPU, strictly (a fallback is
   an error) with poisoned outputs, against eager on the same GPU: a pointwise chain, a row
   reduction (softmax), a split reduction (one long row: two kernels), a random kernel
   (dropout: dropped share and kept values) and a horizontal launch (three groups, one
   kernel).  Any failure stops the check here: the launch path is broken and everything after
   it would fail the same way.
2. gpu-tests (`gpu-junit.xml`, `gpu-tests.txt`): `pytest -m gpu tests --maxfail=20`, across
   CPU workers with pytest-xdist where it is installed (GPU time is scarce: one run reports up
   to 20 failures rather than the first).  On its time limit pytest is
   interrupted (SIGINT), so the junit file still lists what ran.
3. demo (`demo.txt`): `python -m nvfuse.demo`.
4. bench (`bench/<subset>/`, `bench-<i>.txt`): `python -m bench --only <subset>` for a
   pointwise and a normalization subset (`BENCH_SUBSETS`): eager, torch.compile and nvfuse,
   with the copy-bandwidth roofline (the bench's own JSON/markdown schema).
5. `summary.json` and `summary.md`: versions (Python, torch, CuPy, NVRTC, GPU, driver), the date,
   and per step its status (passed / failed / timeout / skipped / not run), duration and detail.

Limits (seconds, `STEPS`): smoke 60, gpu-tests 240, demo 60, bench 50 per subset (two
subsets): 460, each step also capped by what is left of the budget (480 by default, less the
15-second grace an interrupted step gets), so the whole fits eight minutes; `--budget` scales
every limit (`--budget 1800` gives the GPU tier 900 seconds).  No step starts with less than 10
seconds left.  Exit status 0 when every step passed, 1 otherwise.
Without a CUDA device it writes the summary with status "skipped", prints "no CUDA device:
skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 480.0
MIN_STEP_S = 10.0
# per-step limits in seconds (scaled to --budget); BENCH is per subset
STEPS = {"smoke": 60.0, "gpu-tests": 240.0, "demo": 60.0, "bench": 50.0}
MAX_FAILURES = 20  # the GPU tier stops after this many
GRACE_S = 15.0  # after SIGINT on a step's limit, before SIGKILL
BENCH_SUBSETS = ("bias-gelu-residual-fp16", "layer-norm-residual-h4096")
SKIPPED = "no CUDA device: skipped"


@dataclass
class Step:
    name: str
    status: str = "not run"  # passed | failed | timeout | skipped | not run
    seconds: float = 0.0
    detail: str = ""
    files: list[str] = field(default_factory=list)


# -- the smoke kernels ---------------------------------------------------------------------------
def smoke(device: str, n: int = 1 << 22, rows: int = 256, cols: int = 4096
          ) -> list[dict[str, Any]]:
    """Five fused launches against eager on `device` (a GPU; the interpreter on "cpu"), strictly,
    outputs poisoned.  One result dict per kernel: name, ok, detail.  Random inputs, never
    zeros; sizes default to GPU sizes (tests pass interpreter sizes)."""
    import torch

    import nvfuse
    from nvfuse import config
    from nvfuse.runtime import executor

    os.environ["NVFUSE_STRICT"] = "1"
    config.reload()
    executor.POISON_OUTPUTS = True
    gen = torch.Generator(device="cpu").manual_seed(1234)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    results: list[dict[str, Any]] = []

    def verify(name: str, fn: Callable[..., Any], inputs: Sequence[Any],
               compare: Callable[[Any, Any, Any], str | None], launches: int = 1) -> None:
        try:
            fm = nvfuse.fuse(fn, inputs)
            before = nvfuse.stats()["launches"]
            got = fm(*inputs)
            if device != "cpu":
                torch.cuda.synchronize()
            ran = nvfuse.stats()["launches"] - before
            problem = compare(got, fn(*inputs), inputs)
            if problem is None and ran != launches:
                problem = f"{ran} kernel launches, expected {launches}"
        except Exception as e:  # the report says what broke; the caller stops the check
            problem = f"{type(e).__name__}: {str(e)[:2000]}"
        results.append({"name": name, "ok": problem is None, "detail": problem or "matches eager"})

    def close(got: Any, want: Any, _: Any) -> str | None:
        try:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        except AssertionError as e:
            return str(e)[:2000]
        return None

    verify("pointwise", lambda x, b: torch.nn.functional.gelu(x + b) * 0.5 + x,
           (rand(rows, cols), rand(cols)), close)
    verify("reduction", lambda x: torch.softmax(x * 1.5, -1), (rand(rows, cols),), close)
    verify("split-reduction", lambda x: (x * x).sum(), (rand(n),), lambda g, w, _: _near(g, w),
           launches=2)
    verify("random", lambda x: torch.nn.functional.dropout(x + 1.0, 0.5, training=True),
           (rand(n),), _dropout_ok)
    # three independent groups (two pointwise, one warp-row sum) in one horizontal launch
    verify("horizontal", lambda a, b, c: (a.sin() + 1, b.half() * 2, c.sum(-1)),
           (rand(n), rand(rows, cols), rand(rows, 48)), close)
    return results


def _near(got: Any, want: Any) -> str | None:
    """A long float32 sum: eager and nvfuse add in different orders."""
    import torch

    try:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-2)
    except AssertionError as e:
        return str(e)[:2000]
    return None


def _dropout_ok(got: Any, _: Any, inputs: Sequence[Any]) -> str | None:
    """Dropout cannot match eager's bits: every element is 0 or (x + 1) * 2, about half are 0."""
    import torch

    kept = (inputs[0] + 1.0) * 2.0
    zero = got == 0
    if not bool(torch.isclose(got[~zero], kept[~zero], rtol=1e-6, atol=1e-6).all()):
        return "kept elements are not (x + 1) / (1 - p)"
    share = float(zero.float().mean())
    spread = 6 * (0.25 / got.numel()) ** 0.5 + 1e-3  # six standard deviations
    if abs(share - 0.5) > spread:
        return f"dropped share {share:.4f}, expected 0.5 +- {spread:.4f}"
    return None


# -- running steps -------------------------------------------------------------------------------
def run_command(command: Sequence[str], log: Path, timeout: float,
                env: dict[str, str] | None = None) -> tuple[str, int | None, float]:
    """Run `command` with stdout+stderr into `log`; ("passed"|"failed"|"timeout", rc, seconds).
    On the time limit the process gets SIGINT (pytest then writes its reports), then SIGKILL
    after GRACE_S more seconds."""
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env if env is not None else _env(), start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return "timeout", None, time.monotonic() - start
    return ("passed" if rc == 0 else "failed"), rc, time.monotonic() - start


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NVFUSE_INTERPRET", "NVFUSE_DISABLE")}
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return env


def pytest_command(junit: Path) -> list[str]:
    """The GPU tier: --maxfail=MAX_FAILURES, junit report, xdist workers where installed (all
    cores but four, at most 12: NVRTC compiles on the CPU, the kernels are small)."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests",
               f"--maxfail={MAX_FAILURES}", "-q",
               "-p", "no:cacheprovider", f"--junitxml={junit}"]
    if importlib.util.find_spec("xdist") is not None:
        command += ["-n", str(min(12, max(2, (os.cpu_count() or 2) - 4)))]
    return command


def _smoke_failures(path: Path) -> str:
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    bad = [f"{r['name']}: {str(r['detail']).splitlines()[0][:200]}" for r in results
           if not r.get("ok")]
    return "; ".join(bad) if bad else f"{len(results)} launches match eager"


def _junit_counts(path: Path) -> str:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return "no junit report"
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {k: sum(int(s.get(k, 0)) for s in suites)
              for k in ("tests", "failures", "errors", "skipped")}
    return ", ".join(f"{v} {k}" for k, v in totals.items())


def versions() -> dict[str, str]:
    """What ran: Python, torch, CuPy, NVRTC, GPU and driver, the date (UTC), the commit."""
    info = {"python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = str(torch.version.cuda)
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            major, minor = torch.cuda.get_device_capability(0)
            info["capability"] = f"sm_{major}{minor}"
    except Exception as e:  # a broken torch is itself the finding
        info["torch"] = f"unavailable ({e})"
    try:
        import cupy  # type: ignore[import-untyped]

        info["cupy"] = cupy.__version__
        info["driver"] = str(cupy.cuda.runtime.driverGetVersion())
    except Exception as e:
        info.setdefault("cupy", f"unavailable ({type(e).__name__})")
    try:
        from nvfuse.runtime.nvrtc import nvrtc_version

        info["nvrtc"] = nvrtc_version()
    except Exception as e:
        info["nvrtc"] = f"unavailable ({type(e).__name__})"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                        capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def check(out: Path, budget: float = DEFAULT_BUDGET_S,
          runner: Callable[..., tuple[str, int | None, float]] = run_command) -> int:
    """Run every step under `out` (see the module docstring); the exit status."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scale = budget / DEFAULT_BUDGET_S
    steps = [Step("smoke"), Step("gpu-tests"), Step("demo"), Step("bench")]
    if not cuda_available():
        for step in steps:
            step.status, step.detail = "skipped", SKIPPED
        print(SKIPPED)
        _write_summary(out, "skipped", steps, versions())
        return 0

    def left() -> float:
        return budget - (time.monotonic() - started)

    def run(step: Step, command: Sequence[str], log: str, limit: float) -> None:
        limit = min(limit * scale, left() - GRACE_S)
        if limit < MIN_STEP_S:
            step.status, step.detail = "not run", "time budget spent"
            return
        status, rc, seconds = runner(command, out / log, limit)
        step.seconds += seconds
        step.files.append(log)
        if step.status in ("not run", "passed"):
            step.status = status
        if status != "passed":
            step.detail = (step.detail + "; " if step.detail else "") + (
                f"{log}: timed out after {limit:.0f} s" if status == "timeout"
                else f"{log}: exit status {rc}")
        print(f"[gpucheck] {step.name}: {status} ({seconds:.0f} s)", flush=True)

    smoke_step, tests_step, demo_step, bench_step = steps
    run(smoke_step, [sys.executable, "-m", "nvfuse.gpucheck", "--smoke", str(out / "smoke.json")],
        "smoke.txt", STEPS["smoke"])
    smoke_step.detail = "; ".join(filter(None, [_smoke_failures(out / "smoke.json"),
                                                smoke_step.detail]))
    if smoke_step.status != "passed":
        for step in steps[1:]:
            step.detail = "not run: the launch smoke failed"
        _write_summary(out, "failed", steps, versions())
        return 1
    junit = out / "gpu-junit.xml"
    run(tests_step, pytest_command(junit), "gpu-tests.txt", STEPS["gpu-tests"])
    tests_step.detail = "; ".join(filter(None, [_junit_counts(junit), tests_step.detail]))
    if junit.exists():
        tests_step.files.append(junit.name)
    run(demo_step, [sys.executable, "-m", "nvfuse.demo"], "demo.txt", STEPS["demo"])
    for i, subset in enumerate(BENCH_SUBSETS):
        # one directory per subset: the bench names its reports by date and GPU only
        run(bench_step, [sys.executable, "-m", "bench", "--only", subset,
                         "--out", str(out / "bench" / subset)], f"bench-{i}.txt", STEPS["bench"])
    overall = "passed" if all(s.status == "passed" for s in steps) else "failed"
    _write_summary(out, overall, steps, versions())
    return 0 if overall == "passed" else 1


def _write_summary(out: Path, overall: str, steps: list[Step], info: dict[str, str]) -> None:
    summary = {"status": overall, "versions": info, "steps": [asdict(s) for s in steps]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# nvfuse GPU check: {overall}", "",
             *(f"- {k}: {v}" for k, v in info.items()), "",
             "| step | status | seconds | detail |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.0f} | {s.detail} |" for s in steps]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"[gpucheck] {overall}: {out / 'summary.md'}")


def _smoke_main(result_path: Path) -> int:
    try:
        results = smoke("cuda")
    except Exception as e:  # inputs could not even be made: the device itself is unusable
        results = [{"name": "setup", "ok": False, "detail": f"{type(e).__name__}: {e}"}]
    result_path.write_text(json.dumps(results, indent=2) + "\n")
    for r in results:
        print(f"{r['name']}: {'ok' if r['ok'] else 'FAILED'}: {r['detail']}")
    return 0 if all(r["ok"] for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nvfuse.gpucheck", description=__doc__.split(
        "\n")[0])
    p.add_argument("out", help="directory for every report (created)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help="total seconds for all steps (default 480)")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the smoke step
    args = p.parse_args(argv)
    if args.smoke:
        return _smoke_main(Path(args.out))
    return check(Path(args.out), args.budget)


if __name__ == "__main__":
    sys.exit(main())
