"""Building blocks of real models, small random-weight modules, through the interpreter:

- an MLP block: LayerNorm -> Linear -> GELU -> Linear -> dropout -> + residual;
- a conv block: Conv2d -> BatchNorm2d -> ReLU -> Conv2d -> BatchNorm2d -> + residual -> ReLU;
- a softmax cross-entropy head: Linear -> F.cross_entropy (label smoothing, ignore_index,
  reduction mean and sum).

Inference: nvfuse.fuse(module, inputs) and nvfuse.fuse(torch.jit.trace(module, inputs)) match
eager.  Training through torch.compile(backend="nvfuse"): the loss, every parameter's gradient,
the input's gradient and the buffers (batch norm's running statistics) match eager.  Strict: no
group may fall back.  `nvfuse.explain(..., training=True)` pins the kernels one training step
launches, so a fusion regression shows up as a failing bound.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

import nvfuse
from model_checks import check_inference, check_training_step


class MLPBlock(torch.nn.Module):
    """Pre-norm transformer MLP: x + dropout(down(gelu(up(layer_norm(x)))))."""

    def __init__(self, width: int = 16, p: float = 0.0) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.up = torch.nn.Linear(width, 4 * width)
        self.down = torch.nn.Linear(4 * width, width)
        self.drop = torch.nn.Dropout(p)
        with torch.no_grad():  # non-trivial affine parameters, so their gradients are checked
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.down(F.gelu(self.up(self.norm(x)))))


class ConvBlock(torch.nn.Module):
    """ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + x)."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)
        with torch.no_grad():  # statistics and affine parameters far from the defaults
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.uniform_(0.5, 2)
                bn.bias.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + x)


class CrossEntropyHead(torch.nn.Module):
    """Linear classifier and its softmax cross-entropy loss."""

    def __init__(self, width: int = 16, classes: int = 10, label_smoothing: float = 0.0,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.proj = torch.nn.Linear(width, classes)
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.proj(x), target, ignore_index=-100,
                               label_smoothing=self.label_smoothing, reduction=self.reduction)


def _square_mean(module: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]
                 ) -> torch.Tensor:
    return module(*inputs).square().mean()


def _itself(module: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return module(*inputs)


def _head_inputs(rows: int = 6, width: int = 16, classes: int = 10
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randint(0, classes, (rows,))
    target[1] = -100  # ignored rows are in every case
    return torch.randn(rows, width), target


@pytest.fixture(autouse=True)
def _setup(interpret: None) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)


# -- the MLP block ---------------------------------------------------------------------------

def test_mlp_block_inference() -> None:
    fx_fused, ts_fused = check_inference(MLPBlock().eval(), (torch.randn(2, 5, 16),))
    # layer norm, GELU and the residual add: three kernels between the two matmuls
    assert len(fx_fused.fusion_groups) == 3 and len(ts_fused.fusion_groups) == 3


def test_mlp_block_training() -> None:
    x = torch.randn(2, 5, 16).requires_grad_()
    check_training_step(MLPBlock().train(), (x,), _square_mean)


class _FixedMask(torch.nn.Module):
    """Dropout with a given keep mask: the eager reference for a fused dropout's draw."""

    def __init__(self, keep: torch.Tensor, p: float) -> None:
        super().__init__()
        self.keep, self.p = keep, p

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.keep / (1 - self.p)


def test_mlp_block_dropout_training() -> None:
    """p > 0: the same seed gives the same output and gradients, another seed another mask,
    and the gradients are eager's for the mask the fused forward drew."""
    p, x = 0.3, torch.randn(4, 5, 16)
    model = MLPBlock(p=p).train()
    compiled = torch.compile(model, backend="nvfuse")

    def step(seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(seed)
        out = compiled(x)
        out.square().mean().backward()
        return out.detach(), [q.grad.clone() for q in model.parameters()]

    out, grads = step(1)
    again, grads_again = step(1)
    assert torch.equal(out, again)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_again))
    other, _ = step(2)
    assert not torch.equal(out, other)
    keep = (out - x) != 0  # the dropped elements of the branch are exactly zero
    assert 0.5 < keep.float().mean().item() < 0.9  # a rate near 1 - p (560 draws)
    reference = MLPBlock(p=p)
    reference.load_state_dict(model.state_dict())
    reference.drop = _FixedMask(keep, p)
    model.zero_grad()
    torch.manual_seed(1)
    check_training_step(model, (x,), _square_mean, reference=reference)


# -- the conv block --------------------------------------------------------------------------

