"""Specializations: the process-wide memory cache of built kernels.

A `CompiledKernel` holds the kernel IR, the CUDA source and (for the GPU) the cubin of one fusion
for one signature; it is shared by every group anywhere in the process whose IR and signature are
equal, keyed by (`fusion_key(ir)`, signature).  nvfuse/pipeline.py builds them (`build`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from nvfuse.fusion.ir import FusionIR, content_key
from nvfuse.lower import kir
from nvfuse.schedule.pointwise import PointwiseParams, PointwiseSignature
from nvfuse.schedule.reduction import ReductionParams, ReductionSignature
from nvfuse.schedule.split import SplitSignature

# Every signature names its schedule kind (`sig.kind`, nvfuse/schedule/kind.py).
Signature = PointwiseSignature | ReductionSignature | SplitSignature
Params = PointwiseParams | ReductionParams


@dataclass
class CompiledKernel:
    """One built specialization (`fm.kernels` lists these)."""

    name: str
    source: str
    signature: tuple[str, Signature]  # (fusion IR text, shape signature): hashable
    kernel_ir: kir.Kernel
    params: Params
    cubin: bytes | None = None
    _loaded: dict[int, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"CompiledKernel({self.name}, {self.signature[1]})"


_lock = threading.Lock()
_cache: dict[tuple[str, Signature], CompiledKernel] = {}


def fusion_key(ir: FusionIR) -> str:
    """What the kernel computes, without the group's name (equal groups share kernels)."""
    return content_key(ir)


def lookup(key: str, sig: Signature) -> CompiledKernel | None:
    """The kernel built for (fusion key, signature), if any."""
    with _lock:
        return _cache.get((key, sig))


def store(key: str, sig: Signature, kernel: CompiledKernel) -> None:
    with _lock:
        _cache[(key, sig)] = kernel


def clear() -> None:
    """Forget every specialization (tests)."""
    with _lock:
        _cache.clear()
