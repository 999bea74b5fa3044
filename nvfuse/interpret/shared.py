"""Interpreter rules for shared memory and barriers: `Shared`, `SharedElem`, `Sync`.

Input: those kernel-IR nodes and the `Machine`.  Output: per-block arrays in `Machine.shared`
(shape (grid, size)), values read from them, stores into them under the active mask.

Checks.  Threads run in lockstep here, so a missing barrier would go unnoticed by the values
alone; instead every element remembers which thread of its block wrote or read it since the
block's last barrier, and an access that the device could order either way raises
InterpretError naming the array, element and threads:
- a read of an element another thread wrote (read after write without `Sync`);
- a write of an element another thread wrote or read (write after write / after read);
- two threads of a block storing different values to one element in one statement.
Several threads storing the *same* value in one statement is allowed (a common idiom), but the
element then counts as written by many threads, so any later read before a barrier is flagged
(conservative).  Out-of-range indices and dtype mismatches raise as well.

A barrier (`Sync`, or the ones inside a block reduction) must be reached by all threads of a
block or none; blocks that do not reach it keep their access records.
"""

from __future__ import annotations

import numpy as np

from nvfuse.interpret.state import (
    MANY_THREADS,
    NO_THREAD,
    Machine,
    SharedArray,
    Value,
    evaluate_expr,
    poison,
    register_expr,
    register_stmt,
    uniform_groups,
)
from nvfuse.lower.kir import Shared, SharedElem, Sync

# Static __shared__ arrays are limited to 48 KiB per block (more needs dynamic shared memory).
STATIC_SHARED_BYTES = 48 * 1024
# A block's shared memory with the opt-in attribute on sm_90 (227 KiB).
DYNAMIC_SHARED_BYTES = 227 * 1024


def shared_array(m: Machine, name: str) -> SharedArray:
    try:
        return m.shared[name]
    except KeyError:
        raise m.fail(f"use of undeclared shared array {name!r}") from None


def barrier(m: Machine, blocks: np.ndarray) -> None:
    """`__syncthreads()` in the blocks flagged in `blocks` (shape (grid,)): every access
    before it is ordered before every access after it."""
    for arr in m.shared.values():
        arr.writer[blocks] = NO_THREAD
        arr.reader[blocks] = NO_THREAD


def check_quiet(m: Machine, name: str, blocks: np.ndarray) -> SharedArray:
    """The shared array `name`, after checking that no thread of the flagged blocks touched it
    since their last barrier (a block reduction writes it before its first barrier)."""
    arr = shared_array(m, name)
    busy = ((arr.writer != NO_THREAD) | (arr.reader != NO_THREAD)) & blocks[:, None]
    if busy.any():
        b, i = (int(x[0]) for x in np.nonzero(busy))
        raise m.fail(f"block reduction scratch {name}[{i}] in block {b} was accessed since the "
                     f"last barrier; put a Sync before the reduction")
    return arr


def scrub(arr: SharedArray, blocks: np.ndarray) -> None:
    """Make the flagged blocks' contents unspecified (NaN / 0), so code relying on them shows."""
    arr.data[blocks] = poison(arr.dtype)


# -- declaration and barrier ---------------------------------------------------------------


@register_stmt(Shared)
def _declare_shared(m: Machine, s: Shared) -> None:
    existing = m.shared.get(s.name)
    if existing is not None:
        # A static declaration met again (in a loop body) is the same array, as in C.
        if existing.dtype is s.dtype and (existing.size == s.size or s.count is not None):
            return
        raise m.fail(f"shared array {s.name} declared again as {s.dtype}[{s.size}], "
                     f"was {existing.dtype}[{existing.size}]")
    size = s.size
    if s.count is not None:
        # dynamic: the launch's element count, at most the declared cap (kir.Shared)
        counts = np.unique(np.asarray(evaluate_expr(m, s.count), dtype=np.int64))
        if counts.size != 1 or not 0 < int(counts[0]) <= s.size:
            raise m.fail(f"dynamic shared array {s.name}: {s.count.name} = "
                         f"{counts.tolist()}, not one value in 1..{s.size}")
        size = int(counts[0])
        total = sum(a.size * a.dtype.itemsize for a in m.shared.values())
        if total + size * s.dtype.itemsize > DYNAMIC_SHARED_BYTES:
            raise m.fail(f"dynamic shared array {s.name}: the block's shared memory exceeds "
                         f"{DYNAMIC_SHARED_BYTES} bytes")
    elif s.size * s.dtype.itemsize > STATIC_SHARED_BYTES:
        raise m.fail(f"shared array {s.name}: {s.dtype}[{s.size}] exceeds the "
                     f"{STATIC_SHARED_BYTES}-byte static shared memory limit")
    shape = (m.grid, size)
    m.shared[s.name] = SharedArray(
        s.dtype, size, np.full(shape, poison(s.dtype), dtype=s.dtype.np_storage),
        np.full(shape, NO_THREAD, np.int64), np.full(shape, NO_THREAD, np.int64))


