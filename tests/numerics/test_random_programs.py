"""Seeded random programs against eager, through the interpreter (strict, outputs poisoned):
random broadcasting, permuted / sliced / offset inputs, mixed dtypes and 0-dim operands for
pointwise chains; random shapes, trailing dims and dtypes for row reductions.  Checks values,
dtypes, shapes and eager's memory layout (strides of dims longer than 1)."""

from __future__ import annotations

import random

import pytest
import torch

import nvfuse
from nvfuse.runtime import executor

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _make(rng: random.Random, shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    kind = rng.random()
    if kind < 0.25 and len(shape) >= 2:  # permuted layout
        return torch.randn(list(reversed(shape))).to(dtype).permute(*reversed(range(len(shape))))
    if kind < 0.5 and shape:  # rows sliced out of a wider tensor: offset, strided
        return torch.randn(shape[:-1] + [shape[-1] + 3]).to(dtype)[..., 1:1 + shape[-1]]
    return torch.randn(shape).to(dtype)


def _check(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    live = [(s, n) for s, n in zip(out.stride(), out.shape) if n > 1]
    assert live == [(s, n) for s, n in zip(ref.stride(), ref.shape) if n > 1], "layout"
    tol = 3e-2 if ref.dtype in (torch.float16, torch.bfloat16) else 1e-5
    torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("seed", range(40))
def test_random_pointwise_program(seed: int) -> None:
    rng = random.Random(seed)
    full = [rng.choice([1, 2, 3, 4, 8, 33]) for _ in range(rng.randint(0, 4))]
    shapes = []
    for _ in range(3):
        s = [n if rng.random() < 0.7 else 1 for n in full]
        shapes.append(s[rng.randint(0, len(s)):] if rng.random() < 0.3 else s)
    dtypes = [rng.choice(FLOATS + [torch.int32, torch.int64]) for _ in range(3)]
    a, b, c = (_make(rng, s, d) for s, d in zip(shapes, dtypes))

    def fn(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = a * b + c
        y = torch.where(x > 0, x, b - 1)
        return y, torch.abs(y) + 0.5, (a + 1).to(torch.float32)

    fm = nvfuse.fuse(fn, (a, b, c))
    for out, ref in zip(fm(a, b, c), fn(a, b, c)):
        _check(out, ref)


@pytest.mark.parametrize("seed", range(30))
def test_random_row_reduction_program(seed: int) -> None:
    rng = random.Random(1000 + seed)
    ndim = rng.randint(1, 4)
    shape = [rng.choice([1, 2, 3, 5, 17, 64, 130]) for _ in range(ndim)]
    dims = list(range(ndim - rng.randint(1, ndim), ndim))
    dtype = rng.choice(FLOATS)
    x = _make(rng, shape, dtype) * 3
    w = torch.randn(shape[-1]).to(dtype)
    op, keep = rng.choice(["sum", "mean", "amax", "softmax", "rms", "center"]), rng.random() < 0.5

    def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if op == "sum":
            return (x * 2).sum(dims, keepdim=keep) + 1
        if op == "mean":
            return torch.exp(x.float().mean(dims, keepdim=True)) * w
        if op == "amax":
            return x - x.amax(dims, keepdim=True)
        if op == "softmax":
            return torch.softmax(x * 0.5 + w, -1)
        if op == "rms":
            rms = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
            return x * rms.to(x.dtype) * w
        return x - x.mean(dims, keepdim=True)

    fm = nvfuse.fuse(fn, (x, w))
    out, ref = fm(x, w), fn(x, w)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    tol = {torch.float16: 2e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-4)
    torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=4 * tol)
    assert nvfuse.stats()["fallbacks"] == 0
