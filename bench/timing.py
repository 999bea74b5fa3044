"""Timing primitives for `python -m bench`.

Contract (every function returns milliseconds, or GB/s for the copy):
    device_ms(fn, arg_sets, cuda=..., ...)  median time of one call of `fn`, cycling through
        `arg_sets` (input rotation).  CUDA: one pair of CUDA events around each call, the launch
        queue backlogged first so the events see device time, not the host's launch gaps (host
        cost is measured separately by `host_ms`).  CPU: time.perf_counter around each call.
    host_ms(fn, args, cuda=...)  CPU wall time per call: perf_counter around N calls after a
        warm-up, synchronizing the device only before and after the N calls.
    once_ms(fn, cuda=...)  wall time of a single synchronized call (compile times).
    copy_bandwidth_gbps(device)  a large device-to-device copy, bytes read + bytes written.
    nvfuse_compile_ms(fn, inputs, cuda=...)  a fresh nvfuse.fuse and its first call, nvfuse's
        in-memory kernel caches cleared first (the disk cache is whatever NVFUSE_CACHE_DIR holds).
    inductor_compile_ms(fn, inputs, cuda=..., cold=...)  torch._dynamo.reset(), then the first
        call of torch.compile(fn); cold disables inductor's caches, warm fills them first.
    env(name, value)  set an environment flag for a block and reload nvfuse's config.
    rotation_count(set_bytes, l2)  how many input sets make every timed call miss L2.

The method follows triton.testing.do_bench (warm up, estimate, size the repetition count from the
estimate, events per call, one synchronize at the end, median), with two changes: L2 is defeated
by rotating among copies of the inputs instead of flushing a buffer between calls (a flush adds
its own kernel between the events' neighbours), and a `torch.cuda._sleep` kernel ahead of the
timed calls lets the host enqueue them all before the device starts, so small cases are timed
on the device rather than on Python's launch path.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

import nvfuse
from nvfuse import config

DEFAULT_L2_BYTES = 50 * 1024 * 1024  # H100's L2, used when the device does not report one
MIN_REPS = 50        # timed calls for a case under ~50 ms per call
MAX_REPS = 60        # more buys little for a median; more would overflow the launch queue
LONG_CALL_MS = 50.0  # over this per call, time fewer calls (but never fewer than MIN_LONG_REPS)
MIN_LONG_REPS = 10
MAX_BACKLOG_MS = 2000.0  # never sleep the device longer than this ahead of the timed calls

_sleep_cycles_per_ms: float | None = None


def l2_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return DEFAULT_L2_BYTES
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


def rotation_count(set_bytes: int, l2: int, cap: int = 256) -> int:
    """Input sets to cycle through so that k * set_bytes > 2 * L2: each set is evicted before it
    is used again, so every timed call reads its inputs from device memory."""
    if set_bytes <= 0 or set_bytes >= 2 * l2:
        return 1  # one set already streams 2x L2 between two uses of any of its bytes
    return min(cap, math.ceil(2 * l2 / set_bytes) + 1)


def sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def device_ms(fn: Callable[..., Any], arg_sets: Sequence[Sequence[Any]], *, cuda: bool,
              warmup: int = 10, reps: int | None = None) -> float:
    """Median milliseconds per call of fn(*args), args cycling through `arg_sets` without
    restarting between phases, so a set is reused only after all the others (module docstring)."""
    sets = itertools.cycle(arg_sets)
    host_per_call = _warm_up(fn, sets, max(warmup, len(arg_sets)), cuda)
    if not cuda:
        return _cpu_median_ms(fn, sets, reps or MIN_REPS)
    n = reps or _reps_for(_estimate_ms(fn, sets))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    _backlog(min(MAX_BACKLOG_MS, 1.25 * n * host_per_call))
    for start, end in zip(starts, ends):
        args = next(sets)  # fetched outside the events
        start.record()
        fn(*args)
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def host_ms(fn: Callable[..., Any], args: Sequence[Any], *, cuda: bool, warmup: int = 50,
            calls: int = 1000) -> float:
    """CPU wall milliseconds per call over `calls` back-to-back calls (host overhead)."""
    for _ in range(warmup):
        fn(*args)
    sync(cuda)
    start = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    sync(cuda)  # only at the end: the calls themselves must not wait for the device
    return (time.perf_counter() - start) * 1e3 / calls


def once_ms(fn: Callable[[], Any], *, cuda: bool) -> float:
    """Wall milliseconds of one call, device work included (compile-time measurements)."""
    sync(cuda)
    start = time.perf_counter()
    fn()
    sync(cuda)
    return (time.perf_counter() - start) * 1e3


def copy_bandwidth_gbps(device: torch.device, nbytes: int | None = None,
                        reps: int | None = None) -> float:
    """GB/s (1e9 bytes) of dst.copy_(src) counting bytes read plus bytes written; 1 GiB buffers
    on a GPU (20x an H100's L2, so the copy streams from device memory)."""
    cuda = device.type == "cuda"
    nbytes = nbytes or ((1 << 30) if cuda else (32 << 20))
    # Random bytes, never zeros: a copy doesn't care, but nothing here should be timed on zeros.
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = device_ms(lambda s, d: d.copy_(s), [(src, dst)], cuda=cuda, warmup=5,
                   reps=reps or (30 if cuda else 5))
    del src, dst
    if cuda:
        torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3) / 1e9


