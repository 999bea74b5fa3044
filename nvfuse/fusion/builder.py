"""Builder: the API the op table uses to turn one aten op into prims of the fusion IR.

A `Val` is a fusion value plus the dtype eager PyTorch would give that tensor.  The two differ
only for float16/bfloat16 results, which are held in float32 registers: each op computes in
float32 (eager's opmath) and its half result is rounded once to its dtype, exactly where eager
materialises it (`finish`), so every consumer sees the value eager's does.  A composite op that
eager computes in one kernel is one op here too (its decomposition inside the op table is not
rounded in between); the graph-level decompositions upcast halves to float32 explicitly, as
eager's composite kernels do.

Op-table functions receive `Val`s for tensor operands and plain Python values for everything
else, call `b.prim(...)`, `b.cast(...)`, `b.const(...)`, and return a `Val`; `b.finish` then
types the result as eager's output dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from nvfuse import dtypes
from nvfuse.dtypes import DType
from nvfuse.fusion.ir import (
    Concat,
    FusionIR,
    Node,
    Output,
    OutputShape,
    Scalar,
    TensorInput,
    needed_nodes,
    verify_fusion,
)
from nvfuse.fusion.prims import ARG_REDUCTIONS, BINARY_PRED, UNARY_PRED, Prim


@dataclass(frozen=True)
class Val:
    """A fusion value: node `index` of dtype `dtype`, standing for an eager tensor of dtype
    `eager` (equal to `dtype` except for float16/bfloat16 kept in float32).  `zero_dim` marks
    0-dim tensors, which take part in type promotion like scalars do.  `ndim` is the eager
    tensor's rank where known (-1 otherwise): reductions need it to normalize their dims."""

    index: int
    dtype: DType
    eager: DType
    zero_dim: bool = False
    ndim: int = -1


class Unsupported(Exception):
    """The op (with these arguments) cannot be fused; the caller keeps it eager."""


