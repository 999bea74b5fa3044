"""`python -m bench --launch`: the host cost of a cached nvfuse call on a CUDA device, with the
driver launch measured on its own (issue: a cached call at the cost of one eager op).

`bench --host` measures the host path on the CPU with the launch stubbed; this is its GPU
counterpart.  On tiny CUDA tensors, interleaved (the variants take turns, so load hits them
alike), each a loop of calls closed by one synchronize, host microseconds per call:
  * eager x.add(1) and eager bias + GELU + residual (3 ops): the references;
  * nvfuse bias + GELU + residual, a cached one-kernel call (everything the user pays);
  * the driver launch alone: the same stage, tensors and scalars handed to the packed launcher
    (`nvfuse/runtime/packed.py`: patch the pointer slots, one cuLaunchKernel);
  * the same call with `cuda_graphs=True` (nvfuse/runtime/graphs.py): a graph replay with the
    inputs copied into its static buffers, and with the static buffers passed (no copies).
The difference of the last two is nvfuse's own host path.  Written to
<out>/launch-<date>-<gpu>.json and .md.  Host wall time on the GPU machine, not device time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import torch

import nvfuse
from bench.report import slug
from nvfuse.runtime import executor


def _bias_gelu(x: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x + b) + r


def _loop_us(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def interleaved_us(variants: dict[str, Callable[[], Any]], calls: int = 2000,
                   repeats: int = 11) -> dict[str, float]:
    """Per variant, the median over `repeats` of the mean microseconds per call of a
    synchronized loop of `calls` calls, the variants taking turns."""
    for fn in variants.values():
        _loop_us(fn, 200)
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            runs[name].append(_loop_us(fn, calls))
    return {name: sorted(v)[len(v) // 2] for name, v in runs.items()}


def captured_launch(fm: Any, inputs: tuple[torch.Tensor, ...]
                    ) -> tuple[executor.Stage, list[torch.Tensor], tuple[int, ...]]:
    """(stage, tensors, scalars) of the one launch a call of `fm` makes."""
    seen: list[tuple[executor.Stage, list[torch.Tensor], tuple[int, ...]]] = []
    original = executor.GpuStage.launch

    def record(stage: executor.Stage, tensors: list[torch.Tensor],
               scalars: tuple[int, ...]) -> None:
        seen.append((stage, list(tensors), scalars))
        original(stage, tensors, scalars)  # type: ignore[arg-type]

    executor.GpuStage.launch = record  # type: ignore[method-assign]
    try:
        fm(*inputs)
    finally:
        executor.GpuStage.launch = original  # type: ignore[method-assign]
    if len(seen) != 1:
        raise RuntimeError(f"expected one launch per call, saw {len(seen)}")
    return seen[0]


def run_launch(out_dir: str) -> dict[str, Any]:
    """Measure, print and write launch-<date>-<gpu>.json / .md under `out_dir` (CUDA only)."""
    if not torch.cuda.is_available():
        raise SystemExit("bench --launch needs a CUDA device")
    dev = torch.device("cuda")
    x, b, r = (torch.randn(8, 32, device=dev), torch.randn(32, device=dev),
               torch.randn(8, 32, device=dev))
    one = torch.randn(16, device=dev)
    fm = nvfuse.fuse(_bias_gelu, (x, b, r))
    torch.testing.assert_close(fm(x, b, r), _bias_gelu(x, b, r))
    stage, tensors, scalars = captured_launch(fm, (x, b, r))
    graphed = nvfuse.fuse(_bias_gelu, (x, b, r), cuda_graphs=True)
    for _ in range(2):  # record, then capture
        torch.testing.assert_close(graphed(x, b, r), _bias_gelu(x, b, r))
    static = graphed.graph_inputs(x, b, r)
    if static is None:
        raise RuntimeError(f"no CUDA graph captured: {graphed.cuda_graph_skips}")
    times = interleaved_us({
        "eager x.add(1)": lambda: one.add(1),
        "eager bias+gelu+residual (3 ops)": lambda: _bias_gelu(x, b, r),
        "nvfuse bias+gelu+residual (1 kernel, cached call)": lambda: fm(x, b, r),
        "driver launch alone (packed, same kernel)": lambda: stage.launch(tensors, scalars),
        "nvfuse cuda_graphs=True (3 input copies + graph replay)": lambda: graphed(x, b, r),
        "nvfuse cuda_graphs=True, static inputs passed (graph replay)":
            lambda: graphed(*static),
    })
    ref = times["eager x.add(1)"]
    gpu = torch.cuda.get_device_name(dev)
    report = {"meta": {"kind": "host microseconds per call on a CUDA device (not device time)",
                       "date": date.today().isoformat(), "gpu": gpu, "torch": torch.__version__},
              "rows": [{"what": k, "us": round(v, 2), "x_eager_add": round(v / ref, 2)}
                       for k, v in times.items()]}
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"launch-{report['meta']['date']}-{slug(gpu)}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    lines = [f"# nvfuse launch path on {gpu}, {report['meta']['date']}", "",
             "Host microseconds per call, tiny CUDA tensors, synchronized loops of 2000 calls, "
             "median of 11 (bench/launch.py). Not device time.", "",
             "| what | us | x eager add |", "|---|---:|---:|"]
    lines += [f"| {row['what']} | {row['us']} | {row['x_eager_add']} |" for row in report["rows"]]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report
