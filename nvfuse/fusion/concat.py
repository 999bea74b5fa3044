"""Concatenation in a fusion group: aten cat / stack / constant_pad_nd -> prims, as index remaps.

Input: an FX node of one of `TARGETS` whose tensor operands are values of the group.  Output
(`lower_concat`): the Val of the result, built as a chain of WHEREs over the segments,

    cat(f(a), g(b)) along d  ==  where(in_piece 0, f(a @ 0), g(b @ 1))

where `a @ k` is a PIECE_LOAD of input a placed as segment k: each piece's producers are
cloned with their loads remapped, so no intermediate buffer exists.  Outside its segment a
PIECE_LOAD is 0 and reads no memory, and the WHERE discards what the clone computed from it.
That is only harmless for prims defined on every input: integer division (0 divisor: undefined
in C) and random draws (a clone would draw a second stream) are refused in a piece, as are
reductions and other concatenations (nested remaps); a group may hold several side by side
(`Builder.concats`).

stack is a cat of pieces that lack the new dim; constant pad is the input as a value piece
between constant pieces (a negative pad trims the value piece).  Only a pad of one dim fuses.
slice_backward (step 1) is a zero pad; slice_scatter (step 1) is src between two pieces of
self (its first `start` elements, and the rest after `end`).

`parse` and `piece_problem` also serve the partitioner, so fusible and lowerable agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx

from nvfuse import dtypes
from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder, Unsupported, Val
from nvfuse.fusion.ir import Concat, Node, Scalar, Segment, ancestors
from nvfuse.fusion.prims import LEAVES, REDUCTIONS, Prim

aten = torch.ops.aten
TARGETS = frozenset({aten.cat.default, aten.stack.default, aten.constant_pad_nd.default,
                     aten.slice_backward.default, aten.slice_scatter.default})
# Prims that a placeholder 0 could make undefined (integers only: floats give inf / nan).
_INT_DIVISIONS = frozenset({Prim.DIV_TRUNC, Prim.DIV_FLOOR, Prim.REMAINDER, Prim.FMOD})


def is_concat(target: object) -> bool:
    return target in TARGETS


@dataclass(frozen=True)
class Piece:
    """One segment of the result: the value of `node` (trimmed by `trim` along the dim, and
    cut to `keep` elements when set), or `length` elements of the pad value when `node` is
    None."""

    node: fx.Node | None
    length: int = 0
    trim: tuple[int, int] = (0, 0)
    keep: int | None = None


@dataclass(frozen=True)
class Spec:
    """A parsed concatenation: along `dim` of a result of rank `ndim`."""

    dim: int
    ndim: int
    pieces: tuple[Piece, ...]
    stacked: bool = False
    value: Scalar = 0


def _meta(node: object) -> torch.Tensor | None:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return val if isinstance(val, torch.Tensor) else None


def parse(node: fx.Node) -> Spec | str:
    """The node's concatenation, or why it cannot fuse as one."""
    out = _meta(node)
    if out is None:
        return "result is not a single tensor"
    args = dict(zip(("a0", "a1", "a2"), node.args)) | dict(node.kwargs)
    if node.target is aten.constant_pad_nd.default:
        return _parse_pad(node, out, args)
    if node.target in (aten.slice_backward.default, aten.slice_scatter.default):
        return _parse_slice(node, out, args)
    tensors = args.get("a0", args.get("tensors"))
    dim = args.get("a1", args.get("dim", 0))
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int):
        return "tensors are not a list of group values"
    metas = [_meta(t) for t in tensors]
    if any(m is None for m in metas):
        return "a piece is not a tensor"
    stacked = node.target is aten.stack.default
    ndim = out.dim()
    piece_rank = ndim - 1 if stacked else ndim
    if any(m.dim() != piece_rank for m in metas if m is not None):
        return "pieces of another rank (cat's legacy empty tensors)"
    if not -ndim <= dim < ndim:
        return f"dim {dim} out of range"
    return Spec(dim % ndim, ndim, tuple(Piece(t) for t in tensors), stacked)


