"""The README's first command: fuse two small models, show every stage, check against eager.

    python -m nvfuse.demo

1. Intersection-over-union of two sets of boxes given as eight tensors (x, y, w, h each), built
   from min/max/clamp/mul/div: eager runs one kernel per op, fused it is one kernel.
2. A bias + GELU + residual block.
Prints the fusion groups, the generated CUDA, the NVRTC compile result and the check against
eager.  On a GPU it also times eager, torch.compile and nvfuse; without one it runs the kernels
through the interpreter (NVFUSE_INTERPRET=1) and says so.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any
from collections.abc import Callable

import torch


def box_iou(ax: torch.Tensor, ay: torch.Tensor, aw: torch.Tensor, ah: torch.Tensor,
            bx: torch.Tensor, by: torch.Tensor, bw: torch.Tensor, bh: torch.Tensor
            ) -> torch.Tensor:
    """IoU of boxes a and b, each given as corner (x, y) and size (w, h)."""
    inter_w = (torch.minimum(ax + aw, bx + bw) - torch.maximum(ax, bx)).clamp(min=0)
    inter_h = (torch.minimum(ay + ah, by + bh) - torch.maximum(ay, by)).clamp(min=0)
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union.clamp(min=1e-6)


def bias_gelu_residual(x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor
                       ) -> torch.Tensor:
    return torch.nn.functional.gelu(x + bias) + residual


def _boxes(n: int, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    xy = [torch.rand(n, generator=g) * 100 for _ in range(4)]
    wh = [torch.rand(n, generator=g) * 30 + 1 for _ in range(4)]
    ax, ay, bx, by = xy
    aw, ah, bw, bh = wh
    return tuple(t.to(device, dtype) for t in (ax, ay, aw, ah, bx, by, bw, bh))


def _block(rows: int, hidden: int, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(rows, hidden, generator=g)
    bias = torch.randn(hidden, generator=g)
    residual = torch.randn(rows, hidden, generator=g)
    return tuple(t.to(device, dtype) for t in (x, bias, residual))


def _kernel_text(source: str) -> str:
    """The generated kernel itself, without the inlined helper headers."""
    return source[source.index('extern "C"'):]


def _time_ms(fn: Callable[[], Any]) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(50):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _eager_op_count(fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...]) -> int:
    from nvfuse.frontend.fx import trace_to_aten

    gm = trace_to_aten(fn, inputs)
    return sum(1 for n in gm.graph.nodes if n.op == "call_function")


def run_case(title: str, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...],
             gpu: bool) -> bool:
    import nvfuse

    print(f"\n=== {title} ===")
    print(f"eager: {_eager_op_count(fn, inputs)} aten ops, one kernel launch each")
    fm = nvfuse.fuse(fn, inputs)
    print(f"nvfuse: {len(fm.fusion_groups)} fusion group(s)")
    for group in fm.fusion_groups:
        print(group)
    out = fm(*inputs)
    expected = fn(*inputs)
    for kernel in fm.kernels:
        print(f"\n--- kernel {kernel.name} (signature {kernel.signature[1]}) ---")
        print(_kernel_text(kernel.source))
        start = time.perf_counter()
        arch = "sm_90"
        cubin = nvfuse.compile_source(kernel.source, arch)
        print(f"NVRTC: {len(cubin)}-byte cubin for {arch} in "
              f"{(time.perf_counter() - start) * 1e3:.1f} ms")
    tol = 1e-2 if inputs[0].dtype in (torch.float16, torch.bfloat16) else 1e-5
    ok = torch.allclose(out.float(), expected.float(), rtol=tol, atol=tol)
    err = (out.float() - expected.float()).abs().max().item()
    print(f"check against eager: max |error| = {err:.3g} -> {'OK' if ok else 'MISMATCH'}")
    if gpu:
        compiled = torch.compile(fn)
        eager_ms = _time_ms(lambda: fn(*inputs))
        inductor_ms = _time_ms(lambda: compiled(*inputs))
        nvfuse_ms = _time_ms(lambda: fm(*inputs))
        print(f"time: eager {eager_ms:.3f} ms, torch.compile {inductor_ms:.3f} ms, "
              f"nvfuse {nvfuse_ms:.3f} ms")
    return ok


def main() -> int:
    gpu = torch.cuda.is_available()
    if not gpu:
        os.environ["NVFUSE_INTERPRET"] = "1"
        from nvfuse import config

        config.reload()
        print("No CUDA device: kernels run through nvfuse's kernel-IR interpreter on the CPU "
              "(NVFUSE_INTERPRET=1); the CUDA source is still generated and compiled by NVRTC.")
    device = "cuda" if gpu else "cpu"
    n, rows, hidden = (1 << 24, 8192, 4096) if gpu else (1000, 64, 256)
    dtype = torch.float16 if gpu else torch.float32
    ok = run_case("box IoU (8 inputs)", box_iou, _boxes(n, device, torch.float32), gpu)
    ok &= run_case("bias + GELU + residual", bias_gelu_residual,
                   _block(rows, hidden, device, dtype), gpu)
    import nvfuse

    print(f"\nstats: {nvfuse.stats()}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
