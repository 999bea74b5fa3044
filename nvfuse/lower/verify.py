"""Kernel IR verifier: kir.Kernel -> the same kernel, or KernelIRError naming the problem.

Checks what a well-formed kernel needs and the emitter and interpreter assume:
- every register, register array and shared array is declared before use, in an enclosing
  scope (a `For` declares its loop variable for its body), and never declared twice in one scope;
- every `Param` is one of the kernel's scalars (with the same dtype), every tensor access names
  one of its tensors, stores go only to outputs, and loads/stores move the tensor's own dtype
  into/out of an array of that dtype with at least `lanes` elements;
- index arithmetic and predicates are integral or boolean; a `Compute` is typed as its dtype.
Run by the tests after every lowering (design: a verifier after each pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nvfuse.dtypes import DType
from nvfuse.errors import NvfuseError
from nvfuse.lower import kir


class KernelIRError(NvfuseError):
    """The kernel IR breaks an invariant (a bug in a lowering pass, not in user input)."""


@dataclass
class _Scope:
    scalars: dict[str, DType] = field(default_factory=dict)
    arrays: dict[str, tuple[DType, int]] = field(default_factory=dict)  # name -> (dtype, lanes)
    parent: _Scope | None = None

    def scalar(self, name: str) -> DType | None:
        return self.scalars.get(name) or (self.parent.scalar(name) if self.parent else None)

    def array(self, name: str) -> tuple[DType, int] | None:
        found = self.arrays.get(name)
        return found or (self.parent.array(name) if self.parent else None)


class _Verifier:
    def __init__(self, k: kir.Kernel) -> None:
        self.k = k
        self.params = {p.name: p.dtype for p in k.scalars}
        self.tensors = {t.name: t for t in k.tensors}

    def fail(self, what: str) -> KernelIRError:
        return KernelIRError(f"kernel IR {self.k.name}: {what}")

    # -- expressions -------------------------------------------------------------------------
    def expr(self, e: kir.Expr, scope: _Scope) -> None:
        if isinstance(e, kir.Var):
            if scope.scalar(e.name) is None:
                raise self.fail(f"register {e.name} used before its declaration")
        elif isinstance(e, kir.Param):
            if self.params.get(e.name) is not e.dtype:
                raise self.fail(f"parameter {e.name}: {e.dtype} is not a kernel scalar")
        elif isinstance(e, (kir.Elem, kir.SharedElem)):
            self.array_use(e.array, e.dtype, scope)
            self.expr(e.lane if isinstance(e, kir.Elem) else e.index, scope)
        elif isinstance(e, kir.IndexOp):
            for operand in (e.a, e.b):
                if operand.dtype.is_float:
                    raise self.fail(f"index arithmetic {e.op} on a {operand.dtype} operand")
                self.expr(operand, scope)
        elif isinstance(e, kir.Compute):
            for operand in e.args:
                self.expr(operand, scope)
        elif isinstance(e, kir.Random):
            if e.index.dtype is not DType.INT64 or e.seed.dtype is not DType.INT64:
                raise self.fail("random index and seed are int64")
            self.expr(e.index, scope)
            self.expr(e.seed, scope)
        elif not isinstance(e, (kir.Const, kir.Special)):
            raise self.fail(f"unknown expression {e!r}")

    def array_use(self, name: str, dtype: DType, scope: _Scope, lanes: int = 1) -> None:
        found = scope.array(name)
        if found is None:
            raise self.fail(f"array {name} used before its declaration")
        if found[0] is not dtype or found[1] < lanes:
            raise self.fail(f"array {name} is {found[0]}[{found[1]}], used as {dtype}[{lanes}]")

    # -- statements --------------------------------------------------------------------------
    def body(self, stmts: tuple[kir.Stmt, ...], scope: _Scope) -> None:
        for s in stmts:
            self.stmt(s, scope)

    def declare(self, name: str, scope: _Scope, dtype: DType, lanes: int | None) -> None:
        if name in scope.scalars or name in scope.arrays:
            raise self.fail(f"{name} declared twice in one scope")
        if lanes is None:
            scope.scalars[name] = dtype
        else:
            scope.arrays[name] = (dtype, lanes)

    def stmt(self, s: kir.Stmt, scope: _Scope) -> None:
        if isinstance(s, kir.Declare):
            if s.init is not None:
                self.expr(s.init, scope)
            self.declare(s.name, scope, s.dtype, s.lanes)
        elif isinstance(s, kir.Shared):
            if s.count is not None:
                if scope.parent is not None:
                    raise self.fail(f"dynamic shared array {s.name} declared in a nested scope")
                self.expr(s.count, scope)
            self.declare(s.name, scope, s.dtype, s.size)
        elif isinstance(s, kir.Assign):
            self.expr(s.target, scope)
            self.expr(s.value, scope)
        elif isinstance(s, (kir.Load, kir.Store)):
            tensor = self.tensors.get(s.tensor)
            if tensor is None:
                raise self.fail(f"access to unknown tensor {s.tensor}")
            if isinstance(s, kir.Store) and not tensor.is_output:
                raise self.fail(f"store to input tensor {s.tensor}")
            if tensor.dtype is not s.dtype:
                raise self.fail(f"{s.tensor} holds {tensor.dtype}, accessed as {s.dtype}")
            self.array_use(s.array, s.dtype, scope, s.lanes)
            self.expr(s.offset, scope)
        elif isinstance(s, kir.If):
            self.expr(s.cond, scope)
            self.body(s.body, _Scope(parent=scope))
        elif isinstance(s, kir.For):
            if s.unroll and s.rolled:
                raise self.fail(f"loop over {s.var.name} both unrolled and kept rolled")
            for bound in (s.start, s.stop, s.step):
                self.expr(bound, scope)
            inner = _Scope(parent=scope)
            inner.scalars[s.var.name] = s.var.dtype
            self.body(s.body, inner)
        elif isinstance(s, (kir.WarpReduce, kir.BlockReduce)):
            self.expr(s.src, scope)
            self.expr(s.dst, scope)
        elif isinstance(s, kir.WelfordReduce):
            for e in (s.src_mean, s.src_m2, s.src_n, s.mean, s.m2, s.n):
                self.expr(e, scope)
        elif isinstance(s, kir.ArgReduce):
            for e in (s.src_value, s.src_index, s.value, s.index):
                self.expr(e, scope)
        elif isinstance(s, kir.ClusterReduce):
            if self.k.cluster < 2:
                raise self.fail(f"cluster reduction into {s.dsts[0].name} in a kernel "
                                "without clusters")
            self.array_use(s.slot, s.dsts[0].dtype, scope, len(s.srcs))
            for e in (*s.srcs, *s.dsts):
                self.expr(e, scope)
        elif isinstance(s, kir.ClusterSync):
            if self.k.cluster < 2:
                raise self.fail("cluster barrier in a kernel without clusters")
        elif not isinstance(s, (kir.Comment, kir.Sync)):
            raise self.fail(f"unknown statement {s!r}")


def verify_kernel(k: kir.Kernel) -> kir.Kernel:
    """Check `k` (see the module docstring); return it unchanged or raise KernelIRError."""
    v = _Verifier(k)
    if len(set(v.tensors)) != len(k.tensors) or len(v.params) != len(k.scalars):
        raise v.fail("duplicate parameter names")
    v.expr(k.grid, _Scope())
    v.body(k.body, _Scope())
    return k
