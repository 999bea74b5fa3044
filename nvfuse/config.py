"""Every NVFUSE_* environment flag, read in this module only.

`get()` returns a frozen `Config` read from the environment at first use; `reload()` re-reads it
(tests that set flags with monkeypatch call it).  Nothing else in nvfuse reads os.environ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DUMP_STAGES = ("graph", "fusion_ir", "horizontal", "kernel_ir", "cuda", "ptx", "launch")


@dataclass(frozen=True)
class Config:
    disable: bool          # NVFUSE_DISABLE=1: run the original graph, compile nothing
    interpret: bool        # NVFUSE_INTERPRET=1: run kernel IR on the CPU with numpy
    strict: bool           # NVFUSE_STRICT=1: raise instead of falling back to eager
    dump: frozenset[str]   # NVFUSE_DUMP=graph,fusion_ir,...: stages to print
    dump_dir: str | None   # NVFUSE_DUMP_DIR: write dumps as files there instead of stderr
    cache_dir: str         # NVFUSE_CACHE_DIR: on-disk cubin cache
    disk_cache: bool       # NVFUSE_CACHE=0 turns the disk cache off
    arch: str              # NVFUSE_ARCH: target arch when there is no GPU to ask
    horizontal: bool = True  # NVFUSE_HORIZONTAL=0: every group launches alone


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _read() -> Config:
    dump_raw = os.environ.get("NVFUSE_DUMP", "")
    dump = frozenset(s.strip() for s in dump_raw.split(",") if s.strip())
    if "all" in dump:
        dump = frozenset(DUMP_STAGES)
    unknown = dump - set(DUMP_STAGES)
    if unknown:
        raise ValueError(
            f"NVFUSE_DUMP: unknown stage(s) {sorted(unknown)}; choose from {', '.join(DUMP_STAGES)}"
        )
    arch = os.environ.get("NVFUSE_ARCH", "sm_90").strip()
    if not arch.startswith(("sm_", "compute_")):
        raise ValueError(f"NVFUSE_ARCH={arch!r}: expected a name like sm_80 or sm_90")
    return Config(
        disable=_flag("NVFUSE_DISABLE"),
        interpret=_flag("NVFUSE_INTERPRET"),
        strict=_flag("NVFUSE_STRICT"),
        dump=dump,
        dump_dir=os.environ.get("NVFUSE_DUMP_DIR") or None,
        cache_dir=os.environ.get("NVFUSE_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "nvfuse"),
        disk_cache=os.environ.get("NVFUSE_CACHE", "1").strip() != "0",
        arch=arch,
        horizontal=os.environ.get("NVFUSE_HORIZONTAL", "1").strip() != "0",
    )


_current: Config | None = None


def get() -> Config:
    global _current
    if _current is None:
        _current = _read()
    return _current


def reload() -> Config:
    global _current
    _current = _read()
    return _current