def _parse_pad(node: fx.Node, out: torch.Tensor, args: dict) -> Spec | str:
    pad = args.get("a1", args.get("pad"))
    value = args.get("a2", args.get("value", 0))
    source = args.get("a0", args.get("self"))
    ndim = out.dim()
    if not isinstance(pad, (list, tuple)) or not all(type(p) is int for p in pad):
        return "pad amounts are not literal ints"
    if len(pad) % 2 or len(pad) > 2 * ndim or ndim == 0:
        return f"pad {list(pad)} of a rank-{ndim} tensor"
    if not isinstance(value, (bool, int, float)):
        return f"pad value {value!r} is not a literal"
    pairs = {ndim - 1 - i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
    padded = [d for d, p in pairs.items() if p != (0, 0)]
    if len(padded) > 1:
        return "pads more than one dim"
    dim = padded[0] if padded else ndim - 1
    lo, hi = pairs.get(dim, (0, 0))
    pieces = ([Piece(None, lo)] if lo > 0 else []) + [Piece(source, trim=(max(0, -lo),
                                                                          max(0, -hi)))]
    pieces += [Piece(None, hi)] if hi > 0 else []
    return Spec(dim, ndim, tuple(pieces), value=value)


def _parse_slice(node: fx.Node, out: torch.Tensor, args: dict) -> Spec | str:
    backward = node.target is aten.slice_backward.default
    names = (("grad_output", "input_sizes", "dim", "start", "end", "step") if backward
             else ("self", "src", "dim", "start", "end", "step"))
    bound = {name: args.get(f"a{i}", args.get(name)) for i, name in enumerate(names)}
    bound.update({k: v for k, v in node.kwargs.items() if k in names})
    if len(node.args) > 3:
        bound.update(zip(names[3:], node.args[3:]))
    dim, start, end = bound["dim"], bound["start"], bound["end"]
    step = bound["step"] if bound["step"] is not None else 1
    ndim = out.dim()
    if not isinstance(dim, int) or not -ndim <= dim < ndim or step != 1 or any(
            v is not None and type(v) is not int for v in (start, end)):
        return "a strided or non-literal slice"
    dim %= ndim
    n = out.shape[dim]
    lo, hi = _clamp(start, 0, n), _clamp(end, n, n)
    hi = max(hi, lo)
    if backward:  # zeros everywhere but [lo, hi)
        pieces = ([Piece(None, lo)] if lo else []) + [Piece(bound["grad_output"])]
        return Spec(dim, ndim, (*pieces, *([Piece(None, n - hi)] if hi < n else [])))
    self_node, src = bound["self"], bound["src"]
    pieces = ([Piece(self_node, keep=lo)] if lo else []) + [Piece(src)]
    return Spec(dim, ndim, (*pieces, *([Piece(self_node, trim=(hi, 0))] if hi < n else [])))


def _clamp(index: int | None, default: int, n: int) -> int:
    """A slice bound as Python normalizes it into [0, n]."""
    if index is None:
        return default
    return min(max(index + n if index < 0 else index, 0), n)


def why_unfusible(node: fx.Node) -> str | None:
    """None when the concatenation node may join a group (the partitioner's answer)."""
    spec = parse(node)
    if isinstance(spec, str):
        return spec
    out = _meta(node)
    assert out is not None
    metas = [_meta(p.node) for p in spec.pieces if p.node is not None]
    if not all(dtypes.is_supported(t.dtype) for t in [out, *metas] if t is not None):
        return "unsupported dtype"
    if len({t.device.type for t in [out, *metas] if t is not None}) > 1:
        return "operands on different devices"
    if spec.value != 0 and not dtypes.from_torch(out.dtype).is_float and isinstance(
            spec.value, float) and not float(spec.value).is_integer():
        return "a fractional pad value for an integer tensor"
    return None


def piece_problem(b: Builder) -> str | None:
    """Why the nodes built in `b` (one op, lowered on a scratch builder) cannot be computed
    inside a piece, or None."""
    for node in b.nodes:
        reason = _unsafe(node)
        if reason is not None:
            return reason
    return None


def _unsafe(node: Node) -> str | None:
    if node.op in _INT_DIVISIONS and not node.dtype.is_float:
        return "integer division inside a concatenated piece (0 divisor outside its segment)"
    if node.op in REDUCTIONS or (node.op in LEAVES and node.op not in (Prim.LOAD, Prim.CONST)):
        return f"{node.op.value} inside a concatenated piece"
    return None


def lower_concat(b: Builder, node: fx.Node, env: dict[fx.Node, Val],
                 deps: dict[fx.Node, frozenset[int]]) -> Val:
    """The concatenation `node` as prims (see the module docstring); sets `b.concat`.
    Raises Unsupported."""
    spec = parse(node)
    if isinstance(spec, str):
        raise Unsupported(spec)
    if b.reduce_ndim:
        raise Unsupported("a concatenation in a reduction group")
    c = len(b.concats)
    out_meta = _meta(node)
    assert out_meta is not None
    out = dtypes.from_torch(out_meta.dtype)
    segments: list[Segment] = []
    branches: list[Val] = []
    for k, piece in enumerate(spec.pieces):
        if piece.node is None:
            segments.append(Segment(length=piece.length))
            branches.append(b.const(spec.value, out))
            continue
        segments.append(Segment(tuple(sorted(deps[piece.node])), None, piece.trim,
                                spec.stacked, piece.keep))
        v = env[piece.node]
        cloned = Val(_clone(b, v.index, c, k), v.dtype, v.eager)
        if cloned.eager is not out:  # cat promotes mixed dtypes as eager does
            cloned = b.convert(cloned, out)
        branches.append(b.cast(cloned, out.compute))
    b.concats.append(Concat(spec.dim, spec.ndim, tuple(segments)))
    result = branches[-1]
    for k in range(len(branches) - 2, -1, -1):
        cond = b.add_node(Node(Prim.IN_PIECE, (), DType.BOOL, (c, k)))
        result = b.prim(Prim.WHERE, Val(cond, DType.BOOL, DType.BOOL), branches[k], result)
    return Val(result.index, out.compute, out)


def _clone(b: Builder, root: int, cat: int, segment: int) -> int:
    """A copy of node `root` and its ancestors with every LOAD read as the piece of segment
    `segment` of concatenation `cat` (CONSTs are shared).  Iterative: chains can be deep."""
    needed = ancestors(b.nodes, [root])
    copies: dict[int, int] = {}
    for n in sorted(needed):  # nodes are in topological order
        node = b.nodes[n]
        reason = _unsafe(node)
        if reason is not None:
            raise Unsupported(reason)
        if node.op is Prim.CONST:
            copies[n] = n
        elif node.op is Prim.LOAD:
            source = int(node.attr)  # type: ignore[arg-type]
            copies[n] = b.add_node(Node(Prim.PIECE_LOAD, (), node.dtype,
                                        (source, cat, segment)))
        else:
            copies[n] = b.add_node(Node(node.op, tuple(copies[a] for a in node.args),
                                        node.dtype, node.attr))
    return copies[root]
