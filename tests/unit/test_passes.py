"""Graph IR passes: before/after node counts, the input graph left untouched, numerical equality
before/after on random (never zero) inputs, and the eager-semantics corner cases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.fx
from torch.fx.experimental.proxy_tensor import make_fx

from nvfuse.errors import NvfuseError
from nvfuse.graph.passes import (
    MAX_FOLD_NUMEL,
    PASSES,
    annotate,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_constants,
    run_passes,
    simplify_peephole,
)

aten = torch.ops.aten
Pass = Callable[[torch.fx.GraphModule], torch.fx.GraphModule]


def _rand(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    t = (torch.rand(*shape) + 0.5) * (torch.randint(0, 2, shape) * 2 - 1)
    return t.to(dtype)


def _traced(fn: Callable[..., Any], *inputs: torch.Tensor) -> torch.fx.GraphModule:
    return annotate(make_fx(fn)(*inputs), inputs)


def _count(gm: torch.fx.GraphModule, target: Any) -> int:
    if target in ("get_attr", "placeholder"):
        return sum(n.op == target for n in gm.graph.nodes)
    return sum(n.target is target for n in gm.graph.nodes)


def _snapshot(gm: torch.fx.GraphModule) -> tuple[str, list[Any]]:
    return str(gm.graph), [(n.name, n.meta.get("val")) for n in gm.graph.nodes]


def _apply(graph_pass: Pass, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Run a pass, checking it returns a new module and leaves its input as it was."""
    before = _snapshot(gm)
    result = graph_pass(gm)
    assert result is not gm and result.graph is not gm.graph
    assert _snapshot(gm) == before
    result.graph.lint()
    return result


def _same_outputs(a: torch.fx.GraphModule, b: torch.fx.GraphModule, *inputs: Any) -> None:
    out_a, out_b = a(*inputs), b(*inputs)
    flat_a, _ = torch.utils._pytree.tree_flatten(out_a)
    flat_b, _ = torch.utils._pytree.tree_flatten(out_b)
    assert len(flat_a) == len(flat_b)
    for x, y in zip(flat_a, flat_b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


# -- annotate ---------------------------------------------------------------------------------
def test_annotate_fills_every_node() -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x + y).to(torch.float16), x.sum(0)

    gm = make_fx(fn)(_rand(3, 4), _rand(4))
    with gm.graph.inserting_before(list(gm.graph.nodes)[-1]):
        gm.graph.call_function(aten.sym_size.int, (next(iter(gm.graph.nodes)), 0))
    before = _snapshot(gm)
    annotated = annotate(gm, (_rand(3, 4), _rand(4)))
    assert _snapshot(gm) == before
    vals = {n.name: n.meta["val"] for n in annotated.graph.nodes}
    assert isinstance(vals["_to_copy"], torch._subclasses.FakeTensor)
    assert vals["_to_copy"].dtype == torch.float16 and vals["_to_copy"].shape == (3, 4)
    assert vals["sym_size_int"] == 3 and isinstance(vals["sym_size_int"], int)


def test_annotate_names_the_failing_node() -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(aten.mm.default, (x, x)))
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)
    with pytest.raises(NvfuseError, match="annotate: node mm_default"):
        annotate(gm, (_rand(2, 3),))


