"""Emit: kernel IR -> one complete CUDA C++ translation unit (text).

`CudaEmitter` owns all C text: the prim -> C table lives in `nvfuse.codegen.prims_c` (shared by
nobody else), literals come from `prims_c.literal`, braces from `block()`.  The device helpers of
codegen_templates/ are inlined at the top, so the unit compiles with NVRTC alone (no include
paths, no CUDA toolkit headers).  Output is deterministic: same kernel IR, same text.

Helpers are pulled in by tag: every kernel may draw on `prims_c.HEADERS` and nvf_memory.cuh, a
kernel that contains a reduction statement also on nvf_reduce.cuh, a cluster kernel
(`Kernel.cluster` > 1: `__cluster_dims__`) on nvf_cluster.cuh, one that draws random numbers
on nvf_random.cuh (`headers_for`); of those files only the sections the kernel's code
uses are inlined (`templates.inline_helpers`), which keeps NVRTC's parse short.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from nvfuse.codegen import prims_c
from nvfuse.codegen.templates import inline_helpers
from nvfuse.dtypes import DType
from nvfuse.fusion.prims import Prim
from nvfuse.lower import kir
from nvfuse.lower.horizontal import first_block_param

MEMORY_HEADER = "nvf_memory.cuh"
REDUCE_HEADER = "nvf_reduce.cuh"
RANDOM_HEADER = "nvf_random.cuh"
CLUSTER_HEADER = "nvf_cluster.cuh"

_REDUCE_OP_C = {
    kir.ReduceOp.SUM: "nvf_op_sum", kir.ReduceOp.PROD: "nvf_op_prod",
    kir.ReduceOp.MAX: "nvf_op_max", kir.ReduceOp.MIN: "nvf_op_min",
}


class CudaEmitter:
    """Prints one kir.Kernel as CUDA C++ (`emit`)."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0
        self._dynamic: list[str] = []  # byte sizes of the dynamic shared arrays so far
        self._cluster = 1  # the kernel's blocks per cluster

    # -- text plumbing -----------------------------------------------------------------------
    def line(self, text: str = "") -> None:
        self._lines.append(("  " * self._depth + text) if text else "")

    @contextlib.contextmanager
    def block(self, opener: str) -> Iterator[None]:
        """`opener {` (a bare `{` for an empty opener), the body indented, `}`."""
        self.line(f"{opener} {{" if opener else "{")
        self._depth += 1
        yield
        self._depth -= 1
        self.line("}")

    # -- the unit ----------------------------------------------------------------------------
    def emit(self, k: kir.Kernel) -> str:
        headers = headers_for(k)
        self._lines = [""]
        self._dynamic = []
        self._cluster = k.cluster
        if k.cluster > 1:
            self.line(f"// kernel IR: launch block={k.block}, a cluster of {k.cluster} blocks "
                      "per row")
        elif any(isinstance(s, (kir.BlockReduce, kir.ArgReduce)) for s in _walk(k.body)):
            self.line(f"// kernel IR: launch block={k.block}, one block per row")
        else:
            self.line(f"// kernel IR: launch block={k.block}, one thread per "
                      f"{_lanes_comment(k)} elements")
        params = [
            f"{'' if t.is_output else 'const '}{t.dtype.c_type}*"
            f"{' __restrict__' if t.restrict else ''} {t.name}" for t in k.tensors
        ] + [f"{p.dtype.c_type} {p.name}" for p in k.scalars]
        cluster = f"__cluster_dims__({k.cluster}, 1, 1) " if k.cluster > 1 else ""
        self.line(f'extern "C" __global__ void {cluster}'
                  f'__launch_bounds__({_launch_bounds(k.block)})')
        with self.block(f"{k.name}({', '.join(params)})"):
            self.kernel_body(k)
        code = "\n".join(self._lines) + "\n"
        return inline_helpers(headers, code) + code

    def kernel_body(self, k: kir.Kernel) -> None:
        """The body, each `kir.MemberGroup` printed once where its first member stood (the
        members' own statements and their comments left out)."""
        first = {g.positions[0]: g for g in k.groups}
        skip = {q for g in k.groups for p in g.positions for q in (p - 1, p)}
        for n, s in enumerate(k.body):
            if n in first:
                self.member_group(k, first[n])
            if n not in skip:
                self.stmt(s)

    def member_group(self, k: kir.Kernel, g: kir.MemberGroup) -> None:
        """One code path for members running the same kernel: the block's member selects its
        pointers and scalars (`member_search`), then the member kernel's body runs once under
        its own names."""
        members = ", ".join(str(_member_index(p)) for p in g.positions)
        self.line(f"// members {members}: one code path")
        with self.block(""):
            for t in g.tensors:
                self.line(f"{'' if t.is_output else 'const '}{t.dtype.c_type}*"
                          f"{' __restrict__' if t.restrict else ''} {t.name} = nullptr;")
            for p in g.scalars:
                self.line(f"{p.dtype.c_type} {p.name} = 0;")
            self.line("bool nvf_member = false;")
            self.line("// the block's member: a binary search over the members' first blocks "
                      "(non-decreasing),")
            self.line("// then that member's own block range (and thread) test")
            self.member_search(k, g, 0, len(g.positions))
            with self.block("if (nvf_member)"):
                self.stmts(g.body)

    def member_search(self, k: kir.Kernel, g: kir.MemberGroup, lo: int, hi: int) -> None:
        """Selects among the group's members lo..hi-1 (hi > lo).  Blocks are partitioned among
        all the kernel's members in member order, so the only member of the group that can own
        the block is the last one whose first block is <= blockIdx.x; halving on
        `blockIdx.x < first` finds it in ceil(log2(hi - lo)) compares.  The leaf keeps the
        member's whole ownership condition: the block may belong to a member of another kernel
        lying between two of this group's, or the thread lie past a narrower member's block;
        then no member is selected, as in the kernel IR, where each member tests its own.
        Every group size takes the search: from 2 members on it costs no more compares than
        testing each member in turn (ceil(log2 n) + 2 against up to 2n), and one code shape
        is one thing to test."""
        if hi - lo == 1:
            owns = k.body[g.positions[lo]]
            assert isinstance(owns, kir.If)
            names = [t.name for t in g.tensors] + [p.name for p in g.scalars]
            with self.block(f"if ({self.expr(owns.cond)})"):
                for name, arg in zip(names, g.args[lo]):
                    self.line(f"{name} = {arg};")
                self.line("nvf_member = true;")
            return
        mid = (lo + hi) // 2
        first = kir.Param(first_block_param(_member_index(g.positions[mid])), DType.INT32)
        below = kir.IndexOp("<", kir.Special("blockIdx.x", DType.INT32), first, DType.BOOL)
        with self.block(f"if ({self.expr(below)})"):
            self.member_search(k, g, lo, mid)
        with self.block("else"):
            self.member_search(k, g, mid, hi)

    # -- statements --------------------------------------------------------------------------
    def stmts(self, body: tuple[kir.Stmt, ...]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: kir.Stmt) -> None:
        if isinstance(s, kir.Declare):
            if s.lanes is not None:
                self.line(f"{s.dtype.c_type} {s.name}[{s.lanes}];")
            else:
                init = f" = {self.expr(s.init)}" if s.init is not None else ""
                self.line(f"{s.dtype.c_type} {s.name}{init};")
        elif isinstance(s, kir.Assign):
            self.line(f"{self.expr(s.target)} = {self.expr(s.value)};")
        elif isinstance(s, kir.Load):
            fn = "nvf_load_vector" if s.vector else "nvf_load"
            self.line(f"{fn}<{s.dtype.c_type}, {s.lanes}>({s.array}, "
                      f"{s.tensor} + {self.expr(s.offset)});")
        elif isinstance(s, kir.Store):
            fn = "nvf_store_vector" if s.vector else "nvf_store"
            self.line(f"{fn}<{s.dtype.c_type}, {s.lanes}>({s.tensor} + {self.expr(s.offset)}, "
                      f"{s.array});")
        elif isinstance(s, kir.If):
            with self.block(f"if ({self.expr(s.cond)})"):
                self.stmts(s.body)
        elif isinstance(s, kir.For):
            if s.unroll:
                self.line("#pragma unroll")
            elif s.rolled:
                self.line("#pragma unroll 1")
            v = s.var
            header = (f"for ({v.dtype.c_type} {v.name} = {self.expr(s.start)}; "
                      f"{v.name} < {self.expr(s.stop)}; {v.name} += {self.expr(s.step)})")
            with self.block(header):
                self.stmts(s.body)
        elif isinstance(s, kir.Comment):
            self.line(f"// {s.text}")
        elif isinstance(s, kir.Shared) and s.count is not None:
            self.dynamic_shared(s)
        elif isinstance(s, kir.Shared):
            self.line(f"__shared__ {s.dtype.c_type} {s.name}[{s.size}];")
        elif isinstance(s, kir.Sync):
            self.line("__syncthreads();")
        elif isinstance(s, kir.ClusterSync):
            self.line("nvf_cluster_sync_relaxed();")
        else:
            self.reduction(s)

    def dynamic_shared(self, s: kir.Shared) -> None:
        """A dynamic shared array: a typed pointer into the launch's dynamic shared memory,
        after the arrays declared before it (each rounded up to kir.SHARED_ALIGN bytes, as
        `kir.dynamic_shared_bytes` sizes the launch)."""
        assert s.count is not None
        if not self._dynamic:
            self.line(f"extern __shared__ __align__({kir.SHARED_ALIGN}) unsigned char "
                      "nvf_dyn_smem[];")
        at = " + ".join(self._dynamic) or "0"
        self.line(f"{s.dtype.c_type}* {s.name} = reinterpret_cast<{s.dtype.c_type}*>("
                  f"nvf_dyn_smem + {at});")
        self._dynamic.append(f"(((size_t){s.count.name} * {s.dtype.itemsize} + "
                             f"{kir.SHARED_ALIGN - 1}) / {kir.SHARED_ALIGN} * {kir.SHARED_ALIGN})")

    def reduction(self, s: kir.Stmt) -> None:
        if isinstance(s, kir.WarpReduce):
            t = s.dst.dtype.c_type
            self.line(f"{s.dst.name} = nvf_warp_allreduce<{_REDUCE_OP_C[s.op]}, {t}>"
                      f"({self.expr(s.src)});")
        elif isinstance(s, kir.BlockReduce):
            t = s.dst.dtype.c_type
            self.line(f"{s.dst.name} = nvf_block_allreduce<{_REDUCE_OP_C[s.op]}, {t}>"
                      f"({self.expr(s.src)}, {s.scratch});")
        elif isinstance(s, kir.WelfordReduce):
            args = [s.mean.name, s.m2.name, s.n.name,
                    *(self.expr(e) for e in (s.src_mean, s.src_m2, s.src_n))]
            if s.scope is kir.ReduceScope.BLOCK:
                fn = "nvf_block_welford"
                args.append(str(s.scratch))
            else:
                fn = "nvf_warp_welford"
            self.line(f"{fn}<{s.mean.dtype.c_type}>({', '.join(args)});")
        elif isinstance(s, kir.ArgReduce):
            args = [s.value.name, s.index.name, self.expr(s.src_value), self.expr(s.src_index)]
            fn = "nvf_warp_argreduce"
            if s.scope is kir.ReduceScope.BLOCK:
                fn = "nvf_block_argreduce"
                args += [str(s.scratch), str(s.index_scratch)]
            is_max = "true" if s.op is kir.ReduceOp.MAX else "false"
            self.line(f"{fn}<{is_max}, {s.value.dtype.c_type}>({', '.join(args)});")
        elif isinstance(s, kir.ClusterReduce):
            t = s.dsts[0].dtype.c_type
            srcs = [self.expr(e) for e in s.srcs]
            if s.op is None:
                joined = ", ".join([*(d.name for d in s.dsts), *srcs, s.slot])
                self.line(f"nvf_cluster_welford<{self._cluster}, {t}>({joined});")
            else:
                self.line(f"{s.dsts[0].name} = nvf_cluster_allreduce<{self._cluster}, "
                          f"{_REDUCE_OP_C[s.op]}, {t}>({srcs[0]}, {s.slot});")
        else:
            raise TypeError(f"emit: not a kernel IR statement: {s!r}")

    # -- expressions -------------------------------------------------------------------------
    def expr(self, e: kir.Expr) -> str:
        if isinstance(e, kir.Const):
            return prims_c.literal(e.value, e.dtype)
        if isinstance(e, (kir.Var, kir.Param)):
            return e.name
        if isinstance(e, kir.Special):
            return f"(({e.dtype.c_type}){e.name})"
        if isinstance(e, kir.Elem):
            return f"{e.array}[{self.expr(e.lane)}]"
        if isinstance(e, kir.SharedElem):
            return f"{e.array}[{self.expr(e.index)}]"
        if isinstance(e, kir.IndexOp):
            return f"({self.expr(e.a)} {e.op} {self.expr(e.b)})"
        if isinstance(e, kir.Random):
            return f"nvf_rand_uniform({self.expr(e.index)}, {self.expr(e.seed)}, {e.stream}LL)"
        if isinstance(e, kir.Compute):
            args = [self.expr(a) for a in e.args]
            if e.prim is Prim.CAST:
                return prims_c.cast_expr(args[0], e.args[0].dtype, e.dtype)
            operand = e.args[1].dtype if e.prim is Prim.WHERE else e.args[0].dtype
            return prims_c.prim_expr(e.prim, args, operand, e.dtype)
        raise TypeError(f"emit: not a kernel IR expression: {e!r}")


