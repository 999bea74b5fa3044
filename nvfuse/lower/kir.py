"""Kernel IR: a CUDA kernel as data -- parameters, index math, predicates, register arrays,
loads and stores with explicit offsets.  The emitter prints it as CUDA C++; the interpreter runs
it on the CPU with every thread of every block in lockstep.

Expressions are pure and typed.  Statements run in order, per thread.  Conventions:
- `Special` values are the CUDA builtins, converted to the kernel's index dtype.
- A `For` whose bounds are `Const`/`Param` expressions is uniform across threads (the
  interpreter runs it once with a Python integer loop variable); lane loops are such loops.
- `Load` copies `lanes` consecutive elements tensor[offset + l] into array[l]; `vector=True`
  promises that the access is one aligned `lanes * itemsize`-byte transaction (the interpreter
  checks the promise).  `Store` is the mirror.  Loads and stores move bits: conversions are
  explicit `Compute(Prim.CAST, ...)`.
- Shared memory: `Shared` declares a per-block array of static size (at most once per name; a
  declaration inside a loop is the same array each time, as in C), or one in the launch's
  dynamic shared memory sized by a scalar parameter (`Shared.count`); `SharedElem` reads it and is
  an `Assign` target.  Cross-thread communication through it needs a `Sync` between the write
  and the read (the interpreter reports the race otherwise).
- Reductions (`WarpReduce`, `BlockReduce`, `WelfordReduce`, `ArgReduce`) are allreduces: every
  participating thread gets the result. Contract: the launch block is a multiple of 32 (at most
  1024); a warp reduction is reached by all 32 threads of a warp or none, a block reduction by
  all threads of the block or none (it contains barriers). Threads with no data pass the
  identity (0 for SUM, 1 for PROD, -inf / the lowest integer for MAX, +inf / the highest for
  MIN, n = 0 for Welford): lowering predicates the data, never the reduction. Supported dtypes:
  `REDUCE_DTYPES`; a block reduction's scratch is a `Shared` array of that dtype with at least
  `block / 32` elements (3 * block / 32 for Welford), whose contents the reduction leaves
  unspecified.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nvfuse.dtypes import DType
from nvfuse.errors import LaunchError
from nvfuse.fusion.ir import Scalar, format_scalar
from nvfuse.fusion.prims import Prim

# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: Scalar
    dtype: DType


@dataclass(frozen=True)
class Var:
    """A scalar register (or a uniform loop variable)."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Param:
    """A scalar kernel argument (a size, a stride, an element count)."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Special:
    """threadIdx.x, blockIdx.x, blockDim.x or gridDim.x, as the index dtype `dtype`."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Elem:
    """Element `lane` of register array `array`."""

    array: str
    lane: Expr
    dtype: DType


@dataclass(frozen=True)
class IndexOp:
    """Integer/boolean arithmetic for indices and predicates.
    op is one of + - * / % < <= == != && || (C semantics on non-negative operands)."""

    op: str
    a: Expr
    b: Expr
    dtype: DType


@dataclass(frozen=True)
class Compute:
    """A fusion prim applied to values (`Prim.CAST` converts to `dtype`)."""

    prim: Prim
    args: tuple[Expr, ...]
    dtype: DType


@dataclass(frozen=True)
class SharedElem:
    """Element `index` of the calling thread's block's shared array `array` (see `Shared`)."""

    array: str
    index: Expr
    dtype: DType


@dataclass(frozen=True)
class Random:
    """A float32 uniform in [0, 1): element `index` (int64) of random stream `stream` of a launch
    seeded with `seed` (int64) -- Philox4x32-10, see codegen_templates/nvf_random.cuh."""

    index: Expr
    seed: Expr
    stream: int
    dtype: DType = DType.FLOAT32


Expr = Const | Var | Param | Special | Elem | SharedElem | IndexOp | Compute | Random


