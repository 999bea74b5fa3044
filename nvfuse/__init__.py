"""nvfuse: a CUDA C++ code-generating kernel fuser for PyTorch (public API only).

    fm = nvfuse.fuse(obj, example_inputs)   # FusedModule, callable like obj
    fm.fusion_groups, fm.kernels
    nvfuse.compile_source(src, arch="sm_90") -> cubin bytes   (raises nvfuse.CompileError)
    nvfuse.stats(), nvfuse.reset_stats()
    torch.compile(model, backend="nvfuse")
    nvfuse.fuse(obj, example_inputs, cuda_graphs=True)        # CUDA-graph replays
    torch.compile(model, backend="nvfuse", options={"cuda_graphs": True})
    print(nvfuse.explain(model, *inputs, training=True))   # groups, kernels, eager ops and why
"""

from __future__ import annotations

from nvfuse import counters as _counters
from nvfuse.api import FusedModule, backend, fuse
from nvfuse.errors import CompileError, LaunchError, LoweringError, NvfuseError
from nvfuse.explain import ExplainReport, explain
from nvfuse.frontend import dynamo as _dynamo
from nvfuse.version import __version__

_dynamo.register()  # torch.compile(backend="nvfuse") without an installed entry point


def compile_source(src: str, arch: str | None = None) -> bytes:
    """CUDA C++ source -> cubin through NVRTC (no GPU needed), via the memory and disk caches."""
    from nvfuse.runtime.cache import compile_source as _compile

    return _compile(src, arch)


def stats() -> dict[str, int]:
    """Counters: compiles, memory_hits, disk_hits, fallbacks, launches (and nvrtc_compiles,
    graph_captures, graph_replays, graph_skips)."""
    return _counters.snapshot()


def reset_stats() -> None:
    _counters.reset()


__all__ = [
    "CompileError", "ExplainReport", "FusedModule", "LaunchError", "LoweringError", "NvfuseError",
    "backend", "compile_source", "explain", "fuse", "reset_stats", "stats", "__version__",
]
