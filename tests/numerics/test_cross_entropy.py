"""Cross-entropy without its log-probabilities (nvfuse/graph/cross_entropy.py) end to end
through the interpreter (strict, outputs poisoned) against eager: float32/float16/bfloat16/
float64 logits, every reduction, ignore_index hit (the default -100 and a class inside the
range) and not, a class weight or none, special values in the logits, the graph the rewrite
leaves (no [N, C] result, the gather of N elements), what it leaves alone (training, a
log_softmax read elsewhere, other dims), out-of-range targets raising as eager does; every
generated kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from cases import check_fused, compare
from test_reductions import _make

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.graph.cross_entropy import fuse_cross_entropy
from nvfuse.runtime import executor

aten = torch.ops.aten
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
TOL = {f32: (1e-5, 1e-5), f64: (1e-12, 1e-12), f16: (2e-3, 2e-3), bf16: (2e-2, 1e-2)}
REDUCTIONS = ("none", "mean", "sum")
_generated: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _targets(n: int, classes: int, ignore: int | None, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, classes, (n,), generator=g)
    if ignore is not None:
        t[::3] = ignore  # some ignored rows
    return t


def special_logits(dtype: torch.dtype, label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[6, 17] logits and targets: an inf logit at row 0's target, a -inf in row 1, a NaN
    row 2, a row 4 of large equal values."""
    x = _make((6, 17), dtype, label)
    t = torch.tensor([3, 4, 0, 16, 9, 1])
    x[0, 3] = float("inf")
    x[1, 7] = float("-inf")
    x[2, :] = float("nan")
    x[4, :] = 1e4 if dtype is f32 else 3e4
    return x, t


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype
         ) -> nvfuse.FusedModule:
    return check_fused(fn, inputs, dtype, TOL[dtype], generated=_generated)


def _rewritten(fm: nvfuse.FusedModule) -> bool:
    """The pair was rewritten: no fused log_softmax, no eager nll_loss, a fused amax."""
    ops = {op for g in fm.fusion_groups for op in g.ops}
    graph = fm._latest.gm  # type: ignore[union-attr]
    targets = {n.target for n in graph.graph.nodes}
    return ("aten::_log_softmax" not in ops and "aten::amax" in ops
            and aten.nll_loss_forward.default not in targets)


@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("ignore", [None, -100, 2], ids=["all", "ignore-100", "ignore2"])
def test_cross_entropy_forward(dtype: torch.dtype, reduction: str, weighted: bool,
                               ignore: int | None) -> None:
    x = _make((7, 37), dtype, f"ce {dtype}")
    t = _targets(7, 37, ignore, 11)
    ii = -100 if ignore is None else ignore
    w = _make((37,), dtype, "ce w", near_one=True)
    if weighted:
        fm = _run(lambda x, t, w: F.cross_entropy(x, t, w, reduction=reduction, ignore_index=ii),
                  (x, t, w), dtype)
    else:
        fm = _run(lambda x, t: F.cross_entropy(x, t, reduction=reduction, ignore_index=ii),
                  (x, t), dtype)
    assert _rewritten(fm)


@pytest.mark.parametrize("reduction", [1, 2])
def test_total_weight_output(reduction: int) -> None:
    """aten's pair with both outputs read: the loss and total_weight."""
    x = _make((9, 21), f32, "tw")
    t = _targets(9, 21, -100, 5)
    w = _make((21,), f32, "tw w", near_one=True)
    fm = _run(lambda x, t, w: aten.nll_loss_forward(aten._log_softmax(x, 1, False), t, w,
                                                    reduction, -100), (x, t, w), f32)
    assert _rewritten(fm)


def test_mean_over_no_counted_row_is_nan() -> None:
    x = _make((5, 11), f32, "nan rows")
    t = torch.full((5,), -100, dtype=torch.int64)
    _run(lambda x, t: F.cross_entropy(x, t), (x, t), f32)


@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_special_logits(dtype: torch.dtype) -> None:
    """An inf logit at the target and elsewhere, a NaN row, a row of large equal values."""
    x, t = special_logits(dtype, "special")
    for reduction in REDUCTIONS:
        fm = _run(lambda x, t, r=reduction: F.cross_entropy(x, t, reduction=r), (x, t), dtype)
        assert _rewritten(fm)


def test_long_rows_read_once() -> None:
    """A row longer than a block: of the rewritten graph's [N, C] values, only x, its float32
    copy and the shifted exponentials exist, all inside the row reduction (nothing of [N, C]
    is stored)."""
    x = _make((3, 5000), bf16, "long")
    t = torch.tensor([4999, 0, 2500])
    fn = lambda x, t: F.cross_entropy(x, t)
    fm = _run(fn, (x, t), bf16)
    assert _rewritten(fm)
    gm = fuse_cross_entropy(trace_to_aten(fn, (x, t)))
    full = [n for n in gm.graph.nodes
            if getattr(n.meta.get("val"), "shape", None) == torch.Size([3, 5000])]
    assert {n.op if n.op == "placeholder" else n.target for n in full} == {
        "placeholder", aten._to_copy.default, aten.sub.Tensor, aten.exp.default}


def test_out_of_range_target_raises_as_eager() -> None:
    x = _make((4, 9), f32, "oob")
    fn = lambda x, t: F.cross_entropy(x, t)
    fm = nvfuse.fuse(fn, (x, torch.tensor([1, 2, 3, 4])))
    for bad in (torch.tensor([1, 9, 3, 4]), torch.tensor([1, -7, 3, 4])):
        with pytest.raises((IndexError, RuntimeError)):
            fn(x, bad)
        with pytest.raises((IndexError, RuntimeError)):
            fm(x, bad)