def stride_exprs(classes: str, name: Callable[[int], str], idx: DType,
                 scalars: list[Param]) -> list[Expr]:
    """One operand's stride per dim from its signature's stride classes: the literal for "0"
    and "1", else a new kernel argument named `name(dim)` (a `nvfuse.schedule.names`
    spelling, the schedule's name for that value), appended to `scalars`."""
    row: list[Expr] = []
    for d, c in enumerate(classes):
        if c == "s":
            p = Param(name(d), idx)
            scalars.append(p)
            row.append(p)
        else:
            row.append(Const(int(c), idx))
    return row

SPECIALS = ("threadIdx.x", "blockIdx.x", "blockDim.x", "gridDim.x")
INDEX_OPS = ("+", "-", "*", "/", "%", "<", "<=", "==", "!=", "&&", "||")

# -- statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Declare:
    """`T name = init;` (lanes None) or `T name[lanes];` (uninitialised register array)."""

    name: str
    dtype: DType
    lanes: int | None = None
    init: Expr | None = None


@dataclass(frozen=True)
class Assign:
    target: Var | Elem | SharedElem
    value: Expr


@dataclass(frozen=True)
class Load:
    array: str
    dtype: DType
    tensor: str
    offset: Expr
    lanes: int
    vector: bool


@dataclass(frozen=True)
class Store:
    tensor: str
    dtype: DType
    offset: Expr
    array: str
    lanes: int
    vector: bool


@dataclass(frozen=True)
class If:
    cond: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class For:
    """for (var = start; var < stop; var += step) body.  `unroll` asks for #pragma unroll;
    `rolled` for #pragma unroll 1: a cold path (a tail) that unrolled would only cost compile
    time (never both)."""

    var: Var
    start: Expr
    stop: Expr
    step: Expr
    body: tuple[Stmt, ...]
    unroll: bool = False
    rolled: bool = False


@dataclass(frozen=True)
class Comment:
    text: str


@dataclass(frozen=True)
class Shared:
    """`__shared__ T name[size];`: one array per block, uninitialised, alive for the kernel.

    With `count` (a scalar parameter) the array lives in the launch's dynamic shared memory
    instead and holds `count` elements, at most `size` (the schedule's cap): the dynamic
    arrays are laid out in declaration order, each at a 16-byte multiple
    (`dynamic_shared_bytes`), and are declared at the kernel's top level only."""

    name: str
    dtype: DType
    size: int
    count: Param | None = None

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"shared array {self.name}: size must be positive, got {self.size}")


@dataclass(frozen=True)
class Sync:
    """`__syncthreads()`: reached by every thread of a block or by none of them."""


class ReduceOp(enum.Enum):
    """The combine of a reduction.  MAX / MIN propagate NaN (torch.amax / amin); integer SUM /
    PROD wrap around."""

    SUM = "sum"
    PROD = "prod"
    MAX = "max"
    MIN = "min"


def combine_prim(op: ReduceOp) -> Prim:
    """The binary prim a reduction combines with (its NaN and wrap-around rules included)."""
    return {ReduceOp.SUM: Prim.ADD, ReduceOp.PROD: Prim.MUL, ReduceOp.MAX: Prim.MAXIMUM,
            ReduceOp.MIN: Prim.MINIMUM}[op]


def identity_value(op: ReduceOp, dtype: DType) -> Scalar:
    """What a thread with no data contributes (the contract of block reductions)."""
    if op is ReduceOp.SUM:
        return 0
    if op is ReduceOp.PROD:
        return 1
    lowest = op is ReduceOp.MAX
    if dtype.is_float:
        return float("-inf") if lowest else float("inf")
    bits = dtype.itemsize * 8
    if not dtype.is_signed:
        return 0 if lowest else (1 << bits) - 1
    return -(1 << (bits - 1)) if lowest else (1 << (bits - 1)) - 1


# Reductions run in the compute dtype: half/bf16 data is reduced in float32, narrow integers
# are reduced in int64 (torch's sum promotes them), so these four are all a kernel needs.
REDUCE_DTYPES = (DType.FLOAT32, DType.FLOAT64, DType.INT32, DType.INT64)


