"""Fusion IR: builder typing rules, CSE, printer and verifier."""

from __future__ import annotations

import pytest

from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder, result_type
from nvfuse.fusion.ir import FusionIR, FusionIRError, Node, Output, TensorInput, verify_fusion
from nvfuse.fusion.prims import Prim


def test_half_is_computed_in_float32_and_rounded_on_store() -> None:
    b = Builder("g")
    x = b.load(DType.FLOAT16, 2)
    y = b.finish(b.prim(Prim.EXP, b.cast(x, DType.FLOAT32)), DType.FLOAT16)
    assert (y.dtype, y.eager) == (DType.FLOAT32, DType.FLOAT16)
    b.store(y, DType.FLOAT16, (0,))
    ir = b.finalize(("aten::exp",))
    assert str(ir) == (
        "fusion g(%in0: float16[r2]) {\n"
        "  %0 = load in0 : float16\n"
        "  %1 = cast %0 : float32\n"
        "  %2 = exp %1 : float32\n"
        "  out0 = store %2 : float16  (shape of in0)\n"
        "}")


def test_explicit_conversion_rounds_a_float32_kept_half() -> None:
    b = Builder("g")
    x = b.load(DType.FLOAT16, 1)
    y = b.finish(b.prim(Prim.EXP, b.cast(x, DType.FLOAT32)), DType.FLOAT16)
    z = b.convert(y, DType.FLOAT32)
    ops = [n.op for n in b.nodes]
    # exp, then round to half (cast f16), then back to float32
    assert ops[-2:] == [Prim.CAST, Prim.CAST]
    assert b.nodes[-2].dtype is DType.FLOAT16 and z.dtype is DType.FLOAT32


def test_identical_nodes_are_shared() -> None:
    b = Builder("g")
    x = b.load(DType.FLOAT32, 1)
    assert b.prim(Prim.EXP, x) == b.prim(Prim.EXP, x)
    assert b.const(2.0, DType.FLOAT32) == b.const(2.0, DType.FLOAT32)


def test_integer_literals_wrap_like_torch() -> None:
    b = Builder("g")
    assert b.nodes[b.const(300, DType.UINT8).index].attr == 44
    assert b.nodes[b.const(-1, DType.UINT8).index].attr == 255
    assert b.nodes[b.const(2.7, DType.INT32).index].attr == 2


def test_float32_literal_is_the_value_torch_would_store() -> None:
    b = Builder("g")
    literal = b.nodes[b.const(0.1, DType.FLOAT32).index].attr
    assert literal != 0.1 and abs(literal - 0.1) < 1e-8  # 0.1 rounded to float32


@pytest.mark.parametrize(("operands", "expected"), [
    ((DType.INT32, 2.5), DType.FLOAT32),
    ((DType.FLOAT16, DType.FLOAT32), DType.FLOAT32),
    ((DType.UINT8, DType.INT8), DType.INT16),
    ((DType.BOOL, 1), DType.INT64),
])
def test_result_type_follows_torch(operands: tuple, expected: DType) -> None:
    b = Builder("g")
    vals = [b.load(o, 1) if isinstance(o, DType) else o for o in operands]
    assert result_type(*vals) is expected


def test_zero_dim_tensor_promotes_like_a_scalar() -> None:
    b = Builder("g")
    x = b.load(DType.FLOAT16, 2)
    s = b.load(DType.FLOAT32, 0)
    assert result_type(x, s) is DType.FLOAT16


def _ir(nodes: tuple[Node, ...], inputs: tuple[TensorInput, ...] = (),
        outputs: tuple[Output, ...] = ()) -> FusionIR:
    return FusionIR("g", inputs, nodes, outputs)


def test_verifier_rejects_mixed_operands() -> None:
    inputs = (TensorInput("in0", DType.FLOAT32, 1), TensorInput("in1", DType.INT32, 1))
    nodes = (Node(Prim.LOAD, (), DType.FLOAT32, 0), Node(Prim.LOAD, (), DType.INT32, 1),
             Node(Prim.ADD, (0, 1), DType.FLOAT32))
    with pytest.raises(FusionIRError, match="operands differ"):
        verify_fusion(_ir(nodes, inputs))


def test_verifier_rejects_half_arithmetic_and_forward_refs() -> None:
    inputs = (TensorInput("in0", DType.FLOAT16, 1),)
    half_add = (Node(Prim.LOAD, (), DType.FLOAT16, 0), Node(Prim.ADD, (0, 0), DType.FLOAT16))
    with pytest.raises(FusionIRError, match="compute in float32"):
        verify_fusion(_ir(half_add, inputs))
    forward = (Node(Prim.NEG, (1,), DType.FLOAT32), Node(Prim.CONST, (), DType.FLOAT32, 1.0))
    with pytest.raises(FusionIRError, match="forward"):
        verify_fusion(_ir(forward))


def test_verifier_rejects_float_only_prim_on_ints() -> None:
    inputs = (TensorInput("in0", DType.INT32, 1),)
    nodes = (Node(Prim.LOAD, (), DType.INT32, 0), Node(Prim.SQRT, (0,), DType.INT32))
    with pytest.raises(FusionIRError, match="float-only"):
        verify_fusion(_ir(nodes, inputs))


def test_select_outputs_drops_dead_nodes_and_unused_inputs() -> None:
    from nvfuse.fusion.subset import select_outputs

    b = Builder("g")
    x = b.load(DType.FLOAT32, 2)
    y = b.load(DType.FLOAT32, 4)
    a = b.prim(Prim.SUB, x, b.prim(Prim.MUL, b.const(0.5, DType.FLOAT32), x))
    b.store(a, DType.FLOAT32, (0,))
    b.store(b.prim(Prim.ADD, y, a), DType.FLOAT32, (0, 1))
    ir = b.finalize()
    sub, inputs = select_outputs(ir, (0,))
    assert inputs == (0,)
    assert str(sub) == (
        "fusion g(%in0: float32[r2]) {\n"
        "  %0 = load in0 : float32\n"
        "  %1 = const 0.5 : float32\n"
        "  %2 = mul %1, %0 : float32\n"
        "  %3 = sub %0, %2 : float32\n"
        "  out0 = store %3 : float32  (shape of in0)\n"
        "}")
    sub, inputs = select_outputs(ir, (1,))
    assert inputs == (0, 1) and sub.outputs[0].shape_from == (0, 1)
