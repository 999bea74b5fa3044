"""`python -m bench`: time eager PyTorch, torch.compile (inductor, default mode) and nvfuse on
every case of bench/cases.py, print the table, write bench/results/<date>-<gpu>.{json,md,png}.

    python -m bench [--size tiny|full] [--only SUBSTRING[,SUBSTRING...]] [--out DIR]
                    [--device cpu|cuda] [--no-inductor] [--budget SECONDS]
    python -m bench --model [--only SUBSTRING[,SUBSTRING...]] [--out DIR]
    python -m bench --host | --launch [--out DIR]

`--model` times nothing: it builds every case's kernels at the full size without running them
and writes the static performance MODEL, <out>/model-<date>.{json,md} (bench/model/).

`--only` runs the cases whose name contains any of the comma-separated substrings, in the
order given (a device lease runs the cases that matter first); `--budget` starts no case once
that many seconds have passed, and the report lists the cases left out.

Every case is first checked against eager (each compiled variant, at the size being timed); a
variant that fails or mismatches records NaN and the reason is printed: one failure never stops
the suite.  Row fields by kind (all times in ms):
    pointwise/reduction/normalization/training/optimizer: median device time per call
        (timing.device_ms),
        inputs rotated so every call misses L2.  `bytes`: every input read once plus every output
        written once; for training (forward + backward) the forward inputs and the upstream
        gradient read, the forward output and every gradient written (activations saved for the
        backward are not counted, so the floor is a lower bound); an in-place update (the
        optimizer step) gives its own floor (`Case.min_bytes`).
    overhead: CPU wall time per call on tiny tensors (timing.host_ms); nvfuse on a cache hit.
    compile: first call of a fresh module: nvfuse cold (empty disk cache, memory caches cleared)
        in the case's row, nvfuse from the disk cache in "<case>-warm-disk"; inductor likewise
        after torch._dynamo.reset() (cold: its caches disabled); eager_ms 0.0; bytes 0.
On the CPU (tiny sizes only) kernels run through nvfuse's interpreter (NVFUSE_INTERPRET=1),
inductor is skipped (NaN) and times are wall-clock: no timing claims.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import nvfuse
from bench import report, timing
from bench.cases import CASES, Case, check_close, flatten, train_step
from nvfuse import config

NAN = float("nan")
VARIANTS = ("eager", "inductor", "nvfuse")
TRAIN_HINT = "forward + backward through torch.compile(backend='nvfuse') failed: "


@dataclass
class Run:
    """Options for one suite run, and what it found."""

    size: str
    device: torch.device
    inductor: bool
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (case, variant, why)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def fail(self, case: str, variant: str, why: str) -> float:
        self.failures.append((case, variant, why))
        print(f"  [{case}] {variant}: {why}", flush=True)
        return NAN


def nbytes(tensors: Sequence[Any]) -> int:
    return sum(t.nbytes for t in flatten(list(tensors)))


def shape_str(inputs: Sequence[Any]) -> str:
    shapes = ["x".join(map(str, t.shape)) or "scalar" for t in flatten(list(inputs))]
    return ";".join(dict.fromkeys(shapes))  # distinct shapes, in input order


def clone_set(inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in inputs)


def build(case: Case, variant: str, inputs: Sequence[torch.Tensor]) -> Callable[..., Any]:
    """The callable timed for `variant`: eager, torch.compile default mode, or nvfuse (through
    its dynamo backend for training, which needs autograd around the fused graph)."""
    fn = case.fn
    if variant == "inductor":
        fn = torch.compile(fn)
    elif variant == "nvfuse":
        fn = torch.compile(fn, backend=nvfuse_backend()) if case.train else nvfuse.fuse(fn, inputs)
    return train_step(fn) if case.train else fn


def nvfuse_backend() -> Any:
    """backend="nvfuse" where nvfuse is pip-installed (its entry point registers the name); the
    same function, passed directly, when nvfuse runs from a source tree on PYTHONPATH."""
    if "nvfuse" in torch._dynamo.list_backends(exclude_tags=()):
        return "nvfuse"
    from nvfuse.frontend.dynamo import nvfuse_backend as backend

    return backend


def guarded(run: Run, case: str, variant: str, thunk: Callable[[], float],
            hint: str = "") -> float:
    try:
        return thunk()
    except Exception as e:
        detail = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
        return run.fail(case, variant, f"{hint}{detail[:300]}")


def run_case(run: Run, case: Case) -> list[dict[str, Any]]:
    torch._dynamo.reset()  # each case compiles its own graphs: no shape sharing between cases
    inputs = case.make_inputs("tiny" if case.kind == "overhead" else run.size, run.device.type)
    row: dict[str, Any] = {"case": case.name, "kind": case.kind,
                           "dtype": str(case.dtype).removeprefix("torch."),
                           "shape": shape_str(inputs), "bytes": 0}
    if case.kind == "compile":
        return compile_rows(run, case, inputs, row)
    # a case that updates its inputs is checked on copies of the inputs as made
    pristine = clone_set(inputs) if case.mutates else inputs
    ref = build(case, "eager", inputs)(*(clone_set(pristine) if case.mutates else inputs))
    row["bytes"] = (case.min_bytes(inputs) if case.min_bytes is not None
                    else nbytes(inputs) + nbytes([ref]))
    k = 1 if case.kind == "overhead" else rotations(run, row["bytes"])  # overhead: no rotation
    sets = [inputs] + [clone_set(inputs) for _ in range(k - 1)]
    for variant in VARIANTS:
        if variant == "inductor" and not run.inductor:
            row["inductor_ms"] = NAN
            continue
        hint = TRAIN_HINT if case.train and variant == "nvfuse" else ""
        row[f"{variant}_ms"] = guarded(run, case.name, variant,
                                       lambda v=variant: time_variant(run, case, v, sets, ref,
                                                                      pristine),
                                       hint)
    return [row]


def rotations(run: Run, traffic: int) -> int:
    if not run.cuda:
        return 2  # exercises the rotation path; the CPU makes no timing claims
    return timing.rotation_count(traffic, timing.l2_bytes(run.device))


def time_variant(run: Run, case: Case, variant: str, sets: list[tuple[torch.Tensor, ...]],
                 ref: Any, pristine: Sequence[torch.Tensor]) -> float:
    fn = build(case, variant, sets[0])
    if variant != "eager":
        first = clone_set(pristine) if case.mutates else sets[0]  # ref's own inputs
        why = check_close(fn(*first), ref, case.dtype)  # compiles, then checks
        if why is not None:
            return run.fail(case.name, variant, f"mismatch against eager: {why}")
    if case.kind == "overhead":
        calls = 1000 if run.cuda else 5
        return timing.host_ms(fn, sets[0], cuda=run.cuda, warmup=50 if run.cuda else 1,
                              calls=calls)
    if run.cuda:
        return timing.device_ms(fn, sets, cuda=True)
    return timing.device_ms(fn, sets, cuda=False, warmup=1, reps=3)


# -- compile times ------------------------------------------------------------------------------


def compile_rows(run: Run, case: Case, inputs: Sequence[torch.Tensor],
                 row: dict[str, Any]) -> list[dict[str, Any]]:
    ref = case.fn(*inputs)
    cold, warm = dict(row, eager_ms=0.0), dict(row, case=f"{case.name}-warm-disk", eager_ms=0.0)

    def nvfuse_ms(cold: bool) -> float:
        ms, out, counts = timing.nvfuse_compile_ms(case.fn, inputs, cuda=run.cuda)
        why = check_close(out, ref, case.dtype)
        if why is not None:
            return run.fail(case.name, "nvfuse", f"mismatch against eager: {why}")
        # The counters must agree with the row's label, or the time is not what it claims.
        compiled, hits = counts.get("nvrtc_compiles", 0), counts.get("disk_hits", 0)
        if (cold and not compiled) or (not cold and (compiled or not hits)):
            return run.fail(case.name, "nvfuse", f"cache counters contradict the label: {counts}")
        return ms

    with (tempfile.TemporaryDirectory(prefix="nvfuse-bench-cache-") as cache_dir,
          timing.env("NVFUSE_CACHE_DIR", cache_dir)):  # empty: the first compile is cold
        cold["nvfuse_ms"] = guarded(run, cold["case"], "nvfuse", lambda: nvfuse_ms(True))
        warm["nvfuse_ms"] = guarded(run, warm["case"], "nvfuse", lambda: nvfuse_ms(False))
    for out, is_cold in ((cold, True), (warm, False)):
        out["inductor_ms"] = NAN if not run.inductor else guarded(
            run, out["case"], "inductor",
            lambda c=is_cold: timing.inductor_compile_ms(case.fn, inputs, cuda=run.cuda, cold=c))
    return [{k: r[k] for k in report.ROW_KEYS} for r in (cold, warm)]


# -- the suite ----------------------------------------------------------------------------------


def warm_up_toolchain(run: Run) -> None:
    """Pay one-time process costs (CUDA context, CuPy/NVRTC loading, tracing machinery, inductor
    imports) before anything is timed, so the first compile case measures compiling only."""
    x = torch.randn(64, device=run.device)
    fm = nvfuse.fuse(lambda t: t * 2 + 1, (x,))
    fm(x)
    if not run.cuda:  # the interpreter skips NVRTC; the CPU compile cases call it directly
        for kernel in fm.kernels:
            nvfuse.compile_source(kernel.source, config.get().arch)
    if run.inductor:
        torch.compile(lambda t: t * 3 - 1)(x)
    timing.sync(run.cuda)


def select(only: str | None) -> list[Case]:
    """The cases named by `only` (comma-separated substrings; each case once, in the order of
    the first substring it contains); every case when `only` is None or empty."""
    if not only:
        return list(CASES)
    chosen: dict[str, Case] = {}
    for part in filter(None, (p.strip() for p in only.split(","))):
        chosen.update((c.name, c) for c in CASES if part in c.name and c.name not in chosen)
    return list(chosen.values())


def run_suite(size: str = "full", only: str | None = None, out_dir: str = "bench/results",
              device: str | None = None, inductor: bool | None = None,
              budget_s: float | None = None) -> tuple[Run, dict]:
    """Run the cases `select(only)` names, starting none after `budget_s` seconds, and write
    the reports; returns (run, results)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cpu" and size != "tiny":
        print("note: full sizes need a GPU; the CPU runs --size tiny")
        size = "tiny"
    if inductor is None:
        inductor = dev.type == "cuda"  # on the CPU inductor needs a C++ toolchain and minutes
    run = Run(size, dev, inductor)
    if not inductor:
        print("note: torch.compile (inductor) is not timed in this run: inductor_ms is NaN")
    with timing.env("NVFUSE_INTERPRET", "1" if dev.type == "cpu" else None):
        meta = report.meta(dev, timing.copy_bandwidth_gbps(dev))
        warm_up_toolchain(run)
        rows: list[dict[str, Any]] = []
        started, left_out = time.monotonic(), []
        for case in select(only):
            if budget_s is not None and time.monotonic() - started > budget_s:
                left_out.append(case.name)
                continue
            print(f"{case.name} ...", flush=True)
            rows.extend(guarded_case(run, case))
    if left_out:
        meta["left_out"] = f"time budget ({budget_s:.0f} s) spent before: {', '.join(left_out)}"
        print(meta["left_out"])
    results = {"meta": meta, "cases": rows}
    print(report.render(results))
    for path in report.write_all(results, out_dir):
        print(f"wrote {path}")
    return run, results


