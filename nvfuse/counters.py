"""Process-wide counters behind nvfuse.stats() / nvfuse.reset_stats() (module named apart from
the stats() function so neither shadows the other).

compiles: kernel specializations built; memory_hits / disk_hits: cache hits; fallbacks: group
executions that ran eagerly instead; launches: kernel runs (GPU or interpreter).
"""

from __future__ import annotations

import threading
from collections import Counter

_KEYS = ("compiles", "memory_hits", "disk_hits", "fallbacks", "launches", "nvrtc_compiles")
_lock = threading.Lock()
_counts: Counter[str] = Counter()


def bump(key: str, n: int = 1) -> None:
    with _lock:
        _counts[key] += n


def snapshot() -> dict[str, int]:
    with _lock:
        return {k: _counts.get(k, 0) for k in _KEYS} | {
            k: v for k, v in _counts.items() if k not in _KEYS
        }


def reset() -> None:
    with _lock:
        _counts.clear()
