"""Horizontal lowering: several independent kernels as one launch.

Input: the kernel IR of N member kernels (each built by its own schedule, unchanged).  Output:
one `kir.Kernel` whose blocks are partitioned among the members in order: member i owns blocks
[first_i, first_i + grid_i), where `first_i` is a scalar argument (`h{i}_first_block`, the
block offset table) and `grid_i` is member i's own grid expression.  Inside its range a block
runs member i's body exactly as its own launch would: `blockIdx.x` reads as the block's index
within the member, `gridDim.x` as the member's grid and `blockDim.x` as the member's block.

Every name of member i (tensors, scalar parameters, registers, register and shared arrays) is
prefixed with `h{i}_`, so the members' arguments are theirs under new names (`member_name`): the
launcher binds them from each member's own scalars by name.

Contract:
- The launch block is the largest member block.  A member with a smaller block runs on its
  first `block_i` threads (whole warps: blocks are multiples of 32 or the member is thread-local);
  that is only legal for a member whose threads never meet (no barrier, block reduction or shared
  memory): `combine` raises ValueError otherwise.  The caller buckets members by block size, so
  that no member runs with threads it would not have had (a worse schedule).
- Block indices fit in int32 (CUDA's grid limit), and so does every block offset.
- Members keep their shared memory side by side (not overlapped), so their sum must fit.  A
  member with dynamic shared memory (`kir.Shared.count`) or clusters (`Kernel.cluster`) is
  refused (ValueError).
- Members that run the same member kernel (an optimizer's update over many parameters) form a
  `kir.MemberGroup`: the emitter prints that kernel's code once, with the member's pointers
  and scalars selected by block range, so compile time grows with the distinct member
  kernels, not with the members (GPT-2 small's AdamW update: 148 members of one kernel).
- First blocks never decrease with the member index (the launcher passes the prefix sums of
  the grids): the emitter finds a block's member in a group by binary search over them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from nvfuse.dtypes import DType
from nvfuse.fusion.prims import Prim
from nvfuse.lower import kir

# The string fields of each IR class that name something a member owns (renamed per member).
_NAME_FIELDS: dict[type, tuple[str, ...]] = {
    kir.Var: ("name",), kir.Param: ("name",), kir.Elem: ("array",),
    kir.SharedElem: ("array",), kir.Declare: ("name",), kir.Load: ("array", "tensor"),
    kir.Store: ("tensor", "array"), kir.Shared: ("name",), kir.BlockReduce: ("scratch",),
    kir.WelfordReduce: ("scratch",), kir.ArgReduce: ("scratch", "index_scratch"),
    kir.TensorParam: ("name",),
}
# Statements through which the threads of a block meet: a member using one must own every
# thread of the launch block.
_BLOCK_WIDE = (kir.Sync, kir.Shared, kir.BlockReduce)


def member_name(index: int, name: str) -> str:
    """Member `index`'s name for its own `name` inside a horizontal kernel."""
    return f"h{index}_{name}"


def first_block_param(index: int) -> str:
    """The scalar argument holding the first block of member `index`."""
    return member_name(index, "first_block")


