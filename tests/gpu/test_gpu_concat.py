"""GPU tier for concatenations (marker `gpu`, skipped without CUDA): the cat / stack / pad /
slice-backward patterns of tests/numerics/test_concat.py on the device at sizes larger than a
block, outputs poisoned, checked against eager CUDA, one kernel each."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import nvfuse

from gpu_support import numerics


compare = numerics("cases").compare
C = numerics("test_concat")
_make, _rotate_half, A, END = C._make, C._rotate_half, C.A, C.END

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("strict_poisoned")]


PATTERNS: dict[str, tuple[Callable[..., torch.Tensor], tuple[tuple[int, ...], ...]]] = {
    "rotary": (lambda q, c, s: q * c + _rotate_half(q) * s,
               ((4, 8, 512, 128), (512, 128), (512, 128))),
    "kv_append": (lambda k, v: torch.cat((k, v), 2), ((4, 8, 511, 128), (4, 8, 1, 128))),
    "cat_rows_scaled": (lambda a, b, r: torch.cat((a, b * 2), 0) * r,
                        ((1000, 1024), (333, 1024), (1024,))),
    "stack_last": (lambda a, b: torch.stack((a, b.exp()), -1), ((513, 1001), (513, 1001))),
    "pad_last": (lambda x: F.pad(x * 2, (3, -1), value=-1.0), ((700, 999),)),
    "slice_backward": (lambda g: A.slice_backward(g, [64, 4096], 1, 1024, END, 1) + 1,
                       ((64, 3072),)),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_concatenation_on_device(name: str, dtype: torch.dtype) -> None:
    fn, shapes = PATTERNS[name]
    inputs = tuple(_make(s, dtype, f"{name}{i}").cuda() for i, s in enumerate(shapes))
    fm = nvfuse.fuse(fn, inputs)
    tol = (5e-2, 1e-2) if name == "rotary" and dtype is not torch.float32 else None
    compare(fm(*inputs), fn(*inputs), dtype, tol)
    assert len(fm.kernels) == 1 and nvfuse.stats()["fallbacks"] == 0
