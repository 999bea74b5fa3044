"""A whole training step -- forward, backward and the optimizer -- for the kernels-per-step table
of the README, at tiny random-weight sizes: GPT-2 (transformers, 2 layers) with AdamW and a
ResNet-18 (the torchvision architecture, 4 base channels) with SGD + momentum.

`python -m tests.models.whole_step` prints the table (forward, backward, optimizer and total
kernels per step, from `nvfuse.explain`); `tests/models/test_whole_step.py` pins it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

import nvfuse


class BasicBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            torch.nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.down is None else self.down(x)))


class ResNet18(torch.nn.Module):
    """torchvision's resnet18 layout: a 7x7 stem, four stages of two basic blocks, 20 batch
    norms, average pooling and a linear classifier; `width` base channels."""

    def __init__(self, width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 7, 2, 3, bias=False), torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for stage in range(4):
            cout = width * 2 ** stage
            blocks += [BasicBlock(cin, cout, 1 if stage == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = torch.nn.Sequential(*blocks)
        self.fc = torch.nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


@dataclass
class Setup:
    model: torch.nn.Module
    inputs: tuple[Any, ...]
    loss: Callable[..., torch.Tensor]  # (model, *inputs) -> scalar loss
    optimizer: torch.optim.Optimizer


def _resnet18() -> Setup:
    torch.manual_seed(0)
    model = ResNet18().train()
    x, target = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return Setup(model, (x, target), lambda m, x, t: F.cross_entropy(m(x), t), opt)


def _gpt2() -> Setup:
    import transformers as T

    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(T.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=97,
                                           n_positions=64, bos_token_id=0, eos_token_id=0,
                                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    ids = torch.randint(0, 97, (2, 12))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    return Setup(model.train(), (ids,), lambda m, ids: m(input_ids=ids, labels=ids).loss, opt)


SETUPS: dict[str, Callable[[], Setup]] = {"resnet-18 + SGD(momentum)": _resnet18,
                                          "GPT-2 (2 layers) + AdamW": _gpt2}


class _Loss(torch.nn.Module):
    def __init__(self, setup: Setup) -> None:
        super().__init__()
        self.model = setup.model
        self._loss = setup.loss

    def forward(self, *inputs: Any) -> torch.Tensor:
        return self._loss(self.model, *inputs)


def kernels_per_step(setup: Setup) -> tuple[int, int, int]:
    """(forward + backward, optimizer, total) kernels of one training step, from explain.  The
    optimizer is explained at its steady state (after one eager step made its state)."""
    report = nvfuse.explain(_Loss(setup), *setup.inputs, training=True)
    setup.optimizer.zero_grad()
    setup.loss(setup.model, *setup.inputs).backward()
    setup.optimizer.step()
    step = nvfuse.explain(setup.optimizer.step).kernels_per_step
    torch._dynamo.reset()
    return report.kernels_per_step, step, report.kernels_per_step + step


def main() -> None:
    print("| model | forward + backward | optimizer | whole step |")
    print("|---|--:|--:|--:|")
    for name, make in SETUPS.items():
        fwd_bwd, opt, total = kernels_per_step(make())
        print(f"| {name} | {fwd_bwd} | {opt} | {total} |")


if __name__ == "__main__":
    main()
