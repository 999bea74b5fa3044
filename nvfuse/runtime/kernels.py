"""Specializations: (FusionIR, signature) -> CompiledKernel, built once and kept in memory.

Input: a fusion group's IR and the signature of one call (`plan_launch`).  Output: a
`CompiledKernel` holding the kernel IR, the CUDA source and (for the GPU) the cubin, shared by
every group anywhere in the process whose IR and signature are equal.  Building runs the rest of
the pipeline -- lower, emit, NVRTC (through the disk cache) -- and dumps each stage asked for.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nvfuse import config, counters
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.fusion.ir import FusionIR, content_key
from nvfuse.lower import kir
from nvfuse.lower.pointwise import lower_pointwise
from nvfuse.lower.reduction import lower_reduction
from nvfuse.lower.split import lower_split
from nvfuse.runtime.dump import dump
from nvfuse.schedule.pointwise import PointwiseParams, PointwiseSignature
from nvfuse.schedule.reduction import ReductionParams, ReductionSignature
from nvfuse.schedule.split import SplitSignature

# A pointwise fusion (reduce_ndim 0) has a pointwise signature, a reduction fusion a reduction one
# (a ColumnSignature, its subclass, for the column schedule).
# A split reduction's two kernels have SplitSignatures (nvfuse/schedule/split.py).
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
# Kernels being built ahead of their first call (`prefetch`): NVRTC releases the GIL, so a
# plan's kernels compile in parallel, one per core.
_pending: dict[tuple[str, Signature], Future[CompiledKernel]] = {}
_pool: ThreadPoolExecutor | None = None


def fusion_key(ir: FusionIR) -> str:
    """What the kernel computes, without the group's name (equal groups share kernels)."""
    return content_key(ir)


def get_kernel(ir: FusionIR, key: str, sig: Signature, params: Params,
               gpu: bool) -> CompiledKernel:
    """The specialization of `ir` for `sig`, built on first use (counts compiles/memory_hits).
    A build started by `prefetch` is waited for, not repeated."""
    with _lock:
        found = _cache.get((key, sig))
        pending = _pending.get((key, sig))
    if found is not None and (found.cubin is not None or not gpu):
        counters.bump("memory_hits")
        return found
    if pending is not None:
        return pending.result()
    return _complete(found or _build(ir, key, sig, params), key, sig, gpu)


def _complete(kernel: CompiledKernel, key: str, sig: Signature, gpu: bool) -> CompiledKernel:
    """Add the cubin where needed and publish `kernel` in the cache."""
    # the GPU needs the cubin; NVFUSE_DUMP=ptx asks NVRTC for PTX even when interpreting
    if kernel.cubin is None and (gpu or "ptx" in config.get().dump):
        from nvfuse.runtime.cache import compile_source  # CuPy is imported lazily

        kernel.cubin = compile_source(kernel.source, sig.arch)
    with _lock:
        _cache[(key, sig)] = kernel
    return kernel


def prefetch(ir: FusionIR, key: str, sig: Signature, params: Params) -> Future[CompiledKernel]:
    """Start building the GPU specialization of `ir` for `sig` (lower, emit, NVRTC) on a worker
    thread, unless it is built or being built; `get_kernel` then waits for it.  A failed build
    raises from `get_kernel` as it would have there."""
    global _pool
    with _lock:
        found = _cache.get((key, sig))
        pending = _pending.get((key, sig))
        if pending is not None:
            return pending
        if found is not None and found.cubin is not None:
            done: Future[CompiledKernel] = Future()
            done.set_result(found)
            return done
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                       thread_name_prefix="nvfuse-compile")
        future = _pool.submit(_build_ahead, ir, key, sig, params)
        _pending[(key, sig)] = future
        return future


def _build_ahead(ir: FusionIR, key: str, sig: Signature, params: Params) -> CompiledKernel:
    try:
        with _lock:
            found = _cache.get((key, sig))
        return _complete(found or _build(ir, key, sig, params), key, sig, gpu=True)
    finally:
        with _lock:
            _pending.pop((key, sig), None)


def _build(ir: FusionIR, key: str, sig: Signature, params: Params) -> CompiledKernel:
    if isinstance(sig, SplitSignature):
        kernel_ir = lower_split(ir, sig)
    elif isinstance(sig, ReductionSignature):
        kernel_ir = lower_reduction(ir, sig, params.block)
    else:
        kernel_ir = lower_pointwise(ir, sig, params.block)
    source = emit_cuda(kernel_ir)
    counters.bump("compiles")
    stages = config.get().dump
    if "kernel_ir" in stages:
        dump("kernel_ir", kernel_ir.name, str(kernel_ir))
    if "cuda" in stages:
        dump("cuda", kernel_ir.name, source)
    return CompiledKernel(kernel_ir.name, source, (key, sig), kernel_ir, params)


def clear() -> None:
    """Forget every specialization (tests)."""
    with _lock:
        _cache.clear()