class Builder:
    """Accumulates nodes (with common-subexpression sharing) for one fusion group."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs: list[TensorInput] = []
        self.nodes: list[Node] = []
        self.outputs: list[Output] = []
        self._memo: dict[Node, int] = {}
        self.reduce_ndim = 0  # set by the first reduction; every later one must agree
        self.concats: list[Concat] = []  # one per cat / stack / pad (nvfuse.fusion.concat)
        self.reduce_dims: tuple[int, ...] | None = None  # non-trailing reduced dims
        self.reduce_calls = 0  # `reduce` calls so far (CSE hits included): which ops reduce

    # -- leaves ------------------------------------------------------------------------------
    def add_node(self, node: Node) -> int:
        found = self._memo.get(node)
        if found is not None:
            return found
        self.nodes.append(node)
        self._memo[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def load(self, dtype: DType, ndim: int) -> Val:
        """Declare a new tensor input and load it."""
        index = len(self.inputs)
        self.inputs.append(TensorInput(f"in{index}", dtype, ndim))
        node = self.add_node(Node(Prim.LOAD, (), dtype, index))
        return Val(node, dtype, dtype, zero_dim=ndim == 0, ndim=ndim)

    def random(self) -> Val:
        """A float32 uniform in [0, 1) from a random stream of its own (never shared by CSE)."""
        stream = sum(1 for n in self.nodes if n.op is Prim.RAND)
        node = self.add_node(Node(Prim.RAND, (), DType.FLOAT32, stream))
        return Val(node, DType.FLOAT32, DType.FLOAT32)

    def const(self, value: Scalar, dtype: DType) -> Val:
        """A literal of `dtype` (converted as torch converts a Python scalar to that dtype)."""
        literal = _convert_scalar(value, dtype)
        node = self.add_node(Node(Prim.CONST, (), dtype.compute, literal))
        return Val(node, dtype.compute, dtype)

    def row_numel(self, dims: int | tuple[int, ...]) -> Val:
        """The number of elements a reduction over `dims` combines (int64); `dims` as in
        `reduce`."""
        self._reduces(dims)
        node = self.add_node(Node(Prim.ROW_NUMEL, (), DType.INT64))
        return Val(node, DType.INT64, DType.INT64)

    def reduce(self, op: Prim, v: Val, dims: int | tuple[int, ...]) -> Val:
        """`op` over `dims` of the iteration space: an int k means the trailing k dims, a tuple
        lists the reduced dims, negative and right-aligned (see nvfuse.fusion.ir).  v's dtype
        is the accumulator's: float32, float64 or int64; the result's too, except argmax /
        argmin's, int64 indices.  Raises Unsupported when the group already reduces other
        dims."""
        self._reduces(dims)
        self.reduce_calls += 1
        dtype = DType.INT64 if op in ARG_REDUCTIONS else v.dtype
        index = self.add_node(Node(op, (v.index,), dtype))
        return Val(index, dtype, dtype)

    @property
    def reduce_axes(self) -> tuple[int, ...]:
        """The dims the group reduces (negative, right-aligned); () while it reduces none."""
        if self.reduce_dims is not None:
            return self.reduce_dims
        return tuple(range(-self.reduce_ndim, 0))

    def _reduces(self, dims: int | tuple[int, ...]) -> None:
        axes = tuple(range(-dims, 0)) if isinstance(dims, int) else tuple(sorted(set(dims)))
        if not axes or any(d >= 0 for d in axes):
            raise Unsupported(f"a reduction over dims {dims!r}")
        if self.reduce_ndim and self.reduce_axes != axes:
            raise Unsupported(f"reduces dims {list(axes)}; the group reduces "
                              f"{list(self.reduce_axes)}")
        self.reduce_ndim = len(axes)
        trailing = axes == tuple(range(-len(axes), 0))
        self.reduce_dims = None if trailing else axes

    # -- compute -----------------------------------------------------------------------------
    def prim(self, op: Prim, *args: Val, dtype: DType | None = None) -> Val:
        """`op(*args)`.  Operands must already share a dtype (WHERE: after its condition).
        The result dtype follows nvfuse.fusion.prims (bool for predicates); pass `dtype` only
        for CAST."""
        if op is Prim.CAST:
            assert dtype is not None
            result = dtype
        elif op is Prim.WHERE:
            result = args[1].dtype
        elif op in UNARY_PRED or op in BINARY_PRED:
            result = DType.BOOL
        else:
            result = args[0].dtype
        index = self.add_node(Node(op, tuple(a.index for a in args), result))
        return Val(index, result, result)

    def cast(self, v: Val, dtype: DType) -> Val:
        """`v` as a value of compute dtype `dtype` (no rounding of float32-kept halves: use
        `convert` for eager's explicit conversions).  Narrowing back a value that was only
        widened exactly returns the original (a rounded half held in float32, cast to its
        dtype, is that half)."""
        if v.dtype is dtype:
            return v
        node = self.nodes[v.index]
        if node.op is Prim.CAST and _widens_exactly(self.nodes[node.args[0]].dtype, v.dtype) and (
                self.nodes[node.args[0]].dtype is dtype):
            return Val(node.args[0], dtype, dtype)
        return self.prim(Prim.CAST, v, dtype=dtype)

    def convert(self, v: Val, dtype: DType) -> Val:
        """Eager's `x.to(dtype)`: rounds a float32-kept half first, then converts.
        Returns a value typed for computing (`dtype.compute`) with eager dtype `dtype`."""
        if v.eager.is_reduced_float and v.dtype is not v.eager:
            v = self.cast(v, v.eager)  # round to the eager dtype: what eager holds in memory
        if v.eager is dtype and v.dtype is dtype.compute:
            return v
        if dtype.is_reduced_float:
            rounded = self.cast(v, dtype)
            out = self.cast(rounded, DType.FLOAT32)
            return Val(out.index, out.dtype, dtype)
        out = self.cast(v, dtype)
        return Val(out.index, out.dtype, dtype)

    def operand(self, x: Val | Scalar, dtype: DType) -> Val:
        """Operand `x` (a Val or a Python scalar) in the compute dtype of eager dtype `dtype`."""
        if isinstance(x, Val):
            return self.cast(x, dtype.compute)
        return self.const(x, dtype)

    def finish(self, v: Val, eager: DType) -> Val:
        """Type an op's result as eager's result dtype `eager`; a float16/bfloat16 result is
        rounded to its dtype (eager materialises it) and held in float32."""
        if eager.is_reduced_float:
            rounded = self.cast(self.cast(v, eager), DType.FLOAT32)
            return Val(rounded.index, rounded.dtype, eager)
        v = self.cast(v, eager.compute)
        return Val(v.index, v.dtype, eager)

    # -- outputs -----------------------------------------------------------------------------
    def store(self, v: Val, dtype: DType, shape_from: tuple[int, ...],
              layout: tuple[int, ...] | None = None,
              shape: OutputShape = OutputShape.FULL,
              reduced_from: tuple[int, ...] = (), from_concats: tuple[int, ...] = ()) -> None:
        name = f"out{len(self.outputs)}"
        node = self.nodes[v.index]
        rounded = self.nodes[node.args[0]] if node.op is Prim.CAST else None
        if rounded is not None and rounded.op is Prim.CAST and rounded.dtype is dtype and (
                _widens_exactly(dtype, v.dtype)):
            # a rounded half held in float32: store the value it was rounded from (the store
            # rounds it the same way)
            v = Val(rounded.args[0], self.nodes[rounded.args[0]].dtype, dtype)
        self.outputs.append(Output(name, v.index, dtype, shape_from, layout, shape,
                                   reduced_from, from_concats))

    def finalize(self, ops: tuple[str, ...] = ()) -> FusionIR:
        # dead nodes: the pieces' unremapped originals of a concatenation, and the float32
        # copy of a rounded half that is only stored
        nodes, outputs = _prune(tuple(self.nodes), tuple(self.outputs))
        ir = FusionIR(self.name, tuple(self.inputs), nodes, outputs, ops,
                      reduce_ndim=self.reduce_ndim, concats=tuple(self.concats),
                      reduce_dims=self.reduce_dims)
        return verify_fusion(ir)


def _widens_exactly(narrow: DType, wide: DType) -> bool:
    """Whether every `narrow` value converts to `wide` and back unchanged (float widening)."""
    return narrow.is_float and wide.is_float and narrow.itemsize < wide.itemsize and not (
        narrow is DType.FLOAT16 and wide is DType.BFLOAT16)


def _prune(nodes: tuple[Node, ...],
           outputs: tuple[Output, ...]) -> tuple[tuple[Node, ...], tuple[Output, ...]]:
    """The nodes the outputs need, renumbered in their order, and the outputs renumbered."""
    live = needed_nodes(nodes, outputs)
    new = {old: i for i, old in enumerate(sorted(live))}
    kept = tuple(replace(nodes[n], args=tuple(new[a] for a in nodes[n].args))
                 for n in sorted(live))
    return kept, tuple(replace(o, value=new[o.value]) for o in outputs)


def _convert_scalar(value: Scalar, dtype: DType) -> Scalar:
    """Convert a Python scalar as torch converts it into a tensor of `dtype`."""
    if dtype is DType.BOOL:
        return bool(value)
    if dtype.is_int:
        if isinstance(value, float):
            if math.isnan(value) or value in (float("inf"), float("-inf")):
                raise Unsupported(f"scalar {value} cannot be converted to {dtype}")
            value = int(value)  # torch truncates toward zero
        bits = dtype.itemsize * 8
        value = int(value) & ((1 << bits) - 1)
        if dtype.is_signed and value >= 1 << (bits - 1):
            value -= 1 << bits
        return value
    # floats: round through the storage dtype so the literal is what eager would hold
    return float(torch.tensor(float(value), dtype=dtype.torch).double().item()) if (
        dtype is not DType.FLOAT64) else float(value)


def result_type(*operands: Val | Scalar) -> DType:
    """torch's type promotion (TensorIterator's n-ary rule: dimensioned tensors, then 0-dim
    tensors, then Python scalars, by category) over Vals and Python scalars."""
    from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

    args: list[torch.Tensor | Scalar] = []
    for x in operands:
        if isinstance(x, Val):
            shape = () if x.zero_dim else (1,)
            args.append(torch.empty(shape, dtype=x.eager.torch, device="meta"))
        else:
            args.append(x)
    if not any(isinstance(a, torch.Tensor) for a in args):
        raise Unsupported("no tensor operand")
    _, promoted = elementwise_dtypes(
        *args, type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT
    )
    return dtypes.from_torch(promoted)
