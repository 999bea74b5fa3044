"""Training cross-entropy through nvfuse's own ops (nvfuse/frontend/cross_entropy.py,
nvfuse/graph/cross_entropy_ops.py): through torch.compile's AOTAutograd path with the
interpreter (strict, outputs poisoned), float32/float16/bfloat16/float64 logits, mean and sum,
ignore_index hit on some, all or no rows, special logits; the forward saves 2N statistics and
no [N, C] tensor, the backward is one pass over the logits; the gradient is bit for bit the
one of the path that saves the log-probabilities, and eager's within tolerance; the ops run
eagerly give eager's loss; which calls are rewritten; every kernel compiled by NVRTC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from cases import compare
from test_cross_entropy import TOL, _targets, special_logits
from test_reductions import _make

import nvfuse
from nvfuse import api, config
from nvfuse.frontend import cross_entropy
from nvfuse.frontend.cross_entropy import training_cross_entropy
from nvfuse.graph import cross_entropy_ops  # noqa: F401  (torch.ops.nvfuse.*)
from nvfuse.runtime import executor
from nvrtc_batch import compile_all

aten = torch.ops.aten
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
_generated: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)
    monkeypatch.setattr(cross_entropy, "MIN_LOGITS_BYTES", 0)  # small logits take it too


class _Step:
    """One training step through nvfuse's AOTAutograd backend, its graphs kept."""

    def __init__(self, fn: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor,
                 grad: torch.Tensor) -> None:
        from functorch.compile import make_boxed_func  # type: ignore[import-untyped]

        self.fused: dict[str, nvfuse.FusedModule] = {}

        def compiler(kind: str) -> Callable[..., Any]:
            def compile_graph(gm: torch.fx.GraphModule, example: list[torch.Tensor]) -> Any:
                fused = api.FusedModule(gm, list(example), trace_now=False,
                                        compile_fallback=False)
                self.fused[kind] = fused
                return make_boxed_func(fused)
            return compile_graph

        torch._dynamo.reset()
        xf = x.clone().requires_grad_()
        f = torch.compile(fn, backend=api.aot_backend(compiler("forward"), compiler("backward")))
        self.loss = f(xf, t)
        (self.grad,) = torch.autograd.grad(self.loss, [xf], grad)
        for fm in self.fused.values():
            for k in fm.kernels:
                _generated.setdefault(k.name, k.source)

    def graph(self, kind: str) -> torch.fx.Graph:
        return self.fused[kind]._latest.gm.graph  # type: ignore[union-attr]

    def outputs(self, kind: str) -> list[torch.Size]:
        """The shapes of the tensors the graph computes and returns (not its inputs)."""
        (out,) = [n for n in self.graph(kind).nodes if n.op == "output"]
        return [a.meta["val"].shape for a in out.args[0]
                if isinstance(a, torch.fx.Node) and a.op != "placeholder"
                and isinstance(a.meta.get("val"), torch.Tensor)]


def _logits(n: int, c: int, dtype: torch.dtype, label: str) -> torch.Tensor:
    x = _make((n, c), dtype, label)
    x[3, :5] = torch.tensor([80.0, -80.0, 0.0, -0.0, 1e-3], dtype=dtype)  # exp under/overflow
    return x


@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore", ["some", "all", "none"])
def test_training_saves_statistics_not_log_probabilities(
        monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, reduction: str, ignore: str) -> None:
    n, c = 40, 97
    x = _logits(n, c, dtype, f"xent train {dtype}")
    t = _targets(n, c, None if ignore == "none" else -100, 11)
    if ignore == "all":
        t[:] = -100
    grad = torch.tensor(1.75, dtype=dtype)
    fn = lambda x, t: F.cross_entropy(x, t, reduction=reduction)
    step = _Step(fn, x, t, grad)
    # the forward computes no [N, C] result but inside its row kernel, and saves no [N, C]
    assert torch.Size([n, c]) not in step.outputs("forward")
    assert torch.Size([n, 1]) in step.outputs("forward")  # the row statistics
    backward = {node.target for node in step.graph("backward").nodes}
    assert aten.nll_loss_backward.default not in backward and aten.scatter_.src in backward
    assert not any("nvfuse" in str(target) for target in backward)  # the op was rewritten

    # the same step through the path that saves the log-probabilities: the same gradient, bit
    # for bit (sign of zero included); its loss is eager nll_loss's sum over the rows, in
    # another order
    monkeypatch.setattr(api, "training_cross_entropy", lambda gm: gm)
    saved = _Step(fn, x, t, grad)
    assert torch.Size([n, c]) in saved.outputs("forward")
    assert torch.equal(step.grad, saved.grad)
    assert torch.equal(step.grad.signbit(), saved.grad.signbit())

    xe = x.clone().requires_grad_()
    want = F.cross_entropy(xe, t, reduction=reduction)
    (want_grad,) = torch.autograd.grad(want, [xe], grad)
    compare(step.loss.detach(), want.detach(), dtype, TOL[dtype])
    compare(step.grad, want_grad, dtype, TOL[dtype])


@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_special_logits(dtype: torch.dtype) -> None:
    """An inf logit at the target and elsewhere, a NaN row, a row of large equal values."""
    x, t = special_logits(dtype, "special train")
    for rows in (slice(None), [1, 3, 4, 5]):  # with the NaN and inf rows, and without
        xs, ts = x[rows].contiguous(), t[rows].contiguous()
        step = _Step(lambda x, t: F.cross_entropy(x, t), xs, ts, torch.tensor(1.0, dtype=dtype))
        xe = xs.clone().requires_grad_()
        want = F.cross_entropy(xe, ts)
        (want_grad,) = torch.autograd.grad(want, [xe])
        compare(step.loss.detach(), want.detach(), dtype, TOL[dtype])
        compare(step.grad, want_grad, dtype, TOL[dtype])


