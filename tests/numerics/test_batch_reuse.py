"""A new batch size reuses the kernel (design: sizes are kernel arguments), and the pointwise
tail that makes that possible is right.

- Compile counts (`nvfuse.stats()['compiles']`) across leading sizes 8, 10, 1, 13, 3, 2 for
  pointwise (contiguous, with a broadcast bias, odd inner sizes, (B, 1) columns), row
  reductions (looped and persistent), warp rows, layer norm and column reductions: one kernel
  each (a batch of one included: its size-1 dim keeps the larger batch's signature).
- The rank-1 tail (nvfuse/lower/pointwise.py): every length 1..70 and misaligned starts,
  through the interpreter (which checks bounds and vector alignment), strict, outputs
  poisoned, against eager; random numbers draw the same stream in the tail; the vector width
  stays 16 bytes for aligned contiguous tensors whatever the length; every generated kernel
  compiles with NVRTC.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvfuse.runtime import executor, kernels
from nvrtc_batch import compile_all

BATCHES = [8, 10, 1, 13, 3, 2]
_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _ln(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, w - 1)


# name -> (function, its inputs at batch b)
CASES: dict[str, tuple[Callable[..., object], Callable[[int], tuple[torch.Tensor, ...]]]] = {
    "pointwise": (lambda x: x * 2 + 1, lambda b: (torch.randn(b, 3),)),
    "pointwise_f16": (lambda x: torch.sigmoid(x) * x, lambda b: (torch.randn(b, 5).half(),)),
    "pointwise_bias": (lambda x, w: x * w + 1, lambda b: (torch.randn(b, 64), torch.randn(64))),
    "pointwise_bias_odd": (lambda x, w: x * w - x, lambda b: (torch.randn(b, 33),
                                                             torch.randn(33))),
    "pointwise_3d_bias": (lambda x, w: x + w, lambda b: (torch.randn(b, 4, 8),
                                                        torch.randn(4, 1))),
    "pointwise_column": (lambda x: torch.exp(x) + 1, lambda b: (torch.randn(b, 1),)),
    "row_sum": (lambda x: (x * 2).sum(-1), lambda b: (torch.randn(b, 300),)),
    "row_sum_keepdim": (lambda x: x - x.mean(-1, keepdim=True), lambda b: (torch.randn(b, 700),)),
    "softmax": (lambda x: torch.softmax(x, -1), lambda b: (torch.randn(b, 1024),)),
    "softmax_3d": (lambda x: torch.softmax(x, -1), lambda b: (torch.randn(b, 2, 96),)),
    "warp_row": (lambda x: x - x.amax(-1, keepdim=True), lambda b: (torch.randn(b, 40),)),
    "warp_argmax": (lambda x: x.argmax(-1), lambda b: (torch.randn(b, 17),)),
    "layer_norm": (_ln, lambda b: (torch.randn(b, 4, 256), torch.randn(256))),
    "column_sum": (lambda x: x.sum(0), lambda b: (torch.randn(b, 64),)),
    "column_mid": (lambda x: x.sum(1), lambda b: (torch.randn(b, 16, 64),)),
    "column_mean_keep": (lambda x: x.mean(0, keepdim=True) * x, lambda b: (torch.randn(b, 96),)),
}


def _check(out: object, ref: object) -> None:
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    for o, r in zip(outs, refs, strict=True):
        assert isinstance(o, torch.Tensor) and isinstance(r, torch.Tensor)
        assert o.shape == r.shape and o.dtype == r.dtype
        tol = 2e-2 if r.dtype == torch.float16 else 1e-4
        torch.testing.assert_close(o, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(CASES))
def test_new_batch_size_reuses_the_kernel(name: str) -> None:
    fn, make = CASES[name]
    torch.manual_seed(0)
    kernels.clear()  # count this test's own builds, whatever ran before it in the process
    fm = nvfuse.fuse(fn, make(BATCHES[0]))
    for b in BATCHES:
        inputs = make(b)
        _check(fm(*inputs), fn(*inputs))
    assert nvfuse.stats()["fallbacks"] == 0
    assert nvfuse.stats()["compiles"] == 1, [k.signature[1] for k in fm.kernels]
    for k in fm.kernels:
        _generated[k.name] = k.source


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
          torch.int64, torch.bool]


def _data(n: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, generator=gen) * 4
    return x > 0 if dtype == torch.bool else x.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rank1_tail_every_length(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)

    def fn(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = a + b if dtype != torch.bool else a ^ b
        return s, a.to(torch.float32) * 3

    fm = nvfuse.fuse(fn, (_data(8, dtype, gen), _data(8, dtype, gen)))
    compiles = []
    for n in range(1, 71):
        compiles.append(nvfuse.stats()["compiles"])
        for skip in (0, 1, 3):  # misaligned starts: the width falls to what the pointers allow
            a = _data(n + skip, dtype, gen)[skip:]
            b = _data(n, dtype, gen)
            out, ref = fm(a, b), fn(a, b)
            for o, r in zip(out, ref):
                assert o.shape == r.shape and o.dtype == r.dtype
                torch.testing.assert_close(o, r)
    for k in fm.kernels:
        _generated[k.name] = k.source
    # kernels per alignment class of `a`'s start (built for n = 1), none per length
    assert compiles[1] == compiles[-1] == nvfuse.stats()["compiles"]
    assert nvfuse.stats()["fallbacks"] == 0


def test_vector_width_stays_16_bytes_for_any_length() -> None:
    widths = set()
    for n in (4096, 4097, 4099, 1000003):
        x = torch.randn(n)
        fm = nvfuse.fuse(lambda x: torch.relu(x) * 2, (x,))
        torch.testing.assert_close(fm(x), torch.relu(x) * 2)
        widths |= {k.signature[1].lanes for k in fm.kernels}
    assert widths == {4}
    assert nvfuse.stats()["compiles"] == 1


def test_tail_draws_the_same_random_stream() -> None:
    """Element i of a dropout mask depends on i and the seed only, in the tail as well."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5, training=True)

    masks = []
    for n in (64, 37):
        x = torch.ones(n)
        fm = nvfuse.fuse(fn, (x,))
        torch.manual_seed(123)
        masks.append(fm(x) != 0)
    assert nvfuse.stats()["compiles"] == 1
    assert torch.equal(masks[0][:37], masks[1])
    assert 0 < int(masks[1].sum()) < 37


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_generated_kernel(arch: str) -> None:
    assert _generated, "run with the cases above"
    compile_all(_generated, arch, "batch_reuse")