@register_stmt(Sync)
def _sync(m: Machine, s: Sync) -> None:
    barrier(m, uniform_groups(m, m.kernel.block, "block", "__syncthreads()"))


# -- accesses ------------------------------------------------------------------------------


def _access(m: Machine, e: SharedElem, kind: str) -> tuple[SharedArray, np.ndarray]:
    """The array and each thread's element index (clamped for inactive threads)."""
    arr = shared_array(m, e.array)
    if e.dtype is not arr.dtype:
        raise m.fail(f"shared {kind} of {e.array} as {e.dtype}, but the array is {arr.dtype}")
    index = np.broadcast_to(np.asarray(evaluate_expr(m, e.index), dtype=np.int64), (m.threads,))
    bad = ((index < 0) | (index >= arr.size)) & m.active()
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise m.fail(f"out-of-bounds shared {kind} of {e.array}: {m.where(t)} index "
                     f"{int(index[t])} outside [0, {arr.size})")
    return arr, np.clip(index, 0, arr.size - 1)


def _race(m: Machine, e: SharedElem, flags: np.ndarray, threads: np.ndarray, other: np.ndarray,
          rows: np.ndarray, cols: np.ndarray, what: str) -> None:
    if not flags.any():
        return
    k = int(np.flatnonzero(flags)[0])
    who = "several threads" if other[k] == MANY_THREADS else f"threadIdx {int(other[k])}"
    raise m.fail(f"shared memory race on {e.array}[{int(cols[k])}] in block {int(rows[k])}: "
                 f"threadIdx {int(threads[k])} {what} {who} without a Sync between")


def _active_coordinates(m: Machine, index: np.ndarray) -> tuple[np.ndarray, ...]:
    """(block, element, threadIdx) of each active thread's access."""
    thread = np.flatnonzero(m.active())
    return thread // m.kernel.block, index[thread], thread % m.kernel.block


def _duplicates(flat: np.ndarray) -> np.ndarray:
    """The flat element numbers accessed by more than one thread."""
    unique, counts = np.unique(flat, return_counts=True)
    return unique[counts > 1]


@register_expr(SharedElem)
def _load_shared(m: Machine, e: SharedElem) -> Value:
    arr, index = _access(m, e, "read")
    rows, cols, tid = _active_coordinates(m, index)
    writer = arr.writer[rows, cols]
    _race(m, e, (writer != NO_THREAD) & (writer != tid), tid, writer, rows, cols,
          "reads what was written by")
    reader = arr.reader[rows, cols]
    arr.reader[rows, cols] = np.where((reader == NO_THREAD) | (reader == tid), tid, MANY_THREADS)
    arr.reader.reshape(-1)[_duplicates(rows * arr.size + cols)] = MANY_THREADS
    block = np.arange(m.threads) // m.kernel.block
    return arr.data[block, index]


def store_shared(m: Machine, target: SharedElem, value: Value) -> None:
    """`target = value` (already of the array's dtype) for the active threads."""
    arr, index = _access(m, target, "store")
    rows, cols, tid = _active_coordinates(m, index)
    values = np.broadcast_to(np.asarray(value, dtype=arr.dtype.np_storage),
                             (m.threads,))[m.active()]
    writer, reader = arr.writer[rows, cols], arr.reader[rows, cols]
    _race(m, target, (writer != NO_THREAD) & (writer != tid), tid, writer, rows, cols,
          "overwrites what was written by")
    _race(m, target, (reader != NO_THREAD) & (reader != tid), tid, reader, rows, cols,
          "overwrites what was read by")
    flat = rows * arr.size + cols
    order = np.argsort(flat, kind="stable")
    bits = values[order].view(f"u{arr.dtype.itemsize}")
    same_element = flat[order][1:] == flat[order][:-1]
    clash = same_element & (bits[1:] != bits[:-1])
    if clash.any():
        k = int(order[int(np.flatnonzero(clash)[0])])
        raise m.fail(f"shared memory race on {target.array}[{int(cols[k])}] in block "
                     f"{int(rows[k])}: several threads store different values in one statement")
    arr.data[rows, cols] = values
    arr.writer[rows, cols] = tid
    arr.writer.reshape(-1)[_duplicates(flat)] = MANY_THREADS