def _check_reduce_dtypes(what: str, dtype: DType, *exprs: Expr) -> None:
    if dtype not in REDUCE_DTYPES:
        raise ValueError(f"{what}: dtype {dtype} is not one of {REDUCE_DTYPES}")
    for e in exprs:
        if e.dtype is not dtype:
            raise ValueError(f"{what}: operand {print_expr(e)} is {e.dtype}, expected {dtype}")


@dataclass(frozen=True)
class WarpReduce:
    """`dst = op-reduction of src over the 32 threads of the calling warp` (in every lane)."""

    dst: Var
    src: Expr
    op: ReduceOp

    def __post_init__(self) -> None:
        _check_reduce_dtypes(f"warp {self.op.value} into {self.dst.name}", self.dst.dtype,
                             self.src)


@dataclass(frozen=True)
class BlockReduce:
    """`dst = op-reduction of src over all threads of the block` (in every thread), using the
    shared array `scratch` (see the module docstring for its size)."""

    dst: Var
    src: Expr
    op: ReduceOp
    scratch: str

    def __post_init__(self) -> None:
        _check_reduce_dtypes(f"block {self.op.value} into {self.dst.name}", self.dst.dtype,
                             self.src)


class ReduceScope(enum.Enum):
    WARP = "warp"
    BLOCK = "block"


@dataclass(frozen=True)
class WelfordReduce:
    """Combine per-thread Welford states (mean, m2 = sum of squared deviations, n = count)
    over the warp or the block (Chan et al.'s parallel update); every thread gets the combined
    state in (mean, m2, n).  All six values share one float dtype.  `scratch` names the shared
    array of a BLOCK reduction (3 * block / 32 elements) and is None for WARP."""

    mean: Var
    m2: Var
    n: Var
    src_mean: Expr
    src_m2: Expr
    src_n: Expr
    scope: ReduceScope
    scratch: str | None = None

    def __post_init__(self) -> None:
        what = f"{self.scope.value} welford into {self.mean.name}"
        dtype = self.mean.dtype
        if not dtype.is_float:
            raise ValueError(f"{what}: Welford states are float32 or float64, got {dtype}")
        _check_reduce_dtypes(what, dtype, self.m2, self.n, self.src_mean, self.src_m2,
                             self.src_n)
        if (self.scratch is None) != (self.scope is ReduceScope.WARP):
            raise ValueError(f"{what}: a block reduction needs a scratch array, a warp one none")


# The index a thread with no data passes to an ArgReduce: larger than any real index, so a
# real element always wins a tie with it.
ARG_NO_INDEX = (1 << 63) - 1


@dataclass(frozen=True)
class ArgReduce:
    """Combine per-thread (value, index) pairs over the warp or the block; every thread gets
    the preferred pair in (value, index).  MAX prefers the larger value, MIN the smaller; a NaN
    value beats any number; equal values (or two NaNs) go to the smaller index -- torch.argmax /
    argmin, associative and commutative.  Values share one REDUCE_DTYPES dtype, indices are
    int64; a thread with no data passes (MAX / MIN's identity, ARG_NO_INDEX).  A BLOCK
    reduction names two shared arrays of block / 32 elements, `scratch` of the value dtype and
    `index_scratch` of int64; a WARP one names none."""

    value: Var
    index: Var
    src_value: Expr
    src_index: Expr
    op: ReduceOp
    scope: ReduceScope
    scratch: str | None = None
    index_scratch: str | None = None

    def __post_init__(self) -> None:
        what = f"{self.scope.value} arg{self.op.value} into {self.index.name}"
        if self.op not in (ReduceOp.MAX, ReduceOp.MIN):
            raise ValueError(f"{what}: an arg reduction is MAX or MIN")
        _check_reduce_dtypes(what, self.value.dtype, self.src_value)
        _check_reduce_dtypes(what, DType.INT64, self.index, self.src_index)
        if {self.scratch is None, self.index_scratch is None} != {
                self.scope is ReduceScope.WARP}:
            raise ValueError(f"{what}: a block reduction needs two scratch arrays, a warp one none")