def _member_index(position: int) -> int:
    """The member whose `If(owns, body)` stands at `position` of a horizontal kernel's body
    (each member is a Comment and its If, nvfuse/lower/horizontal.py)."""
    return (position - 1) // 2


def _lanes_comment(k: kir.Kernel) -> str:
    for s in _walk(k.body):
        if isinstance(s, kir.For) and s.unroll and isinstance(s.stop, kir.Const):
            return str(s.stop.value)
    return "1"


def headers_for(k: kir.Kernel) -> tuple[str, ...]:
    """The helper files kernel `k` needs, in inlining order.  Raises ValueError for a kernel
    with reductions whose block the helpers do not support (a multiple of 32, at most 1024)."""
    headers: tuple[str, ...] = (*prims_c.HEADERS, MEMORY_HEADER)
    if any(isinstance(s, kir.REDUCTIONS) for s in _walk(k.body)):
        if k.block % 32 or not 0 < k.block <= 1024:
            raise ValueError(f"emit: kernel {k.name} reduces across threads but its block "
                             f"{k.block} is not a multiple of 32 in [32, 1024]")
        headers += (REDUCE_HEADER,)
    if k.cluster > 1:
        headers += (CLUSTER_HEADER,)
    if _uses_random(k):
        headers += (RANDOM_HEADER,)
    return headers