def guarded_case(run: Run, case: Case) -> list[dict[str, Any]]:
    try:
        rows = run_case(run, case)
        if run.cuda:  # the case's tensors are gone now: hand their memory back for the next one
            torch.cuda.empty_cache()
        return rows
    except Exception as e:
        run.fail(case.name, "case", f"{type(e).__name__}: {str(e)[:300]}")
        return [{"case": case.name, "kind": case.kind,
                 "dtype": str(case.dtype).removeprefix("torch."), "shape": "?", "bytes": 0,
                 "eager_ms": NAN, "inductor_ms": NAN, "nvfuse_ms": NAN}]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time eager PyTorch, torch.compile and nvfuse on every benchmark case and "
                    "write <out>/<date>-<gpu>.json, .md and .png.")
    p.add_argument("--size", choices=("tiny", "full"), default="full",
                   help="full: the GPU sizes (default); tiny: a few elements per tensor")
    p.add_argument("--only", default=None,
                   help="run the cases whose name contains any of these comma-separated "
                        "substrings, in that order")
    p.add_argument("--budget", type=float, default=None,
                   help="start no case after this many seconds (the report lists the rest)")
    p.add_argument("--out", default=os.path.join("bench", "results"), help="output directory")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda when available; cpu runs nvfuse's interpreter, tiny only")
    p.add_argument("--no-inductor", action="store_true", help="skip torch.compile (NaN)")
    p.add_argument("--model", action="store_true",
                   help="no timing: write the static performance MODEL of every kernel at the "
                        "full size (no GPU needed) to <out>/model-<date>.json and .md")
    p.add_argument("--launch", action="store_true",
                   help="instead: host microseconds of a cached call and of the driver launch "
                        "alone on a CUDA device (bench/launch.py), to <out>/launch-<date>-<gpu>")
    p.add_argument("--host", action="store_true",
                   help="instead: host path and compile time on this CPU (bench/host.py), "
                        "written to <out>/host-<date>.json and .md; no GPU needed")
    args = p.parse_args(argv)
    if args.launch:
        from bench.launch import run_launch

        run_launch(args.out)
        return 0
    if args.host:
        from bench.host import run_host

        run_host(args.out)
        return 0
    if args.model:
        from bench.model import run_model

        _, paths = run_model(args.only, args.out)
        for path in paths:
            print(f"wrote {path}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    run, _ = run_suite(args.size, args.only, args.out, args.device,
                       False if args.no_inductor else None, args.budget)
    if run.failures:
        print(f"\n{len(run.failures)} variant(s) recorded NaN (reasons above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