@dataclass(frozen=True)
class ClusterReduce:
    """Combine one value per block over the blocks of the calling thread's thread-block
    cluster (`Kernel.cluster` blocks, sm_90): every thread of the cluster gets the combine, in
    rank order, of thread 0's `srcs` of each block -- a value the block already agrees on (a
    BlockReduce's or block WelfordReduce's result).  `op` SUM / PROD / MAX / MIN combines one
    value (`dsts` and `srcs` of length 1); `op` None combines Welford states (mean, m2, n),
    Chan's update as WelfordReduce.  Thread 0 writes its `srcs` into `slot` (a `Shared` array
    of len(srcs) elements of the value dtype, used by this statement only: no other block's
    read of it is ever overtaken by a later write), then a cluster barrier, then every thread
    reads every block's slot through distributed shared memory and folds them from rank 0 up,
    so every block of the cluster holds the same bits.  Reached by every thread of the cluster
    or none; a block must not exit while another may still read its slot (`ClusterSync` ends
    a kernel that uses one)."""

    dsts: tuple[Var, ...]
    srcs: tuple[Expr, ...]
    op: ReduceOp | None
    slot: str

    def __post_init__(self) -> None:
        what = f"cluster {self.op.value if self.op else 'welford'} into {self.dsts[0].name}"
        count = 1 if self.op is not None else 3
        if len(self.dsts) != count or len(self.srcs) != count:
            raise ValueError(f"{what}: needs {count} destination(s) and source(s)")
        dtype = self.dsts[0].dtype
        if self.op is None and not dtype.is_float:
            raise ValueError(f"{what}: Welford states are float32 or float64, got {dtype}")
        _check_reduce_dtypes(what, dtype, *self.dsts, *self.srcs)


@dataclass(frozen=True)
class ClusterSync:
    """A barrier over every thread of the cluster, relaxed (`barrier.cluster` arrive.relaxed +
    wait): every thread of the cluster has arrived, and no memory access is ordered by it (not
    even the block's own shared memory).  What ends a kernel whose blocks read each other's
    shared memory: no block exits while another may still read it.  Reached by every thread
    of the cluster or none."""


Stmt = (Declare | Assign | Load | Store | If | For | Comment | Shared | Sync | WarpReduce
        | BlockReduce | WelfordReduce | ArgReduce | ClusterReduce | ClusterSync)
REDUCTIONS = (WarpReduce, BlockReduce, WelfordReduce, ArgReduce, ClusterReduce)

# -- the kernel ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorParam:
    """A pointer argument: `const T* __restrict__` for inputs, `T* __restrict__` for outputs.
    `align` is the byte alignment the launcher guarantees for the pointer.  `restrict` False:
    the pointer may alias another argument (an output written into an input's memory), so it
    is declared without `__restrict__` (aliasing restrict pointers is undefined behaviour)."""

    name: str
    dtype: DType
    is_output: bool
    align: int
    restrict: bool = True


@dataclass(frozen=True)
class MemberGroup:
    """Members of a horizontal kernel that run the same member kernel (nvfuse/lower/horizontal.py):
    the emitter prints their code once.  `positions`: the index in the kernel body of each
    member's `If(owns, renamed body)`; `tensors` / `scalars`: the member kernel's own
    parameters plus `first_block`; `body`: the member's body under its own names, blocks
    counted from `first_block`; `args`: per position, the kernel parameter names bound to
    `tensors + scalars` in order.  The kernel body stays complete (the interpreter and the
    verifier read it); this only says which of its statements are one code path."""

    positions: tuple[int, ...]
    tensors: tuple[TensorParam, ...]
    scalars: tuple[Param, ...]
    body: tuple[Stmt, ...]
    args: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Kernel:
    """One __global__ function.  Arguments are passed in the order tensors, then scalars (the
    launcher binds a schedule's named scalars to them by name: `bind_scalars`).
    The launch uses `block` threads and `grid` blocks (an expression over scalar params).
    `groups`: a horizontal kernel's repeated members, emitted as one code path each.
    `cluster` > 1: consecutive blocks form thread-block clusters of that many (the grid is a
    multiple of it; block b has cluster rank b % cluster), for `ClusterReduce`."""

    name: str
    tensors: tuple[TensorParam, ...]
    scalars: tuple[Param, ...]
    body: tuple[Stmt, ...]
    block: int
    grid: Expr
    index_dtype: DType
    groups: tuple[MemberGroup, ...] = ()
    cluster: int = 1  # blocks per thread-block cluster (> 1: `__cluster_dims__`, sm_90)

    def __str__(self) -> str:
        return print_kernel(self)