@contextmanager
def env(name: str, value: str | None) -> Iterator[None]:
    """`name=value` in the environment for the block (None: leave it as it is), nvfuse's config
    re-read on entry and exit."""
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
        config.reload()
    try:
        yield
    finally:
        if value is not None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
            config.reload()


def forget_compiled_kernels() -> None:
    """nvfuse's memory caches (specializations with their cubins, source -> cubin); the disk
    cache stays.  CUmodules loaded by earlier cases stay loaded: the compile cases come first."""
    from nvfuse.runtime import cache, kernels

    kernels.clear()
    cache.clear_memory_cache()


def nvfuse_compile_ms(fn: Callable[..., Any], inputs: Sequence[Any], *, cuda: bool
                      ) -> tuple[float, Any, dict[str, int]]:
    """(ms, output, counter deltas) of a fresh fuse + first call.  The interpreter never calls
    NVRTC, so on the CPU the generated sources are compiled explicitly, as the GPU path would.
    The deltas (nvrtc_compiles, disk_hits...) say whether the time was cold or from disk."""
    forget_compiled_kernels()
    result: list[Any] = []

    def first() -> None:
        fm = nvfuse.fuse(fn, inputs)
        result.append(fm(*inputs))
        if not cuda:
            for kernel in fm.kernels:
                nvfuse.compile_source(kernel.source, config.get().arch)

    before = nvfuse.stats()
    ms = once_ms(first, cuda=cuda)
    after = nvfuse.stats()
    return ms, result[0], {k: after.get(k, 0) - before.get(k, 0) for k in after}


def inductor_compile_ms(fn: Callable[..., Any], inputs: Sequence[Any], *, cuda: bool,
                        cold: bool) -> float:
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    patch: dict[str, Any] = {}
    if cold:  # force_disable_caches also gives triton a fresh cache dir; older torch lacks it
        patch = ({"force_disable_caches": True} if hasattr(inductor_config, "force_disable_caches")
                 else {"fx_graph_cache": False})
    else:  # fill inductor's caches, then time a compile that can hit them
        torch.compile(fn)(*inputs)
        torch._dynamo.reset()
    with inductor_config.patch(patch):
        compiled = torch.compile(fn)
        return once_ms(lambda: compiled(*inputs), cuda=cuda)


# -- helpers -----------------------------------------------------------------------------------


def _warm_up(fn: Callable[..., Any], sets: Iterator[Sequence[Any]], n: int, cuda: bool) -> float:
    """Run n calls (every set at least once); return the host's milliseconds per call spent
    *enqueueing* them, which sizes the backlog."""
    sync(cuda)
    start = time.perf_counter()
    for _ in range(n):
        fn(*next(sets))
    host = (time.perf_counter() - start) * 1e3 / n
    sync(cuda)
    return host


def _estimate_ms(fn: Callable[..., Any], sets: Iterator[Sequence[Any]], n: int = 3) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(n):
        fn(*next(sets))
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


def _reps_for(estimate_ms: float) -> int:
    if estimate_ms > LONG_CALL_MS:
        return max(MIN_LONG_REPS, min(MIN_REPS, int(2000.0 / estimate_ms)))
    return max(MIN_REPS, min(MAX_REPS, int(500.0 / max(estimate_ms, 1e-3))))


def _cpu_median_ms(fn: Callable[..., Any], sets: Iterator[Sequence[Any]], n: int) -> float:
    times = []
    for _ in range(n):
        args = next(sets)
        start = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _backlog(ms: float) -> None:
    """Enqueue a device-side sleep of about `ms` so the timed calls queue up behind it."""
    cycles_per_ms = _calibrate_sleep()
    if cycles_per_ms and ms > 0:
        torch.cuda._sleep(int(ms * cycles_per_ms))


def _calibrate_sleep() -> float:
    """Clock cycles of torch.cuda._sleep per millisecond (0.0 where _sleep is unavailable)."""
    global _sleep_cycles_per_ms
    if _sleep_cycles_per_ms is None:
        _sleep_cycles_per_ms = 0.0
        if hasattr(torch.cuda, "_sleep"):
            cycles = 10_000_000
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda._sleep(cycles // 10)  # first launch pays module loading
            start.record()
            torch.cuda._sleep(cycles)
            end.record()
            torch.cuda.synchronize()
            rate = cycles / max(start.elapsed_time(end), 1e-9)
            # Trust only a plausible clock (0.1-10 GHz); otherwise time without a backlog.
            _sleep_cycles_per_ms = rate if 1e5 <= rate <= 1e7 else 0.0
    return _sleep_cycles_per_ms
