"""Views inside fusion groups, end to end through the interpreter (strict, outputs poisoned),
against eager: each view op between elementwise ops x dtype (floats, integers, bool), on
contiguous and permuted inputs, one kernel each; keepdim=False reductions with their
unsqueeze-back and epilogues; and every generated kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INTS = (torch.int32, torch.int64)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _input(dtype: torch.dtype, permuted: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    if dtype.is_floating_point:
        x = torch.randn(8, 4, 6, generator=g, dtype=torch.float64).to(dtype)
    else:
        x = torch.randint(-50, 50, (8, 4, 6), generator=g).to(dtype)
    # permuted: same logical (4, 6, 8) tensor, stored with the last dim outermost
    return x.permute(1, 2, 0) if permuted else x.permute(1, 2, 0).contiguous()


def _check(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, kernels: int = 1) -> None:
    fm = nvfuse.fuse(fn, (x,))
    out, ref = fm(x), fn(x)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert all(a == b for n, a, b in zip(ref.shape, out.stride(), ref.stride()) if n > 1)
    low = x.dtype in (torch.float16, torch.bfloat16)
    torch.testing.assert_close(out, ref, **({"rtol": 2e-2, "atol": 2e-2} if low else {}))
    assert len(fm.kernels) == kernels, fm.fusion_groups
    assert nvfuse.stats()["fallbacks"] == 0
    for kernel in fm.kernels:
        _generated[kernel.name] = kernel.source


ELEMENTWISE_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "reshape": lambda x: (x * 3).reshape(4, 48) - 1,
    "permute": lambda x: (x * 3).permute(2, 0, 1) - 1,
    "transpose_unsqueeze": lambda x: (x * 3).transpose(0, 1).unsqueeze(1) - 1,
    "expand_slice": lambda x: (x * 3)[:, :1].expand(4, 6, 8) - x,
    "select_step": lambda x: (x * 3)[1, ::2] - 1,
    "chunk": lambda x: (x * 3).chunk(2, -1)[1] - x[..., :4],
}


@pytest.mark.parametrize("permuted", [False, True], ids=["contiguous", "permuted"])
@pytest.mark.parametrize("dtype", FLOATS + INTS, ids=str)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE_VIEWS))
def test_view_between_elementwise_ops(name: str, dtype: torch.dtype, permuted: bool) -> None:
    # reshaping the permuted value is a copy in eager (not a view): a group boundary there
    copies = name == "reshape" and permuted
    _check(ELEMENTWISE_VIEWS[name], _input(dtype, permuted), kernels=2 if copies else 1)


@pytest.mark.parametrize("permuted", [False, True], ids=["contiguous", "permuted"])
def test_bool_masks_through_views(permuted: bool) -> None:
    x = _input(torch.float32, permuted)
    _check(lambda t: (t > 0).transpose(0, 2) & (t < 1).transpose(0, 2), x)


REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "center": lambda x: x - x.mean(-1).unsqueeze(-1),
    "scale_by_max": lambda x: x / x.abs().amax(-1).view(4, 6, 1),
    "sum_epilogue": lambda x: x.sum(-1) * 2 + 1,
    "std_epilogue": lambda x: torch.sqrt(x.var(-1) + 1e-5),
    "two_dims": lambda x: (x * 2).sum((1, 2)) - 1,
}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_keepdim_false_reduction_in_one_kernel(name: str, dtype: torch.dtype) -> None:
    _check(REDUCTIONS[name], _input(dtype, False))


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "views")