def test_long_rows() -> None:
    """Rows longer than a block (the looped row schedule) and a class count that is no
    multiple of a vector."""
    x = _make((5, 5001), bf16, "long train")
    t = torch.tensor([5000, 0, 2500, -100, 7])
    step = _Step(lambda x, t: F.cross_entropy(x, t), x, t, torch.tensor(0.5, dtype=bf16))
    assert torch.Size([5, 5001]) not in step.outputs("forward")
    xe = x.clone().requires_grad_()
    (want_grad,) = torch.autograd.grad(F.cross_entropy(xe, t), [xe], torch.tensor(0.5, dtype=bf16))
    compare(step.grad, want_grad, bf16, TOL[bf16])


@pytest.mark.parametrize("dtype", [f32, bf16, f64], ids=str)
@pytest.mark.parametrize("reduction", [1, 2])
def test_ops_run_eagerly_give_eagers_results(dtype: torch.dtype, reduction: int) -> None:
    """Without nvfuse (a graph that falls back runs them as they are): the loss and total
    weight are eager's own, bit for bit; the gradient eager's within tolerance (the backward
    recomputes the log-probabilities from the statistics)."""
    x = _logits(12, 33, dtype, f"eager ops {dtype}")
    t = _targets(12, 33, -100, 5)
    xa, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss, total, m, ls = torch.ops.nvfuse.cross_entropy(xa, t, -100, reduction)
    want, want_total = aten.nll_loss_forward(F.log_softmax(xe, 1), t, None, reduction, -100)
    assert torch.equal(loss, want) and torch.equal(total, want_total)
    compute = f64 if dtype is f64 else f32
    assert m.dtype == ls.dtype == compute and m.shape == ls.shape == (12, 1)
    (g,) = torch.autograd.grad(loss, [xa], torch.tensor(2.0, dtype=dtype))
    (want_g,) = torch.autograd.grad(want, [xe], torch.tensor(2.0, dtype=dtype))
    compare(g, want_g, dtype, TOL[dtype])


# -- which calls are rewritten -----------------------------------------------------------------
def _rewritten(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> bool:
    """Whether dynamo's graph of `fn` calls nvfuse's op after `training_cross_entropy`; the
    rewritten graph still gives fn's result."""
    found: list[bool] = []

    def backend(gm: torch.fx.GraphModule, example: list[torch.Tensor]) -> Any:
        gm = training_cross_entropy(gm)
        found.append(any(n.target is torch.ops.nvfuse.cross_entropy.default
                         for n in gm.graph.nodes))
        return gm.forward

    torch._dynamo.reset()
    got = torch.compile(fn, backend=backend)(*inputs)
    compare(got.detach(), fn(*inputs).detach(), inputs[0].dtype)
    return any(found)


def test_which_calls_are_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _make((8, 11), f32, "which").requires_grad_()
    t = _targets(8, 11, None, 2)
    w = torch.rand(11) + 0.5
    assert _rewritten(lambda x, t: F.cross_entropy(x, t), x, t)
    assert _rewritten(lambda x, t: F.cross_entropy(x, t, ignore_index=3, reduction="sum"), x, t)
    assert _rewritten(lambda x, t: F.nll_loss(F.log_softmax(x, -1), t), x, t)
    assert _rewritten(lambda x, t: F.nll_loss(torch.log_softmax(x, 1), t), x, t)
    assert _rewritten(lambda x, t: F.nll_loss(x.log_softmax(1), t), x, t)
    assert _rewritten(lambda x, t: F.cross_entropy(x * 2, t) + 1, x, t)
    # left alone: what the ops do not compute, or no gradient (the inference rewrite's)
    assert not _rewritten(lambda x, t: F.cross_entropy(x, t, w), x, t)
    assert not _rewritten(lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1), x, t)
    assert not _rewritten(lambda x, t: F.cross_entropy(x, t, reduction="none").sum(), x, t)
    assert not _rewritten(lambda x, t: F.cross_entropy(x.detach(), t), x, t)
    square, t9 = _make((9, 9), f32, "square").requires_grad_(), _targets(9, 9, None, 3)
    assert not _rewritten(lambda x, t: F.cross_entropy(x.t(), t), square, t9)  # strided
    assert not _rewritten(lambda x, t: F.cross_entropy(x.view(2, 4, 11).transpose(1, 2),
                                                       t.view(2, 4)), x, t)  # [N, C, L]
    assert not _rewritten(lambda x, t: F.nll_loss(F.log_softmax(x, 0), t), x, t)
    assert not _rewritten(lambda x, t: F.nll_loss(F.log_softmax(x, 1, dtype=f64), t), x, t)

    monkeypatch.setattr(cross_entropy, "MIN_LOGITS_BYTES", x.numel() * 4 + 1)
    assert not _rewritten(lambda x, t: F.cross_entropy(x, t), x, t)  # too small to gain

    def read_twice(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(x, 1)
        return F.nll_loss(logp, t) + logp.mean()
    assert not _rewritten(read_twice, x, t)


def test_disabled_nvfuse_leaves_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_DISABLE", "1")
    config.reload()
    seen: list[torch.fx.GraphModule] = []
    monkeypatch.setattr(api, "training_cross_entropy", lambda gm: seen.append(gm) or gm)
    x = _make((8, 11), f32, "disabled").requires_grad_()
    t = _targets(8, 11, None, 2)
    torch._dynamo.reset()
    loss = torch.compile(lambda x, t: F.cross_entropy(x, t), backend="nvfuse")(x, t)
    compare(loss.detach(), F.cross_entropy(x, t).detach(), f32)
    assert not seen


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "cross_entropy_training")
