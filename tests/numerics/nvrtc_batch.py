"""Compile many generated kernels with few NVRTC calls: kernels that draw on the same helper
files go into one translation unit (in chunks) under the helper sections the chunk uses
(`inline_helpers`); a failing chunk is retried kernel by kernel, each with its own source, so the
CompileError names the culprit with its source and log.  (Each kernel's own trimmed prelude is
compiled alone by the golden tests.)"""

from __future__ import annotations

import re

import nvfuse
from nvfuse.codegen.templates import inline_helpers
from nvfuse.runtime.nvrtc import compile_to_cubin

KERNEL_MARK = "// kernel IR:"  # the emitter's first line after the inlined helpers
_BANNER = re.compile(r"(?m)^// ---- (\S+\.cuh) ----$")


def helper_files(source: str) -> tuple[str, ...]:
    """The helper files a generated unit draws on (its banner lines)."""
    return tuple(_BANNER.findall(source[:source.index(KERNEL_MARK)]))
CHUNK = 150


def compile_all(sources: dict[str, str], arch: str, label: str) -> None:
    """Compile every source (kernel name -> CUDA unit) for `arch`; raise CompileError if any
    fails.  Cluster kernels (`__cluster_dims__`, built for sm_90 by the interpreter's default
    arch) are left out below sm_90: the schedule never builds one for such an arch."""
    by_files: dict[tuple[str, ...], list[str]] = {}
    for _, src in sorted(sources.items()):
        if "__cluster_dims__(" in src and not _has_clusters(arch):
            continue
        by_files.setdefault(helper_files(src), []).append(src)
    for files, units in by_files.items():
        for start in range(0, len(units), CHUNK):
            bodies = [u[u.index(KERNEL_MARK):] for u in units[start:start + CHUNK]]
            code = "\n".join(bodies)
            try:
                cubin = compile_to_cubin(inline_helpers(files, code) + code, arch,
                                         f"{label}_batch.cu")
            except nvfuse.CompileError:
                for unit in units[start:start + CHUNK]:
                    compile_to_cubin(unit, arch, f"{label}_kernel.cu")
                raise
            assert cubin[:4] == b"\x7fELF"


def _has_clusters(arch: str) -> bool:
    from nvfuse.schedule.device import arch_number
    from nvfuse.schedule.reduction import CLUSTER_MIN_ARCH

    return arch_number(arch) >= CLUSTER_MIN_ARCH