def param_bytes(kernel: kir.Kernel) -> int:
    """The argument bytes `kernel` adds to a horizontal launch (pointers, scalars, its block
    offset), each aligned to its own size as the C ABI lays them out."""
    sizes = [8] * len(kernel.tensors) + [p.dtype.itemsize for p in kernel.scalars]
    sizes.append(4)  # the member's first block (int32)
    total = 0
    for size in sizes:
        total = -(-total // size) * size + size
    return total


def shared_bytes(kernel: kir.Kernel) -> int:
    """The static shared memory `kernel` declares (a horizontal kernel holds its members' side
    by side); a dynamic array counts at its cap, so a kernel with one exceeds what the
    bundling (nvfuse/schedule/horizontal.py) puts in one launch and launches alone."""
    return sum(s.size * s.dtype.itemsize for s in _statements(kernel.body)
               if isinstance(s, kir.Shared))


def _statements(body: tuple[kir.Stmt, ...]) -> list[kir.Stmt]:
    found: list[kir.Stmt] = []
    for s in body:
        found.append(s)
        if isinstance(s, (kir.If, kir.For)):
            found += _statements(s.body)
    return found


def combine(name: str, members: Sequence[kir.Kernel]) -> kir.Kernel:
    """The horizontal kernel `name` of `members` (see the module docstring).  Its scalars are
    every member's scalars renamed, then the block offsets; its grid is the sum of the members'
    grids."""
    if len(members) < 2:
        raise ValueError("a horizontal kernel combines at least two kernels")
    block = max(m.block for m in members)
    tensors: list[kir.TensorParam] = []
    scalars: list[kir.Param] = []
    body: list[kir.Stmt] = []
    grid: kir.Expr | None = None
    positions: dict[str, list[int]] = {}  # member kernel name -> the members running it
    for i, m in enumerate(members):
        if kir.dynamic_shared(m):
            raise ValueError(f"horizontal kernel {name}: member {m.name} uses dynamic shared "
                             "memory, sized per launch; it launches alone")
        if m.cluster > 1:
            raise ValueError(f"horizontal kernel {name}: member {m.name} runs in clusters of "
                             f"{m.cluster} blocks; it launches alone")
        if m.block != block and not _thread_local(m):
            raise ValueError(f"horizontal kernel {name}: member {m.name} synchronises its "
                             f"block of {m.block} threads; the launch block is {block}")
        rename = _Renamer(i, m)
        tensors += [rename(t) for t in m.tensors]
        scalars += [rename(p) for p in m.scalars]
        first = kir.Param(first_block_param(i), DType.INT32)
        scalars.append(first)
        member_grid = _as_int32(rename(m.grid))
        positions.setdefault(m.name, []).append(i)
        body += [kir.Comment(f"member {i}: {m.name}, blocks [first, first + grid)"),
                 kir.If(_owns(first, member_grid, m, block), tuple(rename(s) for s in m.body))]
        grid = member_grid if grid is None else kir.IndexOp("+", grid, member_grid, DType.INT32)
    assert grid is not None
    index_dtype = DType.INT64 if any(m.index_dtype is DType.INT64 for m in members) \
        else DType.INT32
    groups = tuple(_group(members, at) for at in positions.values() if len(at) > 1)
    return kir.Kernel(name, tuple(tensors), tuple(scalars), tuple(body), block, grid,
                      index_dtype, groups)


def _group(members: Sequence[kir.Kernel], at: list[int]) -> kir.MemberGroup:
    """The members at `at` (one member kernel) as one code path (`kir.MemberGroup`)."""
    m = members[at[0]]
    own = _Renamer(None, m)
    scalars = (*m.scalars, own.first)
    names = [t.name for t in m.tensors] + [p.name for p in scalars]
    args = tuple(tuple(member_name(i, n) for n in names) for i in at)
    return kir.MemberGroup(tuple(2 * i + 1 for i in at), m.tensors, scalars,
                           tuple(own(s) for s in m.body), args)


def _owns(first: kir.Param, member_grid: kir.Expr, m: kir.Kernel, block: int) -> kir.Expr:
    """`first <= blockIdx.x < first + grid` (and `threadIdx.x < m.block` for a narrower member)."""
    bid = kir.Special("blockIdx.x", DType.INT32)
    cond: kir.Expr = kir.IndexOp(
        "&&", kir.IndexOp("<=", first, bid, DType.BOOL),
        kir.IndexOp("<", kir.IndexOp("-", bid, first, DType.INT32), member_grid, DType.BOOL),
        DType.BOOL)
    if m.block < block:
        tid = kir.Special("threadIdx.x", DType.INT32)
        cond = kir.IndexOp("&&", cond, kir.IndexOp("<", tid, kir.Const(m.block, DType.INT32),
                                                   DType.BOOL), DType.BOOL)
    return cond


def _as_int32(e: kir.Expr) -> kir.Expr:
    """A grid expression in int32 (grids are below 2^31 blocks, CUDA's limit)."""
    if e.dtype is DType.INT32:
        return e
    return kir.Compute(Prim.CAST, (e,), DType.INT32)


def _thread_local(m: kir.Kernel) -> bool:
    """No thread of `m` waits for or reads another thread of its block (warp-level exchanges
    are fine: a narrower member keeps whole warps)."""
    return not any(_contains(s, _BLOCK_WIDE) for s in m.body)


def _contains(node: object, kinds: tuple[type, ...]) -> bool:
    if isinstance(node, kinds):
        return True
    if isinstance(node, tuple):
        return any(_contains(item, kinds) for item in node)
    if dataclasses.is_dataclass(node):
        return any(_contains(getattr(node, f.name), kinds) for f in dataclasses.fields(node))
    return False


class _Renamer:
    """Rewrites one member's IR: its names prefixed (index None: kept, the block offset being
    `first_block`), its CUDA builtins relative to its range."""

    def __init__(self, index: int | None, member: kir.Kernel) -> None:
        self.index = index
        self.member = member
        self.first = kir.Param("first_block" if index is None else first_block_param(index),
                               DType.INT32)

    def __call__(self, node: Any) -> Any:
        return self._map(node)

    def _map(self, node: Any) -> Any:
        if isinstance(node, tuple):
            return tuple(self._map(item) for item in node)
        if isinstance(node, kir.Special):
            return self._special(node)
        if not dataclasses.is_dataclass(node) or isinstance(node, type):
            return node
        names = _NAME_FIELDS.get(type(node), ())
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.name in names and isinstance(value, str):
                if self.index is not None:
                    changes[f.name] = member_name(self.index, value)
            elif isinstance(value, (tuple, kir.Special)) or (
                    dataclasses.is_dataclass(value) and not isinstance(value, type)):
                changes[f.name] = self._map(value)
        return dataclasses.replace(node, **changes) if changes else node

    def _special(self, e: kir.Special) -> kir.Expr:
        m, dt = self.member, e.dtype
        if e.name == "blockIdx.x":
            local = kir.IndexOp("-", kir.Special("blockIdx.x", DType.INT32), self.first,
                                DType.INT32)
            return local if dt is DType.INT32 else kir.Compute(Prim.CAST, (local,), dt)
        if e.name == "gridDim.x":
            grid = self._map(m.grid)
            return grid if grid.dtype is dt else kir.Compute(Prim.CAST, (grid,), dt)
        if e.name == "blockDim.x":
            return kir.Const(m.block, dt)
        return e  # threadIdx.x: a member runs on the launch's first threads

