"""One place every pipeline stage sends its NVFUSE_DUMP output through.

Input: a stage name (one of config.DUMP_STAGES), an object name (usually the kernel's) and the
text to show.  Output: nothing, as a side effect the text goes to stderr under a header line, or
to the file `<NVFUSE_DUMP_DIR>/<name>.<stage>.txt` when NVFUSE_DUMP_DIR is set (the directory is
created).  `dump()` writes only when the stage is switched on in NVFUSE_DUMP; callers whose text
is expensive to build ask `enabled(stage)` first.
"""

from __future__ import annotations

import os
import re
import sys

from nvfuse import config

# Names become file names: keep them to a portable alphabet so a kernel name can never escape the
# dump directory or produce a name the file system rejects.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def enabled(stage: str) -> bool:
    """Whether NVFUSE_DUMP asks for `stage`."""
    _check_stage(stage)
    return stage in config.get().dump


def dump(stage: str, name: str, text: str) -> bool:
    """Show `text` for `stage` if that stage is dumped; returns whether anything was written."""
    if not enabled(stage):
        return False
    if not text.endswith("\n"):
        text += "\n"
    dump_dir = config.get().dump_dir
    if dump_dir is None:
        sys.stderr.write(f"===== nvfuse {stage}: {name} =====\n{text}")
        sys.stderr.flush()
        return True
    os.makedirs(dump_dir, exist_ok=True)
    path = os.path.join(dump_dir, f"{_safe(name)}.{stage}.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def _safe(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned or "unnamed"


def _check_stage(stage: str) -> None:
    # A typo in a stage name would silently never print; fail loudly instead.
    if stage not in config.DUMP_STAGES:
        raise ValueError(f"nvfuse dump: unknown stage {stage!r}; one of {config.DUMP_STAGES}")
