"""Process-wide counters behind nvfuse.stats() / nvfuse.reset_stats() (module named apart from
the stats() function so neither shadows the other).

compiles: kernel specializations built; memory_hits / disk_hits: cache hits; fallbacks: group
executions that ran eagerly instead; launches: kernel runs (GPU or interpreter, a CUDA graph's
kernels included); graph_captures / graph_replays / graph_skips: CUDA graphs captured, graph
launches, and calls of a `cuda_graphs=True` module that ran without one (nvfuse/runtime/graphs.py).

`bump` is on every fused call's hot path, so it takes no lock: each thread counts into its own
dict (registered once, under the lock, on the thread's first bump), and `snapshot` sums them.
A dict item update by its one owning thread cannot lose counts; `reset` zeroes the registered
dicts in place.
"""

from __future__ import annotations

import threading
from collections import Counter

_KEYS = ("compiles", "memory_hits", "disk_hits", "fallbacks", "launches", "nvrtc_compiles",
         "graph_captures", "graph_replays", "graph_skips")
_lock = threading.Lock()
_per_thread: list[Counter[str]] = []  # every thread's counts, alive or finished
_local = threading.local()


def _mine() -> Counter[str]:
    counts: Counter[str] = Counter()
    with _lock:
        _per_thread.append(counts)
    _local.counts = counts
    return counts


def bump(key: str, n: int = 1) -> None:
    try:
        counts = _local.counts
    except AttributeError:
        counts = _mine()
    counts[key] += n


def bump_hits(groups: int, launches: int) -> None:
    """A replayed call's counts in one go: `groups` memory hits and `launches` launches."""
    try:
        counts = _local.counts
    except AttributeError:
        counts = _mine()
    counts["memory_hits"] += groups
    counts["launches"] += launches


def snapshot() -> dict[str, int]:
    total: Counter[str] = Counter()
    with _lock:
        for counts in _per_thread:
            total.update(dict(counts))  # a copy: its owner may be adding keys meanwhile
    return {k: total.get(k, 0) for k in _KEYS} | {k: v for k, v in total.items() if k not in _KEYS}


def reset() -> None:
    with _lock:
        for counts in _per_thread:
            for key in list(counts):
                counts[key] = 0