def _bn_relu_add_group(fm: nvfuse.FusedModule) -> None:
    """The second batch norm, the residual add and the ReLU are one group (and so are the
    first batch norm and its ReLU): only the two convolutions stay eager."""
    groups = sorted(fm.fusion_groups, key=lambda g: len(g.ops))
    assert len(groups) == 2, [g.ops for g in groups]
    first, second = groups
    assert {"aten::rsqrt", "aten::relu", "aten::add"} <= set(first.ops), first.ops
    assert {"aten::rsqrt", "aten::relu"} <= set(second.ops), second.ops
    assert second.ops.count("aten::add") == 3, second.ops  # eps, bias and the residual


def test_conv_block_inference() -> None:
    fx_fused, ts_fused = check_inference(ConvBlock().eval(), (torch.randn(2, 4, 6, 5),))
    _bn_relu_add_group(fx_fused)
    _bn_relu_add_group(ts_fused)


def test_conv_block_training_updates_running_statistics() -> None:
    """Training-mode batch norm: the step's loss and gradients match eager, and the running
    mean, variance and batch count are updated exactly as eager's."""
    model = ConvBlock().train()
    x = torch.randn(2, 4, 6, 5).requires_grad_()
    before = model.bn2.running_mean.clone()
    check_training_step(model, (x,), _square_mean)
    assert not torch.equal(model.bn2.running_mean, before)
    assert int(model.bn1.num_batches_tracked) == 1


# Halves: nvfuse computes in float32 and rounds once where eager rounds after every op, so
# outputs of magnitude ~1 may differ by a few units in the last place (4 ulps here).
HALF_TOL = {torch.float16: {"rtol": 2e-3, "atol": 2e-3},
            torch.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2}}


@pytest.mark.parametrize("dtype", sorted(HALF_TOL, key=str), ids=str)
def test_blocks_in_half_precision(dtype: torch.dtype) -> None:
    check_inference(MLPBlock().eval().to(dtype), (torch.randn(2, 5, 16, dtype=dtype),),
                    **HALF_TOL[dtype])
    fx_fused, ts_fused = check_inference(ConvBlock().eval().to(dtype),
                                         (torch.randn(2, 4, 6, 5, dtype=dtype),),
                                         **HALF_TOL[dtype])
    _bn_relu_add_group(fx_fused)
    _bn_relu_add_group(ts_fused)


# -- the cross-entropy head ------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_head_training(label_smoothing: float, reduction: str) -> None:
    x, target = _head_inputs()
    model = CrossEntropyHead(label_smoothing=label_smoothing, reduction=reduction)
    check_training_step(model, (x.requires_grad_(), target), _itself)


def test_cross_entropy_head_inference() -> None:
    check_inference(CrossEntropyHead(label_smoothing=0.1).eval(), _head_inputs())


# -- kernels per training step ---------------------------------------------------------------

# Upper bounds on nvfuse.explain(..., training=True).kernels_per_step that pin today's fusion
# (forward + backward, fused kernels plus eager ops that launch one).  Lower them when fusion
# improves (column reductions will fuse bias and layer norm parameter gradients).
KERNELS_PER_STEP = {"mlp": 15, "conv": 13, "head": 11}


def _explained(name: str) -> nvfuse.ExplainReport:
    if name == "mlp":
        return nvfuse.explain(MLPBlock(), torch.randn(2, 5, 16).requires_grad_(), training=True)
    if name == "conv":
        return nvfuse.explain(ConvBlock(), torch.randn(2, 4, 6, 5).requires_grad_(),
                              training=True)
    x, target = _head_inputs()
    return nvfuse.explain(CrossEntropyHead(label_smoothing=0.1), x.requires_grad_(), target,
                          training=True)


@pytest.mark.parametrize("name", sorted(KERNELS_PER_STEP))
def test_kernels_per_training_step(name: str) -> None:
    report = _explained(name)
    assert [g.name for g in report.graphs] == ["forward", "backward"]
    assert all(g.groups for g in report.graphs), str(report)
    assert report.kernels_per_step <= KERNELS_PER_STEP[name], str(report)
    # explain only reports: it may lower kernels (horizontal bundling sizes their parameter
    # space, nvfuse/runtime/horizontal.py), never compiles one
    assert nvfuse.stats()["nvrtc_compiles"] == 0



@pytest.mark.parametrize("block", [MLPBlock, ConvBlock])
def test_traced_block_trains_fused(block: type[torch.nn.Module]) -> None:
    """nvfuse.fuse(torch.jit.trace(module)) called with gradients needed trains through the
    converted aten graph with AOTAutograd (it used to run the script unfused): gradients and
    running statistics land on the module's own tensors, as eager's."""
    model = block().train()
    x = torch.randn(2, 4, 6, 5) if block is ConvBlock else torch.randn(2, 5, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,))  # tracing runs (and steps batch norm) twice
    reference = copy.deepcopy(model)
    check_training_step(model, (x.requires_grad_(),), _square_mean, reference=reference,
                        fused=nvfuse.fuse(traced))
