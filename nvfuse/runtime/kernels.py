"""Specializations: the process-wide memory cache of built kernels.

A `CompiledKernel` holds the kernel IR, the CUDA source and (for the GPU) the cubin of one fusion
for one signature; it is shared by every group anywhere in the process whose IR and signature are
equal, keyed by (`fusion_key(ir)`, signature).  nvfuse/pipeline.py builds them (`build`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nvfuse.fusion.ir import FusionIR, content_key
from nvfuse.lower import kir
from nvfuse.schedule.pointwise import PointwiseParams, PointwiseSignature
from nvfuse.schedule.reduction import ReductionParams, ReductionSignature
from nvfuse.schedule.horizontal import HorizontalParams, HorizontalSignature
from nvfuse.schedule.split import SplitSignature

# Every signature names its schedule kind (`sig.kind`, nvfuse/schedule/kind.py).
Signature = PointwiseSignature | ReductionSignature | SplitSignature | HorizontalSignature
Params = PointwiseParams | ReductionParams | HorizontalParams


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
# Builds running ahead of their first call on worker threads (pipeline.prefetch).
_pending: dict[tuple[str, Signature], Future[CompiledKernel]] = {}
_pool: ThreadPoolExecutor | None = None


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


def pending(key: str, sig: Signature) -> Future[CompiledKernel] | None:
    """The build of (fusion key, signature) running on a worker thread, if any."""
    with _lock:
        return _pending.get((key, sig))


def start(key: str, sig: Signature,
          work: Callable[[CompiledKernel | None], CompiledKernel]) -> Future[CompiledKernel]:
    """Run `work(kernel built so far or None)` on a worker thread unless (key, sig) already has
    a cubin or a build running; the future of the build (done at once when built)."""
    global _pool
    with _lock:
        found = _cache.get((key, sig))
        running = _pending.get((key, sig))
        if running is not None:
            return running
        if found is not None and found.cubin is not None:
            done: Future[CompiledKernel] = Future()
            done.set_result(found)
            return done
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                       thread_name_prefix="nvfuse-compile")
        future = _pool.submit(_finish, key, sig, work, found)
        _pending[(key, sig)] = future  # before _finish can pop it: it waits for the lock
        return future


def _finish(key: str, sig: Signature, work: Callable[[CompiledKernel | None], CompiledKernel],
            found: CompiledKernel | None) -> CompiledKernel:
    try:
        return work(found)
    finally:
        with _lock:
            _pending.pop((key, sig), None)


def clear() -> None:
    """Forget every specialization (tests)."""
    with _lock:
        _cache.clear()