def bind_scalars(kernels: Sequence[Kernel],
                 values: Mapping[str, int]) -> tuple[tuple[int, ...], ...]:
    """Per kernel, the named launch `values` ordered by its declared scalar parameters: the
    one place named scalars become positional arguments (executor, packed GPU launch,
    interpreter callers, benches).  Several kernels (a split reduction's stages) share one
    mapping and each takes the names it declares.  LaunchError: a kernel declares a name
    `values` lacks, or `values` holds a name no kernel declares."""
    bound = []
    for k in kernels:
        missing = [p.name for p in k.scalars if p.name not in values]
        if missing:
            raise LaunchError(f"{k.name}: no value for scalar parameter(s) "
                              f"{', '.join(missing)}")
        bound.append(tuple(values[p.name] for p in k.scalars))
    declared = {p.name for k in kernels for p in k.scalars}
    unknown = [name for name in values if name not in declared]
    if unknown:
        names = ", ".join(k.name for k in kernels)
        raise LaunchError(f"{names}: scalar(s) {', '.join(unknown)} given but not a parameter "
                          "of the kernel")
    return tuple(bound)


def dynamic_shared(kernel: Kernel) -> list[Shared]:
    """The kernel's dynamic shared arrays (`Shared.count`), in declaration order."""
    return [s for s in kernel.body if isinstance(s, Shared) and s.count is not None]


SHARED_ALIGN = 16