# -- what the rewrite leaves alone ---------------------------------------------------------------
def test_log_probabilities_read_elsewhere_are_kept() -> None:
    x = _make((5, 13), f32, "kept")
    t = _targets(5, 13, None, 3)

    def fn(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = F.log_softmax(x, 1)
        return F.nll_loss(logp, t), logp.exp()
    fm = _run(fn, (x, t), f32)
    assert "aten::_log_softmax" in {op for g in fm.fusion_groups for op in g.ops}


def test_unreduced_total_weight_and_other_dims_are_kept() -> None:
    x = _make((5, 13), f32, "kept2")
    t = _targets(5, 13, None, 4)
    gm = torch.fx.symbolic_trace(lambda x, t: aten.nll_loss_forward(
        aten._log_softmax(x, 1, False), t, None, 0, -100))
    assert fuse_cross_entropy(gm) is gm  # no make_fx metadata: nothing matched, same module
    fm = _run(lambda x, t: aten.nll_loss_forward(aten._log_softmax(x, 1, False), t, None, 0,
                                                 -100)[1].expand(2).clone(), (x, t), f32)
    assert not _rewritten(fm)
    y = _make((2, 5, 13), f32, "3d")
    ty = torch.randint(0, 5, (2, 13))
    fm = _run(lambda y, t: F.cross_entropy(y, t), (y, ty), f32)  # [N, C, L]: nll_loss2d path
    assert not _rewritten(fm)


@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_training_through_torch_compile(dtype: torch.dtype) -> None:
    """torch.compile(backend="nvfuse") training: loss and the logits' gradient as eager's."""
    x = _make((6, 29), dtype, f"train {dtype}")
    t = _targets(6, 29, -100, 9)
    xe, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = F.cross_entropy(xe, t)
    expected.backward()
    torch._dynamo.reset()
    actual = torch.compile(lambda x, t: F.cross_entropy(x, t), backend="nvfuse")(xf, t)
    actual.backward()
    compare(actual.detach(), expected.detach(), dtype, TOL[dtype])
    compare(xf.grad, xe.grad, dtype, TOL[dtype])


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "cross_entropy")


def _train_grad(x: torch.Tensor, t: torch.Tensor, reduction: str, grad: torch.Tensor,
                seen: list[nvfuse.FusedModule]) -> torch.Tensor:
    """The logits' gradient through AOTAutograd with nvfuse's compilers (the backward's
    FusedModule appended to `seen`), every kernel recorded for NVRTC."""
    from functorch.compile import make_boxed_func  # type: ignore[import-untyped]

    from nvfuse.api import FusedModule, _fuse_graph, aot_backend

    def backward(gm: torch.fx.GraphModule, example: list[torch.Tensor]) -> object:
        fused = FusedModule(gm, list(example), trace_now=False, compile_fallback=False)
        seen.append(fused)
        return make_boxed_func(fused)

    torch._dynamo.reset()
    xf = x.clone().requires_grad_()
    f = torch.compile(lambda x, t: F.cross_entropy(x, t, reduction=reduction),
                      backend=aot_backend(_fuse_graph, backward))
    (g,) = torch.autograd.grad(f(xf, t), [xf], grad)
    for k in seen[-1].kernels:
        _generated.setdefault(k.name, k.source)
    return g


@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore", ["some", "all", "none"])
def test_training_backward_writes_no_one_hot_gradient(monkeypatch: pytest.MonkeyPatch,
                                                      dtype: torch.dtype, reduction: str,
                                                      ignore: str) -> None:
    """The backward of log_softmax + nll_loss: no eager [N, C] nll_loss_backward, one fused
    pass over the log-probabilities (grad = 0 - exp(logp) * g_n) and the N target elements
    scattered exactly; bit for bit (sign of zero included) what the fused path without the
    rewrite gives, and eager's within tolerance."""
    from nvfuse import api
    from nvfuse.graph import cross_entropy

    # the graph as AOTAutograd gives it without nvfuse's training ops (which save statistics
    # instead of the log-probabilities: tests/numerics/test_cross_entropy_training.py)
    monkeypatch.setattr(api, "training_cross_entropy", lambda gm: gm)
    x = _make((40, 97), dtype, f"xent backward {dtype}")
    x[3, :5] = torch.tensor([80.0, -80.0, 0.0, -0.0, 1e-3], dtype=dtype)  # exp under/overflow
    t = _targets(40, 97, -100, 11)
    if ignore == "all":
        t[:] = -100
    elif ignore == "none":
        t = _targets(40, 97, None, 11)
    grad = torch.tensor(1.75, dtype=dtype)
    seen: list[nvfuse.FusedModule] = []
    got = _train_grad(x, t, reduction, grad, seen)
    graph = seen[-1]._latest.gm.graph  # type: ignore[union-attr]
    targets = {n.target for n in graph.nodes}
    assert aten.nll_loss_backward.default not in targets and aten.scatter_.src in targets
    monkeypatch.setattr(cross_entropy, "_rewrite_backward", lambda *args: None)
    before = _train_grad(x, t, reduction, grad, seen)
    assert aten.nll_loss_backward.default in {n.target for n in seen[-1]._latest.gm.graph.nodes}  # type: ignore[union-attr]
    assert torch.equal(got, before) and torch.equal(got.signbit(), before.signbit())
    xe = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(F.cross_entropy(xe, t, reduction=reduction), [xe], grad)
    compare(got, want, dtype, TOL[dtype])
