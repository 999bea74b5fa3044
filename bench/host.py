"""`python -m bench --host`: nvfuse's host path and compile time, measured on this machine's CPU
in one run (no GPU needed), written to bench/results/host-<date>.json and a Markdown table.

These are CPU measurements, not GPU timings.  Each figure is also reported as a ratio to a
reference measured in the same run and interleaved with it, so the ratios hold on a loaded or
slower machine where the absolute numbers do not:
  * host path: microseconds per call on tiny CPU tensors, the kernel launch replaced by a no-op
    (`Stage.launch`), against one eager `x.add(1)`.  "+ packing" rows also fill the GPU
    launch's driver argument buffer (nvfuse/runtime/packed.py), which is all the GPU path adds
    before the driver call itself.  "per-group path" runs the plan's graph without the replay.
  * compile: NVRTC milliseconds per kernel, cold (no cache), for every kernel the bench cases
    build with nvfuse's own options (runtime/nvrtc.py: COMPILE_OPTIONS and the speed options
    the loaded NVRTC has), against NVRTC on an empty kernel with plain NVRTC defaults (only
    the arch given): `median_over_empty`.  Also the phases of those compiles (front end alone
    with --fdevice-syntax-only, then + NVVM to PTX for compute_XY, then + ptxas to the cubin),
    the first NVRTC call of a fresh process, a plan's kernels compiled one after another
    against all at once on worker threads, the NVRTC options that might cost time for no
    gain, the median again at NVRTC's lowest optimisation (`floor_over_empty`: what no option
    goes under), and NVRTC's own time trace of the empty and the median kernel (the fixed
    cost every compile pays: front end with NVRTC's builtin header, NVVM's module linker,
    ptxas's PTX parsing).
Timing: min over repeats of the mean of a loop (host path), median of repeats (compiles).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any

import torch

import nvfuse
from nvfuse import config
from nvfuse.runtime import executor, kernels, nvrtc
from nvfuse.runtime.packed import ArgBuffer

EMPTY_KERNEL = 'extern "C" __global__ void nvf_empty(float* y) { y[threadIdx.x] = 1.0f; }\n'
OPTION_SETS: tuple[tuple[str, ...], ...] = (
    (), ("--extra-device-vectorization",), ("-lineinfo",), ("-Xptxas=-O2",), ("--dopt=on",),
    ("--Ofast-compile=mid",), ("--Ofast-compile=max",),
)
# NVRTC's fastest compile of the bench kernels that still yields a cubin (the fastest of the
# --Ofast-compile levels measured on NVRTC 13.5: "max" runs slower than "mid"): the floor no
# choice of options goes under.  Not used by nvfuse: it leaves loops rolled (fewer loads in
# flight, see options_sass_global_loads)
FLOOR_OPTIONS = ("--Ofast-compile=mid",)
# the spans of NVRTC's own time trace (--fdevice-time-trace) that split a compile's fixed cost
TRACE_SPANS = (
    ("front end", "CUDA C++ Front-End"), ("of which header files", "Processing Header File"),
    ("NVVM", "LibNVVM"), ("of which module linker", "NVVM Module Linker"),
    ("of which optimizer", "NVVM Optimizer"), ("ptxas", "Total PTXAS Time"),
    ("of which PTX parsing", "PTX parsing and setup time"),
)


def _loop_us(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def interleaved_us(variants: dict[str, Callable[[], Any]], calls: int = 2000,
                   repeats: int = 15) -> dict[str, float]:
    """Per variant, the minimum over `repeats` of the mean microseconds of `calls` calls; the
    variants take turns, so load on the machine hits them alike."""
    for fn in variants.values():
        _loop_us(fn, 200)  # warm-up: plans, replays, allocator
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            best[name] = min(best[name], _loop_us(fn, calls))
    return best


def _bias_gelu(x: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x + b) + r


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x * 0.5, -1)


class _StubLaunch:
    """Replaces `executor.Stage.launch` while timing: no kernel runs; with `pack`, each launch
    fills a driver argument buffer as the GPU path does."""

    def __init__(self, pack: bool) -> None:
        self.pack = pack
        self.buffers: dict[int, ArgBuffer] = {}

    def __call__(self, stage: executor.Stage, tensors: list[torch.Tensor],
                 scalars: tuple[int, ...]) -> None:
        if self.pack:
            buffer = self.buffers.get(id(stage))
            if buffer is None:
                dtypes = [p.dtype for p in stage.kernel.kernel_ir.scalars]
                buffer = self.buffers[id(stage)] = ArgBuffer(len(tensors), dtypes, "stub")
            buffer.fill(tensors, scalars)


def host_path() -> list[dict[str, Any]]:
    """Microseconds per call: eager references, then nvfuse cached calls with a stubbed launch."""
    x8 = torch.randn(8, 32)
    b, r = torch.randn(32), torch.randn(8, 32)
    one = torch.randn(16)
    fused = nvfuse.fuse(_bias_gelu, (x8, b, r))
    soft = nvfuse.fuse(_softmax, (x8,))
    plan = next(iter(fused._plans.values()))
    original = executor.Stage.launch
    rows = []
    try:
        for pack in (False, True):
            stub = _StubLaunch(pack)
            executor.Stage.launch = (  # type: ignore[method-assign]
                lambda stage, tensors, scalars, stub=stub: stub(stage, tensors, scalars))
            variants = {
                "eager x.add(1)": lambda: one.add(1),
                "eager bias+gelu+residual (3 ops)": lambda: _bias_gelu(x8, b, r),
                "nvfuse bias+gelu+residual (1 kernel)": lambda: fused(x8, b, r),
                "nvfuse softmax (1 kernel)": lambda: soft(x8),
                "nvfuse bias+gelu+residual, per-group path": lambda: plan.gm.forward(x8, b, r),
            }
            times = interleaved_us(variants)
            ref = times["eager x.add(1)"]
            suffix = " + packing" if pack else ""
            for name, us in times.items():
                if pack and name.startswith("eager"):
                    continue
                rows.append({"what": name + (suffix if name.startswith("nvfuse") else ""),
                             "us": round(us, 3), "x_eager_add": round(us / ref, 3)})
    finally:
        executor.Stage.launch = original  # type: ignore[method-assign]
    return rows


def _plain_ms(source: str, options: Sequence[str] = (), arch: str | None = None) -> float:
    """Milliseconds of one raw NVRTC compile with NVRTC's defaults plus the arch (NVFUSE_ARCH's
    sm_XY: a cubin; compute_XY: PTX only) and `options` (none of nvfuse's own)."""
    from cupy_backends.cuda.libs import nvrtc as raw  # type: ignore[import-untyped]

    arch = arch or config.get().arch
    start = time.perf_counter()
    prog = raw.createProgram(source, "bench.cu", (), ())
    try:
        raw.compileProgram(prog, (f"--gpu-architecture={arch}", *options))
    finally:
        raw.destroyProgram(prog)
    return (time.perf_counter() - start) * 1e3


def _phases_ms(source: str) -> tuple[float, float, float]:
    """(front end, NVVM, ptxas) milliseconds of `source` with nvfuse's options: a syntax-only
    compile, a compile to PTX for compute_XY less that, a cubin compile less that."""
    arch = config.get().arch
    opts = (*nvrtc.COMPILE_OPTIONS, *nvrtc.speed_options())
    virtual = "compute_" + arch.split("_", 1)[1]
    runs: dict[str, list[float]] = {"front": [], "ptx": [], "cubin": []}
    for _ in range(3):  # interleaved, so load on the machine hits the three alike
        runs["front"].append(_plain_ms(source, (*opts, "--fdevice-syntax-only"), virtual))
        runs["ptx"].append(_plain_ms(source, opts, virtual))
        runs["cubin"].append(_plain_ms(source, opts, arch))
    front, ptx, cubin = (statistics.median(runs[k]) for k in ("front", "ptx", "cubin"))
    return front, ptx - front, cubin - ptx


def _trace_ms(source: str) -> dict[str, float] | None:
    """NVRTC's own time trace of one compile of `source` with nvfuse's options, as the
    `TRACE_SPANS` in milliseconds (None where this NVRTC has no --fdevice-time-trace)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stem = os.path.join(tmp, "trace")
        try:
            _plain_ms(source, (*nvrtc.COMPILE_OPTIONS, *nvrtc.speed_options(),
                               f"--fdevice-time-trace={stem}"))
        except Exception:
            return None
        paths = [os.path.join(tmp, f) for f in os.listdir(tmp)]
        if not paths:
            return None
        with open(paths[0]) as f:
            events = json.load(f)
    events = events.get("traceEvents", []) if isinstance(events, dict) else events
    spans: dict[str, float] = {}
    for label, name in TRACE_SPANS:
        us = sum(e.get("dur", 0) for e in events if e.get("ph") == "X" and e.get("name") == name)
        spans[label] = round(us / 1e3, 1)
    return spans


@contextlib.contextmanager
def _extra_options(options: Sequence[str]) -> Iterator[None]:
    """nvfuse's NVRTC options plus `options` while the block runs."""
    saved = nvrtc.COMPILE_OPTIONS
    nvrtc.COMPILE_OPTIONS = (*saved, *options)
    try:
        yield
    finally:
        nvrtc.COMPILE_OPTIONS = saved


def _compile_ms(source: str, options: Sequence[str] = ()) -> float:
    with _extra_options(options):
        start = time.perf_counter()
        nvrtc.compile_to_cubin(source, config.get().arch)
        return (time.perf_counter() - start) * 1e3


def _median_ms(source: str, options: Sequence[str] = (), repeats: int = 3) -> float:
    return statistics.median(_compile_ms(source, options) for _ in range(repeats))


def bench_kernel_sources() -> list[tuple[str, str]]:
    """(name, CUDA source) of every kernel the bench cases build at their tiny sizes."""
    from bench.cases import CASES, flatten

    seen: dict[str, str] = {}
    for case in CASES:
        if case.train or case.kind in ("overhead", "compile"):
            continue
        inputs = case.make_inputs("tiny", "cpu")
        try:
            fm = nvfuse.fuse(case.fn, tuple(inputs))
            flatten(fm(*inputs))
        except Exception as e:  # a case nvfuse cannot build is reported, not fatal
            print(f"  [{case.name}] skipped: {type(e).__name__}: {e}", flush=True)
            continue
        for k in fm.kernels:
            seen.setdefault(k.name, k.source)
    return sorted(seen.items())


def _sass_loads(sources: Sequence[str], options: Sequence[str] = ()) -> int | None:
    """Global load instructions in the SASS of `sources` compiled with nvfuse's options plus
    `options` (None without nvdisasm)."""
    from bench.model import sass

    tool = sass.find_nvdisasm()
    if tool is None:
        return None
    with _extra_options(options):
        cubins = [nvrtc.compile_to_cubin(s, config.get().arch) for s in sources]
    return sum(len(sass.global_accesses(sass.disassemble(sass.whole_elf(c), tool))[0])
               for c in cubins)


def first_nvrtc_call_ms() -> float:
    """The first NVRTC compile of a fresh process (NVRTC's own start-up included)."""
    code = ("import time; from nvfuse.runtime import nvrtc; s = time.perf_counter(); "
            f"nvrtc.compile_to_cubin({EMPTY_KERNEL!r}, 'sm_90'); "
            "print((time.perf_counter() - s) * 1e3)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def parallel_plan_ms(sources: Sequence[str]) -> tuple[float, float]:
    """(one after another, all at once on threads) milliseconds to compile `sources`."""
    start = time.perf_counter()
    for s in sources:
        _compile_ms(s)
    serial = (time.perf_counter() - start) * 1e3
    threads = [threading.Thread(target=_compile_ms, args=(s,)) for s in sources]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return serial, (time.perf_counter() - start) * 1e3


def compile_times() -> dict[str, Any]:
    first = first_nvrtc_call_ms()
    _compile_ms(EMPTY_KERNEL)  # NVRTC started in this process
    sources = bench_kernel_sources()
    # The reference: an empty kernel with NVRTC's own defaults, so that nvfuse's options
    # (--minimal trims NVRTC's builtin header too) count for nvfuse, not for the reference.
    empty = statistics.median(_plain_ms(EMPTY_KERNEL) for _ in range(5))
    empty_nvfuse = _median_ms(EMPTY_KERNEL, repeats=5)
    per_kernel = {name: round(_median_ms(src), 1) for name, src in sources}
    median = statistics.median(per_kernel.values())
    median_name = sorted(per_kernel, key=per_kernel.__getitem__)[len(per_kernel) // 2]
    phase_ms: dict[str, Any]
    try:
        phases = [_phases_ms(src) for _, src in sources]
        phase_ms = {"empty kernel": [round(x, 1) for x in _phases_ms(EMPTY_KERNEL)],
                    "median over the bench kernels": [
                        round(statistics.median(p[i] for p in phases), 1) for i in range(3)]}
    except Exception as e:  # an NVRTC without --fdevice-syntax-only: no phase split
        phase_ms = {"unavailable": f"{type(e).__name__}: {str(e)[:80]}"}
    options: dict[str, Any] = {}
    sample = [src for _, src in sources[:: max(1, len(sources) // 6)]]
    options["(plain NVRTC defaults)"] = round(
        statistics.median(_plain_ms(s) for s in sample), 1)
    loads: dict[str, Any] = {}
    for opts in OPTION_SETS:
        name = " ".join(opts) or "(nvfuse's)"
        try:
            ms = statistics.median(_median_ms(s, opts, repeats=1) for s in sample)
            options[name] = round(ms, 1)
            loads[name] = _sass_loads(sample, opts)
        except nvfuse.CompileError as e:
            options[name] = f"refused: {str(e).splitlines()[0][:80]}"
    try:
        floor = statistics.median(_median_ms(src, FLOOR_OPTIONS, repeats=1) for _, src in sources)
    except nvfuse.CompileError:  # an NVRTC without --Ofast-compile
        floor = None
    median_source = dict(sources)[median_name]
    traces = {"empty kernel": _trace_ms(EMPTY_KERNEL), median_name: _trace_ms(median_source)}
    slowest_two = sorted(sources, key=lambda kv: per_kernel[kv[0]])[-2:]
    serial, parallel = parallel_plan_ms([s for _, s in slowest_two])
    return {
        "first_nvrtc_call_ms": round(first, 1),
        "empty_kernel_ms": round(empty, 1),
        "empty_kernel_nvfuse_options_ms": round(empty_nvfuse, 1),
        "nvfuse_options": " ".join((*nvrtc.COMPILE_OPTIONS, *nvrtc.speed_options())),
        "bench_kernels": len(per_kernel),
        "median_kernel": median_name,
        "phases_ms_front_end_nvvm_ptxas": phase_ms,
        "median_kernel_ms": round(median, 1),
        "median_over_empty": round(median / empty, 3),
        "per_kernel_ms": per_kernel,
        # the same median with NVRTC's optimisation turned down (FLOOR_OPTIONS), over the same
        # empty-kernel reference: what no choice of options can go under
        "floor_options": " ".join(FLOOR_OPTIONS),
        "floor_median_ms": None if floor is None else round(floor, 1),
        "floor_over_empty": None if floor is None else round(floor / empty, 3),
        "nvrtc_time_trace_ms": traces,
        "options_median_ms": options,
        # global load instructions in the sample's SASS per option set (None: no nvdisasm):
        # fewer than nvfuse's means loops left rolled, fewer loads in flight per thread
        "options_sass_global_loads": loads,
        "two_kernel_plan_serial_ms": round(serial, 1),
        "two_kernel_plan_parallel_ms": round(parallel, 1),
        "slowest_of_the_two_ms": max(per_kernel[n] for n, _ in slowest_two),
        "cores": os.cpu_count(),
    }


def tracing_ms() -> float:
    """Milliseconds for nvfuse.fuse to trace and plan bias+gelu+residual (kernels cached)."""
    x8 = torch.randn(8, 32)
    args = (x8, torch.randn(32), torch.randn(8, 32))
    nvfuse.fuse(_bias_gelu, args)(*args)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        nvfuse.fuse(_bias_gelu, args)
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 1)


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# nvfuse host path and compile time (CPU measurement, {report['meta']['date']})",
             "", "A CPU measurement on this machine, not GPU timings. Launch stubbed.", "",
             "| call | us | x eager add(1) |", "|---|---:|---:|"]
    lines += [f"| {r['what']} | {r['us']} | {r['x_eager_add']} |" for r in report["host"]]
    c = report["compile"]
    lines += ["", "| compile | ms |", "|---|---:|",
              f"| first NVRTC call of a process | {c['first_nvrtc_call_ms']} |",
              f"| empty kernel, plain NVRTC defaults | {c['empty_kernel_ms']} |",
              f"| empty kernel, nvfuse's options ({c.get('nvfuse_options', '')}) | "
              f"{c.get('empty_kernel_nvfuse_options_ms', '')} |",
              f"| median bench kernel ({c['bench_kernels']}) | {c['median_kernel_ms']} "
              f"({c['median_over_empty']}x empty) |",
              f"| median bench kernel, NVRTC's floor ({c.get('floor_options', '')}) | "
              f"{c.get('floor_median_ms')} ({c.get('floor_over_empty')}x empty) |",
              f"| two-kernel plan, serial | {c['two_kernel_plan_serial_ms']} |",
              f"| two-kernel plan, parallel ({c['cores']} cores) | "
              f"{c['two_kernel_plan_parallel_ms']} (slowest alone {c['slowest_of_the_two_ms']}) |",
              f"| nvfuse.fuse tracing + planning | {report['tracing_ms']} |", ""]
    phases = c.get("phases_ms_front_end_nvvm_ptxas", {})
    if phases:
        lines += ["| compile phases, nvfuse's options | front end | NVVM | ptxas |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {k} | " + (" | ".join(str(x) for x in v) if isinstance(v, list) else v)
                  + " |" for k, v in phases.items()]
        lines += [""]
    traces = {k: v for k, v in c.get("nvrtc_time_trace_ms", {}).items() if v}
    if traces:
        labels = [label for label, _ in TRACE_SPANS]
        lines += ["| NVRTC's time trace, ms | " + " | ".join(labels) + " |",
                  "|---|" + "---:|" * len(labels)]
        lines += [f"| {k} | " + " | ".join(str(v.get(x, "")) for x in labels) + " |"
                  for k, v in traces.items()]
        lines += [""]
    loads = c.get("options_sass_global_loads", {})
    lines += ["| NVRTC options (a sample of the kernels) | median ms | global loads in the SASS |",
              "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {loads.get(k, '')} |" for k, v in c["options_median_ms"].items()]
    return "\n".join(lines) + "\n"


def run_host(out_dir: str) -> dict[str, Any]:
    """Measure, print and write host-<date>.json / .md under `out_dir`."""
    os.environ["NVFUSE_INTERPRET"] = "1"  # CPU tensors; the launch itself is stubbed
    config.reload()
    kernels.clear()
    report = {
        "meta": {"kind": "host path and compile time, CPU measurement (not GPU timings)",
                 "date": date.today().isoformat(), "torch": torch.__version__,
                 "nvrtc": nvrtc.nvrtc_version(), "python": sys.version.split()[0],
                 "cores": os.cpu_count(), "nvfuse": nvfuse.__version__},
        "host": host_path(),
        "tracing_ms": tracing_ms(),
        "compile": compile_times(),
    }
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"host-{report['meta']['date']}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    markdown = to_markdown(report)
    with open(stem + ".md", "w") as f:
        f.write(markdown)
    print(markdown)
    return report
