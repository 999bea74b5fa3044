"""Concatenation, stage by stage: parse, the fusion IR (printer, verifier), partition rules, the
concat schedule (layout, pinned merging, signature) and the kernel IR (verified, guarded loads)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx

from nvfuse.dtypes import DType
from nvfuse.fusion import concat
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.ir import (
    Concat, FusionIR, FusionIRError, Node, Output, Segment, TensorInput, verify_fusion,
)
from nvfuse.fusion.partition import partition, why_unfusible
from nvfuse.fusion.prims import Prim
from nvfuse.graph.annotate import annotate
from nvfuse.graph.passes import run_passes
from nvfuse.graph.scatter import pad_filled_scatters
from nvfuse.interpret.machine import run_kernel
from nvfuse.interpret.state import InterpretError
from nvfuse.lower import kir
from nvfuse.lower.pointwise import lower_pointwise
from nvfuse.lower.verify import verify_kernel
from nvfuse.schedule import concat as cat_schedule

F32 = DType.FLOAT32


def _graph(fn: object, *inputs: torch.Tensor) -> torch.fx.GraphModule:
    gm = make_fx(fn)(*inputs)  # type: ignore[arg-type]
    return annotate(gm, list(inputs))


def _node(gm: torch.fx.GraphModule, name: str) -> torch.fx.Node:
    return next(n for n in gm.graph.nodes if n.op == "call_function" and name in str(n.target))


def _fusion(fn: object, *inputs: torch.Tensor) -> FusionIR:
    fused, names = partition(_graph(fn, *inputs))
    assert len(names) == 1
    return build_fusion(names[0], getattr(fused, names[0]))


def test_parse_cat_stack_and_pad() -> None:
    a, b = torch.randn(2, 3), torch.randn(2, 5)
    spec = concat.parse(_node(_graph(lambda x, y: torch.cat((x, y), -1), a, b), "cat"))
    assert not isinstance(spec, str) and (spec.dim, spec.ndim, len(spec.pieces)) == (1, 2, 2)
    spec = concat.parse(_node(_graph(lambda x: torch.stack((x, x), -1), a), "stack"))
    assert not isinstance(spec, str) and (spec.dim, spec.ndim, spec.stacked) == (2, 3, True)
    spec = concat.parse(_node(_graph(lambda x: F.pad(x, (-1, 2), value=3.0), a), "pad"))
    assert not isinstance(spec, str) and spec.value == 3.0 and spec.dim == 1
    assert [(p.node is None, p.length, p.trim) for p in spec.pieces] == [
        (False, 0, (1, 0)), (True, 2, (0, 0))]
    two_dims = _node(_graph(lambda x: F.pad(x, (1, 1, 1, 1)), a), "pad")
    assert why_unfusible(two_dims) == "pads more than one dim"


def test_fusion_ir_of_a_cat_prints_segments_and_remapped_loads() -> None:
    ir = _fusion(lambda x, y: torch.cat((x.exp(), y), 0) * 2, torch.randn(2, 3),
                 torch.randn(4, 3))
    assert str(ir).split("\n", 1)[1] == (
        "  concat 0 along dim 0 of r2: shape of in0; shape of in1\n"
        "  %0 = load in0 @ concat 0 segment 0 : float32\n"
        "  %1 = exp %0 : float32\n"
        "  %2 = load in1 @ concat 0 segment 1 : float32\n"
        "  %3 = in_piece concat 0 segment 0 : bool\n"
        "  %4 = where %3, %1, %2 : float32\n"
        "  %5 = const 2.0 : float32\n"
        "  %6 = mul %4, %5 : float32\n"
        "  out0 = store %6 : float32  (shape of scalar, concat 0)\n"
        "}")


def test_verifier_rejects_bad_concatenation_leaves() -> None:
    inputs = (TensorInput("in0", F32, 2),)
    cat = Concat(0, 2, (Segment((0,)), Segment(length=2)))
    out = (Output("out0", 0, F32, (), from_concats=(0,)),)

    def ir(node: Node, c: tuple[Concat, ...] = (cat,)) -> FusionIR:
        return FusionIR("g", inputs, (node,), out, concats=c)

    verify_fusion(ir(Node(Prim.PIECE_LOAD, (), F32, (0, 0, 0))))
    with pytest.raises(FusionIRError, match="outside a pointwise concat"):
        verify_fusion(ir(Node(Prim.PIECE_LOAD, (), F32, (0, 0, 0)), ()))
    with pytest.raises(FusionIRError, match="value segment"):  # segment 1 is a constant piece
        verify_fusion(ir(Node(Prim.PIECE_LOAD, (), F32, (0, 0, 1))))
    with pytest.raises(FusionIRError, match="value segment"):  # there is no concatenation 1
        verify_fusion(ir(Node(Prim.PIECE_LOAD, (), F32, (0, 1, 0))))
    with pytest.raises(FusionIRError, match="in_piece"):
        verify_fusion(ir(Node(Prim.IN_PIECE, (), F32, (0, 0))))


def test_layout_sums_extents_and_shifts_trimmed_pieces() -> None:
    ir = _fusion(lambda x: F.pad(x * 2, (-1, 2)), torch.randn(3, 5))
    lay = cat_schedule.layout(ir.concats[0], [torch.Size([3, 5])])
    assert (tuple(lay.shape), lay.ends, lay.shifts) == ((3, 6), (4, 6), (1,))
    with pytest.raises(RuntimeError, match="cutting"):
        cat_schedule.layout(ir.concats[0], [torch.Size([3, 0])])
    two = _fusion(lambda x, y: torch.cat((x, y), 1), torch.randn(3, 2), torch.randn(3, 4))
    with pytest.raises(RuntimeError, match="differ off dim 1"):
        cat_schedule.layout(two.concats[0], [torch.Size([3, 2]), torch.Size([4, 4])])


def test_merging_keeps_the_cat_dim_whole() -> None:
    # contiguous everywhere: without the pin all three dims would merge into one
    sizes, strides, pos = cat_schedule.merge_pinned([2, 1, 4, 5], [[20, 20, 5, 1]], [1])
    assert (sizes, strides, pos) == ([2, 1, 20], [[20, 20, 1]], [1])
    sizes, strides, pos = cat_schedule.merge_pinned([2, 3, 4, 5], [[60, 20, 5, 1]], [0])
    assert (sizes, strides, pos) == ([2, 60], [[60, 1]], [0])
    sizes, strides, pos = cat_schedule.merge_pinned([2, 3, 4, 5, 6], [[360, 120, 30, 6, 1]],
                                                    [3, 1])
    assert (sizes, strides, pos) == ([2, 3, 4, 5, 6], [[360, 120, 30, 6, 1]], [3, 1])


def test_kernel_ir_guards_every_piece_load() -> None:
    a, b = torch.randn(4, 3), torch.randn(4, 6)
    ir = _fusion(lambda x, y: torch.cat((x, y.neg()), 1), a, b)
    out = torch.empty(4, 9)
    assert ir.inputs[0].name == "in0" and "shape of in1; shape of in0" in str(ir)  # in0 is y
    launch = cat_schedule.plan_launch(ir, [b, a], [out], "sm_90")
    sig = launch.signature
    assert isinstance(sig, cat_schedule.ConcatSignature) and (sig.cat_dims, sig.lanes) == ((1,),
                                                                                          1)
    k = verify_kernel(lower_pointwise(ir, sig, launch.params.block))
    assert [p.name for p in k.scalars][-4:] == ["cat0_end0", "cat0_end1", "cat0_shift0",
                                                "cat0_shift1"]
    assert [launch.scalars[p.name] for p in k.scalars][-4:] == [3, 9, 0, -3]

    def loads(body: tuple[kir.Stmt, ...], guarded: bool) -> list[tuple[str, bool]]:
        found: list[tuple[str, bool]] = []
        for s in body:
            if isinstance(s, kir.Load):
                found.append((s.tensor, guarded))
            elif isinstance(s, kir.If):
                cond = kir.print_expr(s.cond)
                found += loads(s.body, guarded or "cat0_end" in cond)
        return found

    # inputs read only through pieces have no plain load; every piece load is guarded
    assert sorted(loads(k.body, False)) == [("in0", True), ("in1", True)]


def test_partition_keeps_one_iteration_space() -> None:
    # the piece x * 2 is also an output at its own shape: the cat is a group of its own (a
    # later round's), reading x * 2 from the first
    gm = run_passes(_graph(lambda x, y: (torch.cat((x * 2, y), 1), x * 2), torch.randn(3, 4),
                           torch.randn(3, 2)))  # CSE: one x * 2
    fused, names = partition(gm)
    ops = [[str(n.target) for n in getattr(fused, name).graph.nodes if n.op == "call_function"]
           for name in names]
    assert len(names) == 2 and not any(any("cat" in t for t in g) and len(g) > 1 for g in ops)


def test_slice_scatter_into_full_becomes_a_pad() -> None:
    def fn(x: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, ...]:
        into_full = torch.slice_scatter(torch.full([3, 8], 1.5), x, 1, 2, 6)
        into_input = torch.slice_scatter(base, x, 1, 2, 6)  # stays a scatter
        into_ints = torch.slice_scatter(torch.full([3, 8], 0, dtype=torch.int64), x.long(),
                                        1, -6, -2)
        return into_full, into_input, into_ints

    x, base = torch.randn(3, 4), torch.randn(3, 8)
    gm = pad_filled_scatters(_graph(fn, x, base))
    targets = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count("aten.constant_pad_nd.default") == 2
    assert targets.count("aten.slice_scatter.default") == 1 and "aten.full.default" not in targets
    pads = [n.args[1:] for n in gm.graph.nodes if "constant_pad" in str(n.target)]
    assert pads == [([2, 2], 1.5), ([2, 2], 0)]
    for got, want in zip(gm(x, base), fn(x, base)):
        assert torch.equal(got, want)


def test_interpreter_catches_a_piece_load_without_its_guard() -> None:
    a, b = torch.randn(4, 3), torch.randn(4, 6)
    ir = _fusion(lambda x, y: torch.cat((x, y.neg()), 1), a, b)
    out = torch.empty(4, 9)
    launch = cat_schedule.plan_launch(ir, [b, a], [out], "sm_90")
    k = lower_pointwise(ir, launch.signature, launch.params.block)
    run_kernel(k, [b, a, out], kir.kernel_args(k, launch.scalars), launch.grid)
    assert torch.equal(out, torch.cat((a, b.neg()), 1))

    def unguard(body: tuple[kir.Stmt, ...]) -> tuple[kir.Stmt, ...]:
        flat: list[kir.Stmt] = []
        for s in body:
            if isinstance(s, kir.If) and "cat0_end" in kir.print_expr(s.cond):
                flat += s.body  # the load now runs for every thread
            elif isinstance(s, kir.If):
                flat.append(kir.If(s.cond, unguard(s.body)))
            else:
                flat.append(s)
        return tuple(flat)

    broken = dataclasses.replace(k, body=unguard(k.body))
    with pytest.raises(InterpretError, match="out-of-bounds load of in0"):
        run_kernel(broken, [b, a, out], kir.kernel_args(k, launch.scalars), launch.grid)
