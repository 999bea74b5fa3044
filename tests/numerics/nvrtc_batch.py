"""Compile many generated kernels with few NVRTC calls: kernels that share their helper prelude
go into one translation unit (in chunks); a failing chunk is retried kernel by kernel so the
CompileError names the culprit with its own source and log."""

from __future__ import annotations

import nvfuse
from nvfuse.runtime.nvrtc import compile_to_cubin

KERNEL_MARK = "// kernel IR:"  # the emitter's first line after the inlined helpers
CHUNK = 150


def compile_all(sources: dict[str, str], arch: str, label: str) -> None:
    """Compile every source (kernel name -> CUDA unit) for `arch`; raise CompileError if any
    fails."""
    by_prelude: dict[str, list[str]] = {}
    for _, src in sorted(sources.items()):
        cut = src.index(KERNEL_MARK)
        by_prelude.setdefault(src[:cut], []).append(src[cut:])
    for prelude, bodies in by_prelude.items():
        for start in range(0, len(bodies), CHUNK):
            chunk = bodies[start:start + CHUNK]
            try:
                cubin = compile_to_cubin(prelude + "\n".join(chunk), arch, f"{label}_batch.cu")
            except nvfuse.CompileError:
                for body in chunk:
                    compile_to_cubin(prelude + body, arch, f"{label}_kernel.cu")
                raise
            assert cubin[:4] == b"\x7fELF"