def dynamic_shared_bytes(kernel: Kernel, scalars: Sequence[int]) -> int:
    """The dynamic shared memory a launch of `kernel` with these scalar arguments (in the
    kernel's declared order) needs: its dynamic arrays side by side, each rounded up to
    SHARED_ALIGN bytes."""
    arrays = dynamic_shared(kernel)
    if not arrays:
        return 0
    values = {p.name: v for p, v in zip(kernel.scalars, scalars)}
    total = 0
    for a in arrays:
        assert a.count is not None
        nbytes = values[a.count.name] * a.dtype.itemsize
        total += -(-nbytes // SHARED_ALIGN) * SHARED_ALIGN
    return total


def kernel_args(kernel: Kernel, values: Mapping[str, int]) -> tuple[int, ...]:
    """`bind_scalars` for one kernel."""
    return bind_scalars([kernel], values)[0]


# -- printer -------------------------------------------------------------------------------


def print_expr(e: Expr) -> str:
    if isinstance(e, Const):
        return f"{format_scalar(e.value)}:{e.dtype}"
    if isinstance(e, (Var, Param)):
        return e.name
    if isinstance(e, Special):
        return e.name
    if isinstance(e, Elem):
        return f"{e.array}[{print_expr(e.lane)}]"
    if isinstance(e, SharedElem):
        return f"${e.array}[{print_expr(e.index)}]"
    if isinstance(e, IndexOp):
        return f"({print_expr(e.a)} {e.op} {print_expr(e.b)})"
    if isinstance(e, Random):
        return f"rand({print_expr(e.index)}, {print_expr(e.seed)}, stream {e.stream})"
    if isinstance(e, Compute):
        args = ", ".join(print_expr(a) for a in e.args)
        return f"{e.prim.value}<{e.dtype}>({args})"
    raise TypeError(f"not a kernel IR expression: {e!r}")


def print_kernel(k: Kernel) -> str:
    """The one printer of the kernel IR (repr, dumps, tests)."""
    params = [
        f"{'out' if t.is_output else 'in'} {t.name}: {t.dtype}* align {t.align}"
        f"{'' if t.restrict else ' aliased'}" for t in k.tensors
    ] + [f"{p.name}: {p.dtype}" for p in k.scalars]
    lines = [f"kernel {k.name}({', '.join(params)})",
             f"  launch block={k.block} grid={print_expr(k.grid)} index={k.index_dtype}"
             + (f" cluster={k.cluster}" if k.cluster > 1 else "")]
    _print_body(k.body, 1, lines)
    return "\n".join(lines)


def _print_body(body: tuple[Stmt, ...], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for s in body:
        if isinstance(s, Declare):
            lanes = f"[{s.lanes}]" if s.lanes is not None else ""
            init = f" = {print_expr(s.init)}" if s.init is not None else ""
            lines.append(f"{pad}{s.dtype} {s.name}{lanes}{init}")
        elif isinstance(s, Assign):
            lines.append(f"{pad}{print_expr(s.target)} = {print_expr(s.value)}")
        elif isinstance(s, Load):
            kind = "vload" if s.vector else "load"
            lines.append(f"{pad}{s.array}[0:{s.lanes}] = {kind} {s.tensor}[{print_expr(s.offset)}]")
        elif isinstance(s, Store):
            kind = "vstore" if s.vector else "store"
            lines.append(f"{pad}{kind} {s.tensor}[{print_expr(s.offset)}] = {s.array}[0:{s.lanes}]")
        elif isinstance(s, If):
            lines.append(f"{pad}if {print_expr(s.cond)}:")
            _print_body(s.body, depth + 1, lines)
        elif isinstance(s, For):
            unroll = " unroll" if s.unroll else " rolled" if s.rolled else ""
            lines.append(f"{pad}for {s.var.name} in [{print_expr(s.start)}, {print_expr(s.stop)})"
                         f" step {print_expr(s.step)}{unroll}:")
            _print_body(s.body, depth + 1, lines)
        elif isinstance(s, Comment):
            lines.append(f"{pad}# {s.text}")
        else:
            lines.append(pad + _print_sync_or_reduce(s))


def _print_sync_or_reduce(s: Stmt) -> str:
    """Shared memory, barriers and reductions ($name marks a shared array)."""
    if isinstance(s, Shared):
        if s.count is not None:
            return f"shared {s.dtype} ${s.name}[{s.count.name} <= {s.size}] dynamic"
        return f"shared {s.dtype} ${s.name}[{s.size}]"
    if isinstance(s, Sync):
        return "sync"
    if isinstance(s, WarpReduce):
        return f"{s.dst.name} = warp_allreduce.{s.op.value}({print_expr(s.src)})"
    if isinstance(s, BlockReduce):
        return (f"{s.dst.name} = block_allreduce.{s.op.value}({print_expr(s.src)}) "
                f"scratch ${s.scratch}")
    if isinstance(s, WelfordReduce):
        srcs = ", ".join(print_expr(e) for e in (s.src_mean, s.src_m2, s.src_n))
        scratch = f" scratch ${s.scratch}" if s.scratch is not None else ""
        return (f"({s.mean.name}, {s.m2.name}, {s.n.name}) = "
                f"{s.scope.value}_welford({srcs}){scratch}")
    if isinstance(s, ArgReduce):
        scratch = (f" scratch ${s.scratch} ${s.index_scratch}" if s.scratch is not None
                   else "")
        return (f"({s.value.name}, {s.index.name}) = {s.scope.value}_arg{s.op.value}("
                f"{print_expr(s.src_value)}, {print_expr(s.src_index)}){scratch}")
    if isinstance(s, ClusterReduce):
        dsts = ", ".join(d.name for d in s.dsts)
        srcs = ", ".join(print_expr(e) for e in s.srcs)
        return (f"({dsts}) = cluster_{s.op.value if s.op else 'welford'}({srcs}) "
                f"slot ${s.slot}")
    if isinstance(s, ClusterSync):
        return "cluster_sync"
    raise TypeError(f"not a kernel IR statement: {s!r}")
