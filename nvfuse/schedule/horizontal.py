"""Horizontal schedule: which independent kernels of one call share a launch.

Input: the one-kernel launches of a bundle's members (the plan's horizontal stage groups
independent fusion groups, nvfuse/fusion/horizontal.py), each as its kernel IR and grid.
Output: `bundle(members)`: lists of member positions, each list one horizontal launch
(lower/horizontal.py), every other member launched alone.

When it pays.  A launch costs the GPU a few microseconds of front-end time and the host one call;
a training step's optimizer update or bookkeeping is hundreds of small independent kernels, so
sharing launches is where its time goes.  Sharing never changes a member's own schedule:
- members are bucketed by block size, so no member runs with threads it would not have had
  (a narrower member inside a wider block would idle the extra threads of each of its blocks);
- each launch's arguments stay within the kernel parameter space (`MAX_PARAM_BYTES`, 4 KB with
  an NVRTC older than 12.1), and its members' shared memory (side by side: every block of the launch
  reserves the sum) within `MAX_SHARED_BYTES`, so that shared memory never limits the blocks
  an SM holds much more than a member's own would (more members start another launch);
- a member of two kernels (a split reduction) or none (empty outputs) launches as before.
Block order follows the plan: a bundle's first member's blocks are dispatched first.  On one
stream a launch moved after independent work costs no device time, and the plan never moves a
group past a write it could observe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from nvfuse.schedule.kind import ScheduleKind

# The kernel argument space: 32,764 bytes from CUDA 12.1 on (every architecture nvfuse targets,
# sm_80 and newer, and every driver that loads a CUDA 12.1+ NVRTC's cubin), 4 KB before.  A
# launch of GPT-2 small's 148 AdamW updates needs about 10 KB.
MAX_PARAM_BYTES = 32764
LEGACY_PARAM_BYTES = 4096
# Shared memory a block of one launch may reserve for all its members together: the block
# reductions' scratch is 16-384 bytes each, so this only stops bundles of many reductions.
MAX_SHARED_BYTES = 8192
POINTER_BYTES = 8  # also the largest scalar: what joining a launch may add in alignment


@dataclass(frozen=True)
class HorizontalSignature:
    """What a horizontal kernel is built from: its members' (fusion key, signature) in block
    order.  The kernel is reusable for any sizes its members' signatures accept (block offsets
    and member scalars are arguments)."""

    members: tuple[tuple[str, Any], ...]
    arch: str
    kind: ClassVar[ScheduleKind] = ScheduleKind.HORIZONTAL


@dataclass(frozen=True)
class HorizontalParams:
    block: int


@dataclass(frozen=True)
class Member:
    """One candidate kernel: its block, its grid for this call, and the argument bytes it adds
    to a horizontal launch (lower/horizontal.py `param_bytes`)."""

    block: int
    grid: int
    param_bytes: int
    shared_bytes: int = 0


def bundle(members: Sequence[Member], max_param_bytes: int = MAX_PARAM_BYTES
           ) -> list[list[int]]:
    """Positions of `members` grouped into horizontal launches (each of two or more members,
    in member order) whose arguments fit `max_param_bytes`; members left out launch alone."""
    by_block: dict[int, list[int]] = {}
    for i, m in enumerate(members):
        if m.grid > 0:
            by_block.setdefault(m.block, []).append(i)
    launches: list[list[int]] = []
    for positions in by_block.values():
        current: list[int] = []
        used = shared = 0
        for i in positions:
            size = members[i].param_bytes + POINTER_BYTES  # alignment slack
            extra = members[i].shared_bytes
            if current and (used + size > max_param_bytes or shared + extra > MAX_SHARED_BYTES):
                launches.append(current)
                current, used, shared = [], 0, 0
            current.append(i)
            used += size
            shared += extra
        launches.append(current)
    return sorted((b for b in launches if len(b) > 1), key=lambda b: b[0])