def _uses_random(k: kir.Kernel) -> bool:
    return _contains(k.body, kir.Random)


def _contains(node: object, kind: type) -> bool:
    """Whether an IR value (statement, expression, or a tuple of them) holds a `kind` node."""
    if isinstance(node, kind):
        return True
    if isinstance(node, tuple):
        return any(_contains(item, kind) for item in node)
    if dataclasses.is_dataclass(node):
        return any(_contains(getattr(node, f.name), kind) for f in dataclasses.fields(node))
    return False


def _walk(body: tuple[kir.Stmt, ...]) -> Iterator[kir.Stmt]:
    for s in body:
        yield s
        if isinstance(s, (kir.If, kir.For)):
            yield from _walk(s.body)


def emit_cuda(k: kir.Kernel) -> str:
    """The CUDA C++ source of kernel `k`."""
    return CudaEmitter().emit(k)


def _launch_bounds(block: int) -> str:
    """`__launch_bounds__` arguments.  A 1024-thread block states one resident block per SM as
    enough: without it ptxas may squeeze such a kernel into 32 registers (for two blocks per
    SM) and spill in its main loop (batch-norm training did); with it the cap is the 64 that
    one 1024-thread block may use, and ptxas still takes fewer where it needs fewer."""
    return f"{block}, 1" if block >= 1024 else str(block)
