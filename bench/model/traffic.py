"""Global-memory traffic of a kernel, counted by running its kernel IR in the interpreter.

Input: a kernel IR `Kernel`, CPU tensors, scalars and grid (a scaled copy of the real call,
bench/model/plan.py).  Output: `Traffic`, per tensor parameter:
  requested  bytes of the 32-byte sectors each warp-level access touches, summed over accesses
             (what the SM asks of L1/L2: a coalesced access costs its bytes, a scattered,
             warp-uniform or single-lane one its sectors);
  elements   bytes of the elements each warp-level access asks for (an element several threads
             of a warp read counts once), summed over accesses;
  needed     bytes of the fewest whole sectors that could hold each warp-level access's
             elements (32 x ceil(its element bytes / 32)), summed over accesses: `requested`
             over `needed` is what scattered, strided or misaligned accesses waste, while a
             warp-uniform or single-lane access (one sector for a 2-byte value) wastes nothing
             a better layout could save;
  unique     distinct bytes the whole kernel touches (its footprint);
  per_block  distinct bytes each block touches, summed over blocks;
and `width_bytes`: per access width in bits (the IR's width: lanes x itemsize for a vector
access, itemsize for a scalar one), the bytes of the distinct elements each warp-level access
touches (its active lanes', an element several of them read counting once), summed over
accesses.  So a warp-uniform load (a row's target, a 0-dim scalar: one broadcast request per
warp) weighs its element size once per warp, while a coalesced access, whose lanes touch
distinct elements, weighs its lanes x threads x itemsize.

How: the interpreter's Load and Store rules are wrapped while the kernel runs; each access's
element offsets are evaluated for the active threads (the rule's own mask) and kept, then
de-duplicated once at the end.  A warp is 32 consecutive threads of a block (blocks are whole
warps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nvfuse.interpret import machine as _machine  # importing it registers the rules
from nvfuse.interpret import memory, state
from nvfuse.lower.kir import Kernel, Load, Store

SECTOR = 32
WARP = 32


def distinct(a: np.ndarray) -> np.ndarray:
    """The distinct values of `a`, sorted (sorting beats numpy's hash-based unique here)."""
    a = np.sort(a, axis=None)
    if a.size == 0:
        return a
    keep = np.empty(a.size, bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


@dataclass
class Traffic:
    requested: dict[str, float] = field(default_factory=dict)
    elements: dict[str, float] = field(default_factory=dict)
    needed: dict[str, float] = field(default_factory=dict)
    unique: dict[str, float] = field(default_factory=dict)
    per_block: dict[str, float] = field(default_factory=dict)
    width_bytes: dict[int, float] = field(default_factory=dict)


@dataclass
class _Recorder:
    block: int
    sectors: dict[str, int] = field(default_factory=dict)
    elements: dict[str, int] = field(default_factory=dict)
    needed: dict[str, int] = field(default_factory=dict)  # sectors
    keys: dict[str, list[np.ndarray]] = field(default_factory=dict)  # block * span + element
    width_bytes: dict[int, float] = field(default_factory=dict)

    def record(self, m: state.Machine, s: Load | Store) -> None:
        buf = m.buffers[s.tensor]
        itemsize = s.dtype.itemsize
        index = memory._offsets(m, s.offset, s.lanes)
        if index.ndim == 1:
            index = np.broadcast_to(index[:, None], (s.lanes, m.threads))
        active = (np.ones(m.threads, bool) if m.mask is None
                  else np.broadcast_to(m.mask, (m.threads,)))
        threads = np.flatnonzero(active)
        if threads.size == 0:
            return
        elems = index[:, threads]  # (lanes, active threads)
        warps = np.broadcast_to(threads // WARP, elems.shape).astype(np.int64)
        sector = (buf.pointer + elems.astype(np.int64) * itemsize) // SECTOR
        pairs = distinct(warps * (1 << 40) + sector)
        self.sectors[s.tensor] = self.sectors.get(s.tensor, 0) + pairs.size
        # a warp asks once for an element several of its active lanes read (a uniform load):
        # per warp, the distinct elements this access touches (sorted by warp)
        touched = distinct(warps * (1 << 40) + elems)
        self.elements[s.tensor] = self.elements.get(s.tensor, 0) + touched.size
        width = (s.lanes if s.vector else 1) * itemsize * 8
        self.width_bytes[width] = self.width_bytes.get(width, 0) + touched.size * itemsize
        per_warp = np.diff(np.flatnonzero(np.diff(touched >> 40, prepend=-1, append=-1)))
        fewest = int((-(-(per_warp * itemsize) // SECTOR)).sum())
        self.needed[s.tensor] = self.needed.get(s.tensor, 0) + fewest
        span = max(buf.memory.shape[0], 1)
        blocks = np.broadcast_to(threads // self.block, elems.shape)
        key = distinct(blocks.astype(np.int64) * span + elems)
        self.keys.setdefault(s.tensor, []).append(key)

    def result(self, kernel: Kernel, buffers_span: dict[str, int]) -> Traffic:
        out = Traffic(width_bytes=dict(self.width_bytes))
        for p in kernel.tensors:
            keys = self.keys.get(p.name)
            if not keys:
                continue
            span = max(buffers_span[p.name], 1)
            pairs = distinct(np.concatenate(keys))
            out.requested[p.name] = float(self.sectors[p.name] * SECTOR)
            out.elements[p.name] = float(self.elements[p.name] * p.dtype.itemsize)
            out.needed[p.name] = float(self.needed[p.name] * SECTOR)
            out.per_block[p.name] = float(pairs.size * p.dtype.itemsize)
            out.unique[p.name] = float(distinct(pairs % span).size * p.dtype.itemsize)
        return out


@contextlib.contextmanager
def _counting(rec: _Recorder) -> Iterator[None]:
    rules = state._STMTS
    load, store = rules[Load], rules[Store]

    def counted_load(m: state.Machine, s: Load) -> None:
        rec.record(m, s)
        load(m, s)

    def counted_store(m: state.Machine, s: Store) -> None:
        rec.record(m, s)
        store(m, s)

    rules[Load], rules[Store] = counted_load, counted_store
    try:
        yield
    finally:
        rules[Load], rules[Store] = load, store


def count_traffic(kernel: Kernel, tensors: Sequence[torch.Tensor], scalars: Sequence[int],
                  grid: int) -> Traffic:
    """Run `kernel` in the interpreter and count its global traffic (module docstring)."""
    rec = _Recorder(kernel.block)
    spans = {p.name: _machine._reachable(t) for p, t in zip(kernel.tensors, tensors)}
    with _counting(rec):
        _machine.run_kernel(kernel, tensors, scalars, grid)
    return rec.result(kernel, spans)
