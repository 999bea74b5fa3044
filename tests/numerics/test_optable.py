"""Every numerics case x dtype through the op table alone: trace the case (make_fx with the core
aten decompositions, and torch.jit.trace through nvfuse's TorchScript frontend), build one fusion
IR from the whole graph with `lower_op`, evaluate it with the reference fusion-IR evaluator and
compare with eager."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from cases import CASES, OpCase, compare
from torch import fx
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from nvfuse import dtypes
from nvfuse.dtypes import DType
from nvfuse.fusion.builder import Builder, Unsupported, Val
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion import optable
from nvfuse.interpret.fusion_eval import evaluate

PARAMS = [pytest.param(case, dtype, id=f"{case.name}-{str(dtype).split('.')[-1]}")
          for case in CASES for dtype in case.dtypes]
_DECOMP = core_aten_decompositions()
# View ops the decompositions emit (lerp, logaddexp): values pass through unchanged, and the
# output's shape here is the broadcast of every input anyway.
_PASSTHROUGH = {torch.ops.aten.expand.default}


def _seed(case: OpCase, dtype: torch.dtype) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{case.name}/{dtype}".encode()))


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if dtype is torch.bfloat16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _meta(node: fx.Node) -> torch.Tensor:
    val = node.meta.get("val")
    assert isinstance(val, torch.Tensor), f"{node.name}: no tensor metadata"
    return val


def _strip_same_device(node: fx.Node, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the build step does: a `device` equal to the input's own is no device change."""
    device = kwargs.get("device")
    inputs = node.all_input_nodes
    if device is not None and inputs and _meta(inputs[0]).device == torch.device(device):
        kwargs = {k: v for k, v in kwargs.items() if k != "device"}
    return kwargs


def build_ir(gm: fx.GraphModule, tensors: dict[fx.Node, torch.Tensor]) -> FusionIR:
    """The whole graph as one fusion; `tensors` gets each input's value, in input order."""
    b = Builder("case")
    env: dict[fx.Node, Val] = {}
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            val = _meta(node) if node.op == "placeholder" else getattr(gm, node.target)
            tensors[node] = val
            env[node] = b.load(dtypes.from_torch(val.dtype), val.dim())
        elif node.op == "call_function" and node.target in _PASSTHROUGH:
            env[node] = env[node.args[0]]
        elif node.op == "call_function":
            meta = _meta(node)
            out = dtypes.from_torch(meta.dtype)
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = _strip_same_device(node, dict(fx.node.map_arg(node.kwargs, lambda n: env[n])))
            result = optable.lower_op(b, node.target, tuple(args), kwargs, out)
            env[node] = dataclasses.replace(b.finish(result, out), zero_dim=meta.dim() == 0)
        elif node.op == "output":
            (result,) = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
            b.store(env[result], dtypes.from_torch(_meta(result).dtype),
                    tuple(range(len(b.inputs))))
    return b.finalize()


def _run(gm: fx.GraphModule, inputs: tuple) -> torch.Tensor:
    tensors: dict[fx.Node, torch.Tensor] = {}
    ir = build_ir(gm, tensors)
    placeholders = iter(inputs)
    arrays = [_to_numpy(next(placeholders) if n.op == "placeholder" else t)
              for n, t in tensors.items()]
    (out,) = evaluate(ir, arrays)
    return _from_numpy(out, ir.outputs[0].dtype.torch)


class _RecordMeta(fx.Interpreter):
    """Runs a graph on real inputs and records each value as meta['val'] (the frontend's
    graphs carry no metadata; dtypes and ranks are all the op table needs)."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["val"] = result
        return result


@pytest.mark.parametrize(("case", "dtype"), PARAMS)
def test_make_fx(case: OpCase, dtype: torch.dtype) -> None:
    inputs = case.make_inputs(dtype, _seed(case, dtype))
    expected = case.expected(*inputs)
    gm = make_fx(case.fn, decomposition_table=_DECOMP)(*inputs)
    compare(_run(gm, inputs), expected, dtype, case.tolerance(dtype))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("case", "dtype"), PARAMS)
def test_jit_trace(case: OpCase, dtype: torch.dtype) -> None:
    from nvfuse.frontend.torchscript import graph_module_from_script

    inputs = case.make_inputs(dtype, _seed(case, dtype))
    expected = case.expected(*inputs)
    traced = torch.jit.trace(case.fn, inputs, check_trace=False)
    gm = graph_module_from_script(traced, inputs)
    _RecordMeta(gm).run(*inputs)
    compare(_run(gm, inputs), expected, dtype, case.tolerance(dtype))


def test_every_listed_op_has_a_lowering() -> None:
    aten = torch.ops.aten
    names = ["add.Tensor", "sub.Tensor", "rsub.Scalar", "mul.Tensor", "div.Tensor_mode",
             "remainder.Scalar", "fmod.Tensor", "pow.Scalar", "sgn.default", "logit.default",
             "celu.default", "selu.default", "hardswish.default", "clamp_min.Tensor",
             "round.decimals", "where.ScalarOther", "masked_fill.Tensor", "nan_to_num.default",
             "lerp.Tensor", "addcdiv.default", "xlogy.Scalar_Self", "sinc.default",
             "_to_copy.default", "type_as.default", "full_like.default", "__rshift__.Scalar"]
    for name in names:
        op, overload = name.rsplit(".", 1)
        assert optable.has_lowering(getattr(getattr(aten, op), overload)), name
    assert "aten.gelu.default" in optable.supported_ops()


def _lower_on(target: object, args: tuple, kwargs: dict, out: DType) -> None:
    b = Builder("t")
    x = b.load(DType.FLOAT32, 2)
    args = tuple(x if a == "x" else a for a in args)
    optable.lower_op(b, target, args, kwargs, out)


@pytest.mark.parametrize(("target", "args", "kwargs"), [
    (torch.ops.aten.add_.Tensor, ("x", "x"), {}),                       # in-place
    (torch.ops.aten.add.out, ("x", "x"), {}),                            # out=
    (torch.ops.aten.add.Tensor, ("x", 1j), {}),                          # complex scalar
    (torch.ops.aten._to_copy.default, ("x",), {"device": "cuda:1"}),     # device change
    (torch.ops.aten._to_copy.default, ("x",), {"layout": torch.sparse_coo}),
    (torch.ops.aten.clone.default, ("x",), {"memory_format": torch.channels_last}),
    (torch.ops.aten.gelu.default, ("x",), {"approximate": "erf"}),
    (torch.ops.aten.full.default, ([3, 5], 1.0), {}),                   # shape from nowhere
    (torch.ops.aten.expand.default, ("x", [3, 5]), {}),                  # not elementwise
])
def test_unsupported_arguments_raise(target: object, args: tuple, kwargs: dict) -> None:
    with pytest.raises(Unsupported):
        _lower_on(target, args, kwargs, DType.FLOAT32)


def test_float_only_op_rejects_integer_result() -> None:
    b = Builder("t")
    x = b.load(DType.INT32, 1)
    with pytest.raises(Unsupported):
        optable.lower_op(b, torch.ops.aten.gelu.default, (x,), {}, DType.INT32)