# -- dead code --------------------------------------------------------------------------------
def test_eliminate_dead_code_keeps_side_effects() -> None:
    def fn(x: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        torch.relu(x)          # dead: removed
        torch.rand_like(x)     # dead but RNG: kept (advances the generator)
        buf.add_(1)            # in-place on an input: kept
        return x * 2

    x, buf = _rand(3), _rand(3)
    gm = _traced(fn, x, buf)
    assert _count(gm, aten.relu.default) == 1
    result = _apply(eliminate_dead_code, gm)
    assert _count(result, aten.relu.default) == 0
    assert _count(result, aten.rand_like.default) == 1
    assert _count(result, aten.add_.Tensor) == 1
    assert _count(result, "placeholder") == 2
    b1, b2 = buf.clone(), buf.clone()
    torch.testing.assert_close(result(x, b1), gm(x, b2))
    torch.testing.assert_close(b1, b2)


# -- common subexpressions --------------------------------------------------------------------
def test_cse_merges_pure_duplicates() -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(x + y) * torch.exp(x + y) + (x + y)

    x, y = _rand(4, 5), _rand(5)
    gm = _traced(fn, x, y)
    assert _count(gm, aten.add.Tensor) == 4 and _count(gm, aten.exp.default) == 2
    result = _apply(eliminate_dead_code, _apply(eliminate_common_subexpressions, gm))
    assert _count(result, aten.add.Tensor) == 2 and _count(result, aten.exp.default) == 1
    _same_outputs(gm, result, _rand(4, 5), _rand(5))


def test_cse_keeps_scalar_types_rng_mutation_and_distinct_outputs() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, b = x + 1, x + 1.0             # int vs float scalar: different dtypes
        r1, r2 = torch.rand_like(a.float()), torch.rand_like(a.float())   # RNG never merged
        before = x * 3
        x.add_(1)
        after = x * 3                     # reads the mutated x
        kept = x * 7
        written = x * 7                   # merging would let this write reach `kept`
        written.add_(1)
        return a, b, r1, r2, before, after, x * 5, x * 5, kept, written

    x = torch.randint(1, 9, (4,))
    gm = _traced(fn, x.clone())
    result = _apply(eliminate_common_subexpressions, gm)
    assert _count(result, aten.add.Tensor) == 2
    assert _count(result, aten.rand_like.default) == 2
    assert _count(result, aten.mul.Tensor) == 6   # before/after, both x * 5 and both x * 7
    out = result(x.clone())
    assert out[0].dtype == torch.int64 and out[1].dtype == torch.float32
    assert not torch.equal(out[4], out[5])
    assert out[6] is not out[7]
    gm_out = gm(x.clone())
    for i in (0, 1, 4, 5, 6, 7, 8, 9):
        torch.testing.assert_close(out[i], gm_out[i])


# -- constant folding -------------------------------------------------------------------------
def _constant_graph() -> tuple[torch.fx.GraphModule, torch.nn.Module]:
    """out = x * exp(c * 2) + w * 2 + rand_like(c), c a lifted constant and w a parameter."""
    root = torch.nn.Module()
    root.register_buffer("_tensor_constant0", torch.rand(4) + 0.5)
    root.weight = torch.nn.Parameter(torch.rand(4) + 0.5)
    root.register_buffer("_tensor_constant1", torch.ones(MAX_FOLD_NUMEL + 1))
    g = torch.fx.Graph()
    x = g.placeholder("x")
    c, w, big = g.get_attr("_tensor_constant0"), g.get_attr("weight"), g.get_attr(
        "_tensor_constant1")
    folded = g.call_function(aten.exp.default, (g.call_function(aten.mul.Tensor, (c, 2)),))
    weighted = g.call_function(aten.mul.Tensor, (w, 2))
    noise = g.call_function(aten.rand_like.default, (c,))
    big_sum = g.call_function(aten.sum.default, (g.call_function(aten.mul.Tensor, (big, 3)),))
    y = g.call_function(aten.mul.Tensor, (x, folded))
    y = g.call_function(aten.add.Tensor, (y, weighted))
    y = g.call_function(aten.add.Tensor, (y, g.call_function(aten.mul.Tensor, (noise, 0.0))))
    y = g.call_function(aten.add.Tensor, (y, big_sum))
    returned = g.call_function(aten.neg.default, (c,))   # a constant expression that is returned
    g.output((y, returned))
    gm = torch.fx.GraphModule(root, g)
    return annotate(gm, (_rand(4),)), root


def test_fold_constants() -> None:
    gm, root = _constant_graph()
    result = _apply(fold_constants, gm)
    # exp(c * 2) became one new constant; the parameter, RNG, big and returned ops stay.
    assert _count(result, aten.exp.default) == 0
    assert _count(result, aten.mul.Tensor) == _count(gm, aten.mul.Tensor) - 1
    assert _count(result, aten.rand_like.default) == 1
    assert _count(result, aten.neg.default) == 1
    assert _count(result, aten.sum.default) == 1
    assert result.weight is root.weight           # weights are shared, never copied
    new = [n for n in result.graph.nodes if n.op == "get_attr" and n.target not in
           ("_tensor_constant0", "_tensor_constant1", "weight")]
    assert len(new) == 1 and new[0].meta["val"].shape == (4,)
    folded_value = getattr(result, new[0].target)
    torch.testing.assert_close(folded_value, torch.exp(root._tensor_constant0 * 2))
    assert not hasattr(gm, new[0].target)          # the input module gained nothing
    x = _rand(4)
    # rand_like * 0.0 contributes zeros, so the outputs are deterministic.
    _same_outputs(gm, result, x)
    assert result(x)[1] is not result(x)[1]        # a returned value is still fresh each call


def test_fold_constants_skips_written_constants() -> None:
    root = torch.nn.Module()
    root.register_buffer("_tensor_constant0", torch.rand(3) + 0.5)
    g = torch.fx.Graph()
    x = g.placeholder("x")
    c = g.get_attr("_tensor_constant0")
    doubled = g.call_function(aten.mul.Tensor, (c, 2))
    g.call_function(aten.add_.Tensor, (c, x))
    g.output(g.call_function(aten.add.Tensor, (x, doubled)))
    gm = annotate(torch.fx.GraphModule(root, g), (_rand(3),))
    assert str(_apply(fold_constants, gm).graph) == str(gm.graph)


# -- peepholes --------------------------------------------------------------------------------
def test_peephole_double_transpose_and_identities() -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = (x + y).t().t()
        b = (x - y).transpose(0, 1).transpose(1, 0)
        c = torch.exp(x) * 1
        d = torch.sin(x) / 1
        e = torch.cos(x) - 0
        return a * b + c + d + e

    x, y = _rand(3, 4), _rand(3, 4)
    gm = _traced(fn, x, y)
    result = _apply(eliminate_dead_code, _apply(simplify_peephole, gm))
    assert _count(result, aten.t.default) == 0 and _count(result, aten.transpose.int) == 0
    assert _count(result, aten.div.Tensor) == 0 and _count(result, aten.sub.Tensor) == 1
    assert _count(result, aten.mul.Tensor) == 1
    _same_outputs(gm, result, _rand(3, 4), _rand(3, 4))


def test_peephole_add_zero_only_when_exact() -> None:
    def fn(x: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.neg(x) + 0, (i * 2) + 0

    x = torch.tensor([0.0, 1.5, -2.5])       # neg(0.0) is -0.0; -0.0 + 0 is +0.0 in eager
    i = torch.tensor([3, -4, 5])
    gm = _traced(fn, x, i)
    result = _apply(simplify_peephole, gm)
    assert _count(result, aten.add.Tensor) == 1   # the float one stays; the int one is gone
    out = result(x, i)
    assert torch.signbit(out[0][0]).item() is False
    assert torch.signbit(gm(x, i)[0][0]).item() is False
    _same_outputs(gm, result, x, i)


def test_peephole_keeps_promoting_identities() -> None:
    def fn(i: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (i * 2) * 1.0 + (h * 2) * torch.ones(()) + (i * 2) / 1   # each promotes

    i, h = torch.randint(1, 5, (3,)), _rand(3, dtype=torch.float16)
    gm = _traced(fn, i, h)
    result = _apply(simplify_peephole, gm)
    assert _count(result, aten.mul.Tensor) == _count(gm, aten.mul.Tensor)
    assert _count(result, aten.div.Tensor) == 1
    _same_outputs(gm, result, i, h)


def test_peephole_never_returns_an_input_alias() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.exp(x)
        return x * 1, y + y.to(torch.float32) * 1

    x = _rand(3)
    gm = _traced(fn, x)
    result = _apply(simplify_peephole, gm)
    out = result(x)
    assert out[0] is not x and out[0].data_ptr() != x.data_ptr()   # eager's x * 1 is fresh
    assert _count(result, aten._to_copy.default) == 0   # the internal cast and * 1 did go
    _same_outputs(gm, result, x)


def test_peephole_casts() -> None:
    def fn(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lossless = h.to(torch.float32).to(torch.float16) * 2      # f16 -> f32 -> f16: gone
        lossy = x.to(torch.float16).to(torch.float32) * 2         # f32 -> f16 -> f32: kept
        return lossless, lossy

    x, h = _rand(5) / 3, (_rand(5) / 3).half()
    gm = _traced(fn, x, h)
    assert _count(gm, aten._to_copy.default) == 4
    result = _apply(eliminate_dead_code, _apply(simplify_peephole, gm))
    assert _count(result, aten._to_copy.default) == 2
    _same_outputs(gm, result, x, h)


# -- the pipeline -----------------------------------------------------------------------------
def test_run_passes() -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dead = torch.tanh(y)  # noqa: F841
        a = (x * y).t().t() * 1
        return torch.relu(a) + torch.relu(x * y)

    x, y = _rand(4, 4), _rand(4, 4)
    gm = _traced(fn, x, y)
    before = _snapshot(gm)
    result = run_passes(gm)
    assert _snapshot(gm) == before
    assert len(PASSES) >= 4
    assert _count(result, aten.tanh.default) == 0
    assert _count(result, aten.relu.default) == 1 and _count(result, aten.mul.Tensor) == 1
    assert _count(result, aten.t.default) == 0
    assert all("val" in n.meta for n in result.graph.nodes)
    _same_outputs(gm, result, _rand(4, 4), _rand(4, 4))


def test_training_norms_and_dropout() -> None:
    # Built by hand: make_fx would decompose batch_norm.
    g = torch.fx.Graph()
    x, mean, var = g.placeholder("x"), g.placeholder("mean"), g.placeholder("var")
    # Unused, but a training-mode norm updates the running stats: kept.
    g.call_function(aten.batch_norm.default, (x, None, None, mean, var, True, 0.1, 1e-5, False))
    evaluated = g.call_function(aten.batch_norm.default,
                                (x, None, None, mean, var, False, 0.1, 1e-5, False))
    g.call_function(aten.batch_norm.default,   # unused eval-mode norm: pure, removed
                    (x, None, None, mean, var, False, 0.1, 1e-5, False))
    doubled = g.call_function(aten.mul.Tensor, (x, 2))
    dropped = g.call_function(aten.dropout.default, (doubled, 0.5, False))  # identity: removed
    g.output(g.call_function(aten.add.Tensor, (dropped, evaluated)))
    inputs = (_rand(4, 3), torch.zeros(3), torch.ones(3))
    gm = annotate(torch.fx.GraphModule(torch.nn.Module(), g), inputs)
    result = run_passes(gm)
    # the training-mode norm stays; the eval-mode one is decomposed into elementwise ops
    assert _count(result, aten.batch_norm.default) == 1
    assert _count(result, aten.rsqrt.default) == 1
    assert _count(result, aten.dropout.default) == 0
    x_, mean_, var_ = inputs
    m1, v1, m2, v2 = mean_.clone(), var_.clone(), mean_.clone(), var_.clone()
    torch.testing.assert_close(result(x_, m1, v1), gm(x_, m2, v2))
    torch.testing.assert_close((m1, v1), (m2, v2))
    assert not torch.equal(m1, mean_)


def test_expand_feeding_a_reduction_is_kept(interpret: None) -> None:
    """The broadcast-expand peephole drops an expand only before pointwise ops: a reduction
    over the expanded dim needs it (issue 10 item 6), a pointwise consumer does not."""
    import nvfuse

    x, y = torch.randn(3), torch.randn(4, 3)
    for fn in (lambda x, y: x.expand(4, -1).sum(-1) + y.sum(-1),
               lambda x, y: x.expand(4, -1).sum(0) * y[0],
               lambda x, y: x.expand(4, -1) * y):
        fm = nvfuse.fuse(fn, (x, y))
        torch.testing.assert_close(fm(x, y), fn(x, y))
