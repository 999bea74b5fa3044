"""Arg reductions stage by stage: the REDUCE_ARGMAX / REDUCE_ARGMIN prims in the fusion IR
(verifier, reference evaluator's flat index over several dims), the frontends' max.dim
decomposition (FX and TorchScript), the partitioner's pairing of max.dim's halves (and its
refusal when pairing would make a cycle), and the kernel IR of max.dim: one pair reduction for
both outputs, no separate max."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nvfuse
from nvfuse.dtypes import DType
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.frontend.torchscript import graph_module_from_script
from nvfuse.fusion.builder import Builder
from nvfuse.fusion.ir import FusionIR, FusionIRError, Node, OutputShape, verify_fusion
from nvfuse.fusion.prims import Prim
from nvfuse.interpret.fusion_eval import evaluate
from nvfuse.lower import kir
from nvfuse.lower.verify import verify_kernel

F32, I64 = DType.FLOAT32, DType.INT64
aten = torch.ops.aten


def _arg_ir(prim: Prim, k: int) -> FusionIR:
    b = Builder("g")
    x = b.load(F32, 3)
    b.store(b.reduce(prim, x, k), I64, (), shape=OutputShape.ROW_DROPPED, reduced_from=(0,))
    return b.finalize()


@pytest.mark.parametrize("prim", [Prim.REDUCE_ARGMAX, Prim.REDUCE_ARGMIN], ids=repr)
def test_reference_is_the_flat_index_over_the_reduced_dims(prim: Prim) -> None:
    ir = _arg_ir(prim, 2)
    assert f"{prim.value} %0 : int64" in str(ir)
    x = np.random.default_rng(0).integers(-2, 3, (4, 5, 6)).astype(np.float32)
    x[1, 2, 3] = x[1, 4, 0] = np.nan
    (out,) = evaluate(ir, [x])
    t = torch.from_numpy(x).flatten(1)
    expected = t.argmax(-1) if prim is Prim.REDUCE_ARGMAX else t.argmin(-1)
    assert out.tolist() == expected.tolist()
    assert out[1] == 2 * 6 + 3  # the first NaN, row-major


def test_verifier_wants_int64_indices_of_an_accumulator_dtype() -> None:
    b = Builder("h")
    x = b.load(F32, 2)
    bad = (b.nodes[0], Node(Prim.REDUCE_ARGMAX, (x.index,), F32))
    with pytest.raises(FusionIRError, match="int64 indices"):
        verify_fusion(FusionIR("h", tuple(b.inputs), bad, (), (), 1))


def _targets(gm: torch.fx.GraphModule) -> list[object]:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_frontends_split_max_dim_into_amax_and_argmax() -> None:
    x = torch.randn(4, 8)
    fn = lambda x: (torch.max(x, -1), torch.min(x, 0, keepdim=True))
    targets = _targets(trace_to_aten(fn, (x,)))
    assert aten.max.dim not in targets and aten.min.dim not in targets
    assert {aten.amax.default, aten.argmax.default, aten.amin.default,
            aten.argmin.default} <= set(targets)
    ts = graph_module_from_script(torch.jit.trace(lambda x: torch.max(x * 2, -1), (x,)), (x,))
    assert aten.max.dim not in _targets(ts) and aten.argmax.default in _targets(ts)
    bools = x > 0  # eager has no bool argmax: indexed through a uint8 copy
    targets = _targets(trace_to_aten(lambda x: torch.max(x, -1), (bools,)))
    assert aten._to_copy.default in targets and aten.argmax.default in targets


def test_pairing_never_makes_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    nvfuse.config.reload()

    def fn(x: torch.Tensor) -> torch.Tensor:
        index = x.argmax(-1, keepdim=True)
        through_eager = torch.cumsum(index.float(), 0)  # not fusible
        return x.amax(-1, keepdim=True) + through_eager

    x = torch.randn(5, 9)
    fm = nvfuse.fuse(fn, (x,))
    torch.testing.assert_close(fm(x), fn(x))
    assert not any("aten::amax" in g.ops and "aten::argmax" in g.ops for g in fm.fusion_groups)


@pytest.mark.parametrize(("width", "scope"), [(100, "block"), (50, "warp")])  # warp rows: C <= 64
def test_max_dim_is_one_pair_reduction(monkeypatch: pytest.MonkeyPatch, width: int,
                                       scope: str) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    nvfuse.config.reload()
    x = torch.randn(6, width)
    fm = nvfuse.fuse(lambda x: torch.min(x + 1, -1), (x,))
    fm(x)
    (kernel,) = fm.kernels
    body = kernel.kernel_ir.body
    verify_kernel(kernel.kernel_ir)
    assert sum(isinstance(s, kir.ArgReduce) for s in body) == 1
    assert not any(isinstance(s, kir.BlockReduce) for s in body)
    assert f"{scope}_argmin" in str(kernel.kernel_ir)
